"""The camera's offline description, on real images made here with Pillow (colours, a
shape, printed text for the real OCR model), and the session around it: IMAGE frames in,
the newest described, the next turn's prompt carrying it, bad frames refused. The LLM and
TTS in the session tests are fakes (tests/fakes.py)."""

from __future__ import annotations

import asyncio
import io

import pytest
from PIL import Image, ImageDraw, ImageFont

from tests.fakes import FakeLLM, FakeSTT, FakeTTS, fake_engines
from tests.session_harness import Harness
from voxgate.protocol.frames import FrameType, encode
from voxgate.scheduler import ComputeGate
from voxgate.vision import ocr
from voxgate.vision.camera import CameraView, Sighting
from voxgate.vision.scene import BadImage, changed, describe_scene, fingerprint, load_frame


def jpeg(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


def sign(text: str = "EMERGENCY EXIT", size: tuple[int, int] = (640, 360)) -> Image.Image:
    """Dark green text on a white board, the way a camera sees a sign."""
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, size[0], size[1] // 5), fill=(25, 80, 35))
    draw.text((40, size[1] // 2 - 30), text, fill="black", font=ImageFont.load_default(size=56))
    return image


def test_frames_are_decoded_and_shrunk_and_bad_ones_refused() -> None:
    image = load_frame(jpeg(sign(size=(1280, 720))))
    assert isinstance(image, Image.Image) and max(image.size) == 384
    png = io.BytesIO()
    Image.new("RGB", (100, 300), "red").save(png, "PNG")
    assert load_frame(png.getvalue()).size == (100, 300)  # type: ignore[attr-defined]
    with pytest.raises(BadImage, match="JPEG or PNG"):
        load_frame(b"GIF89a....")
    with pytest.raises(BadImage, match="cannot decode"):
        load_frame(jpeg(sign())[:200])  # cut short
    thin = io.BytesIO()
    Image.new("RGB", (4000, 10), "white").save(thin, "PNG")  # a strip that OCR would blow up
    with pytest.raises(BadImage, match="over 4:1"):
        load_frame(thin.getvalue())


def test_the_scene_names_colours_brightness_and_shape() -> None:
    red = describe_scene(Image.new("RGB", (200, 300), (205, 30, 30)))
    assert red.colours == ("red",) and red.shape == "portrait" and red.brightness == "dim"
    night = describe_scene(Image.new("RGB", (300, 200), (10, 10, 15)))
    assert night.brightness == "dark" and night.colours == ("black",)
    board = describe_scene(sign())
    assert board.colours[0] == "white" and "dark green" in board.colours
    assert board.shape == "landscape" and board.brightness == "bright"


def test_a_new_view_is_told_from_the_same_one() -> None:
    view = sign()
    again = view.copy()
    ImageDraw.Draw(again).point((5, 5), fill="red")  # sensor noise
    assert not changed(fingerprint(view), fingerprint(again))
    assert changed(fingerprint(view), fingerprint(sign("NO ENTRY").rotate(90, expand=True)))


@pytest.mark.skipif(not ocr.available(), reason="the vision extra (rapidocr) is not installed")
def test_text_in_the_frame_is_read() -> None:
    lines = ocr.read_text(load_frame(jpeg(sign("PLATFORM 9"))))
    assert any("PLATFORM" in line.upper() for line in lines), lines


def test_the_newest_frame_wins() -> None:
    seen: list[Sighting] = []

    async def scenario() -> CameraView:
        camera = CameraView(ComputeGate(), seen.append, lambda code, message: None)
        for colour in ("red", "blue", "yellow"):  # faster than one is described
            camera.submit(jpeg(Image.new("RGB", (64, 64), colour)))
        for _ in range(200):
            if camera.latest is not None and camera.latest.frame == 3:
                break
            await asyncio.sleep(0.01)
        await camera.close()
        return camera

    camera = asyncio.run(scenario())
    assert camera.frames == 3 and camera.superseded >= 1
    assert [s.frame for s in seen][-1] == 3 and len(seen) < 3  # the middle one was skipped
    assert seen[-1].scene.colours == ("yellow",)


def test_the_next_turn_hears_what_the_camera_shows() -> None:
    llm = FakeLLM("I see a sign.")
    engines = fake_engines(FakeSTT(lambda s: ""), llm, FakeTTS(ms_per_char=2))

    async def scenario() -> Harness:
        h = Harness(engines)
        await h.start()
        await h.conn.on_message(encode(FrameType.IMAGE, b"not an image"))
        await h.conn.on_message(encode(FrameType.IMAGE, jpeg(sign("PLATFORM 9"))))
        await h.wait_for("camera", 1, timeout_s=30)
        await h.say("What do you see?")
        await h.wait_for_done(1)
        await h.conn.close()
        return h

    h = asyncio.run(scenario())
    errors = [f.text for f in h.frames if f.type is FrameType.ERROR]
    assert errors == ["bad_image: frame 1: an IMAGE frame carries one JPEG or PNG file"]
    (camera,) = h.events("camera")
    assert camera["frame"] == 2 and "white" in camera["description"]
    assert set(camera["ms"]) >= {"decode", "scene"}
    last = llm.requests[-1].messages
    # Just before the user's words, after the cached prefix and the conversation: a new
    # view never breaks the persona's prefix, and the next turn's history lacks it.
    assert last[-1].role == "user" and last[-1].content == "What do you see?"
    assert last[-2].role == "system" and last[-2].content == camera["description"]
    assert "may be wrong" in last[-2].content
    if ocr.available():
        assert "PLATFORM" in last[-2].content.upper()


@pytest.mark.skipif(not ocr.available(), reason="the vision extra (rapidocr) is not installed")
def test_a_view_first_seen_during_a_turn_is_read_when_the_turn_is_over() -> None:
    busy = [True]

    async def scenario() -> list[Sighting]:
        seen: list[Sighting] = []
        camera = CameraView(
            ComputeGate(), seen.append, lambda code, message: None, idle=lambda: not busy[0]
        )
        frame = jpeg(sign("PLATFORM 9"))
        for turn_over in (False, True, True):
            busy[0] = not turn_over
            camera.submit(frame)
            while camera.latest is None or camera.latest.frame < camera.frames:
                await asyncio.sleep(0.01)
        await camera.close()
        return seen

    first, second, third = asyncio.run(scenario())
    assert not first.text_read and first.text == ()  # the live turn first
    assert second.text_read and any("PLATFORM" in line.upper() for line in second.text)
    assert "ocr" not in third.ms and third.description == second.description  # same view


def test_an_unchanged_view_is_said_once_in_the_history() -> None:
    llm = FakeLLM("A sign.")
    engines = fake_engines(FakeSTT(lambda s: ""), llm, FakeTTS(ms_per_char=2))

    async def scenario() -> Harness:
        h = Harness(engines)
        await h.start()
        frame = jpeg(sign("EXIT"))
        await h.conn.on_message(encode(FrameType.IMAGE, frame))
        await h.wait_for("camera", 1, timeout_s=30)
        await h.say("What do you see?")
        await h.wait_for_done(1)
        await h.conn.on_message(encode(FrameType.IMAGE, frame))  # the same view again
        await h.wait_for("camera", 2, timeout_s=30)
        await h.say("And now?")
        await h.wait_for_done(2)
        await h.conn.close()
        return h

    h = asyncio.run(scenario())
    assert [e["frame"] for e in h.events("camera")] == [1, 2]
    first, second = (r.messages for r in llm.requests[-2:])
    described = [m for m in second if m.content.startswith("The user's camera")]
    assert len(described) == 1  # from the history, not added again
    # The second prompt extends the first: the KV prefix of the persona holds.
    assert second[: len(first)] == first
