"""The camera's object classifier (EfficientNet-Lite0 run in numpy) with the real weights
of the ``vision`` extra: the checkpoint read without torch, the network's logits against
numbers taken once from the PyTorch reference (efficientnet_lite_pytorch 0.1.0 on torch
2.14), names with probabilities for pictures drawn here with Pillow, and the camera's
sentence naming what it likely shows."""

from __future__ import annotations

import asyncio
import importlib.resources
import io
import math
import os
import pickle

import numpy as np
import pytest
from PIL import Image, ImageDraw

from voxgate.scheduler import ComputeGate
from voxgate.vision import classifier
from voxgate.vision.camera import CameraView, Sighting, describe
from voxgate.vision.scene import describe_scene

# The weights, the names and threadpoolctl: without the vision extra there is nothing to test.
pytestmark = pytest.mark.skipif(
    not classifier.available(), reason=f"the classifier is not installed: {classifier.FIX}"
)
Weights = dict[str, classifier.Array]


@pytest.fixture(scope="module")
def weights() -> Weights:
    """The checkpoint, read once for the module's tests."""
    path = importlib.resources.files(classifier.WEIGHTS_PACKAGE) / "models"
    return classifier.load_state_dict((path / classifier.WEIGHTS_FILE).read_bytes())


def clock(size: int = 320) -> Image.Image:
    """A wall clock: a white dial, twelve ticks, two hands (ImageNet's "analog clock")."""
    image = Image.new("RGB", (size, size), (200, 200, 200))
    draw = ImageDraw.Draw(image)
    c = size / 2
    draw.ellipse((20, 20, size - 20, size - 20), fill="white", outline="black", width=8)
    for hour in range(12):
        a = hour * math.pi / 6
        inner, outer = 0.375 * size, 0.42 * size
        ends = (c + inner * math.cos(a), c + inner * math.sin(a))
        draw.line((*ends, c + outer * math.cos(a), c + outer * math.sin(a)), "black", 6)
    draw.line((c, c, c, c - 100), "black", 8)
    draw.line((c, c, c + 70, c + 30), "black", 10)
    return image


def jpeg(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


def test_the_checkpoint_is_read_without_torch(weights: Weights) -> None:
    assert len(weights) == 296  # 49 batch norms of 5 entries, 50 convolutions, fc weight+bias
    assert all(w.dtype == np.float32 for w in weights.values())
    assert weights["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert weights["_blocks.0._depthwise_conv.weight"].shape == (32, 1, 3, 3)
    assert weights["_blocks.15._project_conv.weight"].shape == (320, 1152, 1, 1)
    assert weights["_conv_head.weight"].shape == (1280, 320, 1, 1)
    assert weights["_fc.weight"].shape == (1000, 1280)
    assert not any(key.startswith("_blocks.16.") for key in weights)  # 16 blocks
    # Values as torch.load reads them (offsets and strides right, not just shapes).
    expected = {
        "_fc.bias": [0.032053910195827484, -0.01598576083779335, 0.005290735047310591],
        "_bn0.running_var": [1.631428599357605, 70.37157440185547, 14.1073579788208],
    }
    for key, values in expected.items():
        assert weights[key][:3].tolist() == pytest.approx(values, rel=1e-7)
    project = weights["_blocks.15._project_conv.weight"][0, :3, 0, 0]
    assert project.tolist() == pytest.approx([0.0373827, 0.0293429, -0.0282568], abs=1e-7)


def test_a_checkpoint_that_names_anything_else_is_refused_not_run() -> None:
    head = b"".join(pickle.dumps(x) for x in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": 1}))
    with pytest.raises(pickle.UnpicklingError, match="not a plain state dict"):
        classifier.load_state_dict(head + pickle.dumps(os.getcwd))
    with pytest.raises(ValueError, match="legacy"):
        classifier.load_state_dict(pickle.dumps("a zip checkpoint, say"))


def test_the_logits_are_the_reference_networks(weights: Weights) -> None:
    y, x = np.mgrid[0:224, 0:224] / 224
    scaled = np.stack([np.sin(6 * x) * np.cos(4 * y), 2 * x - 1, 1 - 2 * y], axis=-1)
    logits = classifier.forward(classifier.build_network(weights), scaled.astype(np.float32))
    assert logits.shape == (1000,)
    top = np.argsort(logits)[::-1][:5]
    assert top.tolist() == [782, 499, 149, 818, 631]  # PyTorch's, on the same input
    reference = [5.011783123016357, 4.383121490478516, 4.372633457183838, 4.163529872894287,
                 3.9863524436950684]  # fmt: skip
    assert logits[top].tolist() == pytest.approx(reference, abs=1e-3)


def test_names_come_likeliest_first_with_probabilities() -> None:
    guesses = classifier.classify(clock(), top=5)
    assert len(guesses) == 5
    probabilities = [p for _, p in guesses]
    assert probabilities == sorted(probabilities, reverse=True)
    assert all(0 < p < 1 for p in probabilities) and sum(probabilities) <= 1
    assert guesses[0][0] == "analog clock" and guesses[0][1] > 0.6
    assert classifier.classify(clock(), top=5) == guesses  # deterministic
    assert classifier.classify(clock(), top=1) == guesses[:1]
    with pytest.raises(ValueError, match="top"):
        classifier.classify(clock(), top=0)


def test_a_blank_view_is_named_nothing_with_confidence() -> None:
    (blank, p), *_ = classifier.classify(Image.new("RGB", (320, 240), (128, 128, 128)))
    assert p < 0.1 and blank != "analog clock"


def test_the_camera_says_what_the_view_likely_shows() -> None:
    seen: list[Sighting] = []

    async def scenario() -> None:
        camera = CameraView(
            ComputeGate(), seen.append, lambda code, message: None, read_text=False,
            name_objects=True,
        )  # fmt: skip
        for frame in (clock(), Image.new("RGB", (320, 240), (128, 128, 128))):
            camera.submit(jpeg(frame))
            while camera.latest is None or camera.latest.frame < camera.frames:
                await asyncio.sleep(0.01)
        await camera.close()

    asyncio.run(scenario())
    dial, blank = seen
    assert dial.named and dial.labels[0][0] == "analog clock" and "classify" in dial.ms
    assert dial.description.endswith(". It might show an analog clock.")
    assert blank.named and "might show" not in blank.description  # unsure: nothing said
    # A model that sees the frame itself needs no names, as it needs no OCR.
    sees = CameraView(ComputeGate(), seen.append, lambda code, message: None, read_text=False)
    assert not sees.name_objects


def test_only_likely_names_are_said() -> None:
    scene = describe_scene(Image.new("RGB", (64, 64), "white"))
    assert "might show" not in describe(scene, (), (("coffee mug", 0.29),))
    said = describe(scene, ("EXIT",), (("coffee mug", 0.5), ("cup", 0.35), ("jug", 0.31)))
    assert said.endswith('text: "EXIT". It might show a coffee mug or a cup.')  # top 2
    assert describe(scene, (), (("jeans", 0.9),)).endswith("It might show jeans.")
    assert describe(scene, (), (("iPod", 0.9),)).endswith("It might show an iPod.")
