"""What a camera frame shows, cheaply: decoded and shrunk, its main colours, how bright it
is, and a fingerprint to tell a new view from the same one. Pillow and numpy only."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

MAX_SIDE = 384  # what the description needs; the browser sends about this already
MAX_PIXELS = 16_000_000
MAX_ASPECT = 4  # a 16000x1 "picture" is an attack on whatever reads it, not a view
# Named colours a description can use (sRGB); each pixel counts for the nearest.
_NAMED: dict[str, tuple[int, int, int]] = {
    "black": (20, 20, 20), "dark grey": (80, 80, 80), "grey": (140, 140, 140),
    "light grey": (200, 200, 200), "white": (245, 245, 245), "red": (200, 30, 30),
    "dark red": (120, 20, 20), "orange": (240, 140, 30), "yellow": (235, 220, 50),
    "brown": (120, 80, 40), "beige": (220, 200, 160), "green": (40, 160, 60),
    "dark green": (25, 80, 35), "blue": (40, 80, 210), "navy": (20, 30, 90),
    "light blue": (140, 190, 235), "purple": (120, 50, 160), "pink": (240, 150, 190),
}  # fmt: skip
_PALETTE = np.array(list(_NAMED.values()), dtype=np.float32)
_NAMES = list(_NAMED)
MIN_SHARE = 0.12  # a colour covering less of the frame is not worth naming


NOT_AN_IMAGE = "an IMAGE frame carries one JPEG or PNG file"


def looks_like_image(data: bytes) -> bool:
    """A JPEG or PNG file's first bytes."""
    return data.startswith((b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n"))


class BadImage(ValueError):
    """A frame that is not a readable JPEG or PNG; the message names the fix."""


@dataclass(frozen=True)
class Scene:
    colours: tuple[str, ...]  # by share, largest first
    brightness: str  # dark | dim | bright
    shape: str  # landscape | portrait | square
    fingerprint: int  # 64-bit average hash: near views differ in few bits


def load_frame(data: bytes, max_side: int = MAX_SIDE) -> object:
    """The frame as an RGB PIL image no larger than ``max_side``; BadImage if unreadable,
    too large, or too thin to be a camera's picture."""
    from PIL import Image, UnidentifiedImageError

    if not looks_like_image(data):
        raise BadImage(NOT_AN_IMAGE)
    try:
        with Image.open(io.BytesIO(data), formats=["JPEG", "PNG"]) as opened:
            width, height = opened.size
            if width * height > MAX_PIXELS:
                raise BadImage(f"{width}x{height} is too large: at most {MAX_PIXELS:,} pixels")
            if max(width, height) > MAX_ASPECT * min(width, height):
                raise BadImage(f"{width}x{height} is not a camera's picture (sides over 4:1)")
            opened.draft("RGB", (max_side, max_side))  # JPEG: decode at a fraction of the size
            image = opened.convert("RGB")
    except BadImage:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError,
            Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:  # fmt: skip
        raise BadImage(f"cannot decode the image: {exc}") from None
    image.thumbnail((max_side, max_side))
    return image


def describe_scene(image: object) -> Scene:
    """Colours, brightness, shape and fingerprint of a (small) RGB image."""
    from PIL import Image

    assert isinstance(image, Image.Image)
    small = np.asarray(image.resize((48, 48)), dtype=np.float32).reshape(-1, 3)
    nearest = np.argmin(((small[:, None, :] - _PALETTE[None, :, :]) ** 2).sum(axis=2), axis=1)
    counts = np.bincount(nearest, minlength=len(_NAMES)) / len(nearest)
    order = np.argsort(counts)[::-1]
    colours = tuple(_NAMES[i] for i in order[:3] if counts[i] >= MIN_SHARE) or (
        _NAMES[int(order[0])],
    )
    luma = float((small @ np.array([0.299, 0.587, 0.114], dtype=np.float32)).mean())
    brightness = "dark" if luma < 60 else "dim" if luma < 120 else "bright"
    ratio = image.width / max(image.height, 1)
    shape = "landscape" if ratio > 1.15 else "portrait" if ratio < 0.87 else "square"
    return Scene(colours, brightness, shape, fingerprint(image))


def fingerprint(image: object) -> int:
    """An 8x8 average hash of the image's grey levels."""
    from PIL import Image

    assert isinstance(image, Image.Image)
    grey = np.asarray(image.convert("L").resize((8, 8)), dtype=np.float32).ravel()
    bits = grey > grey.mean()
    return int("".join("1" if b else "0" for b in bits), 2)


def changed(a: int, b: int, min_bits: int = 6) -> bool:
    """Two fingerprints far enough apart to be another view."""
    return (a ^ b).bit_count() >= min_bits
