"""Routing by what the model can do: a model that sees gets the camera frame as an image
content part (no description, no OCR); any other gets the offline description. The LLM
is voxgate.bench.fake_model_server's recording HTTP server behind the real
OpenAICompatEngine; STT and TTS are fakes (tests/fakes.py)."""

from __future__ import annotations

import asyncio
import base64
import io

from PIL import Image

from tests.fakes import FakeSTT, FakeTTS, fake_engines
from tests.served_app import serving
from tests.session_harness import Harness
from voxgate.bench.fake_model_server import FakeModelServer
from voxgate.llm.base import LLMCapabilities
from voxgate.llm.openai_compat import OpenAICompatEngine
from voxgate.protocol.frames import FrameType, encode


def blue_frame() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (640, 480), (40, 80, 210)).save(out, "JPEG")
    return out.getvalue()


async def converse(url: str, capabilities: LLMCapabilities) -> tuple[Harness, OpenAICompatEngine]:
    llm = OpenAICompatEngine(url, capabilities=capabilities)
    await llm.read_capabilities()  # as warm() does
    engines = fake_engines(FakeSTT(lambda s: ""), tts=FakeTTS(ms_per_char=2))
    engines.llm = llm
    h = Harness(engines)
    await h.start()
    await h.conn.on_message(encode(FrameType.IMAGE, blue_frame()))
    await h.wait_for("camera", 1, timeout_s=30)
    await h.say("What colour is this?")
    await h.wait_for_done(1)
    await h.conn.close()
    await llm.close()
    return h, llm


def test_a_model_that_sees_gets_the_frame_as_an_image_part() -> None:
    fake = FakeModelServer(modalities={"vision": True, "audio": False})

    async def scenario() -> tuple[Harness, OpenAICompatEngine]:
        async with serving(fake.app) as url:
            return await converse(url, LLMCapabilities())  # nothing declared: /props says

    h, llm = asyncio.run(scenario())
    assert llm.capabilities == LLMCapabilities(vision=True)
    (body,) = fake.bodies
    user = body["messages"][-1]
    assert user["role"] == "user"
    text, image = user["content"]
    assert text == {"type": "text", "text": "What colour is this?"}
    prefix = "data:image/jpeg;base64,"
    assert image["type"] == "image_url" and image["image_url"]["url"].startswith(prefix)
    sent = Image.open(io.BytesIO(base64.b64decode(image["image_url"]["url"][len(prefix) :])))
    assert max(sent.size) == 384  # shrunk on the server before it goes out
    # No bridge: no description anywhere, no text recognition on the frame.
    assert not any("camera" in str(m["content"]) for m in body["messages"][:-1])
    (metrics,) = h.events("metrics")
    assert metrics["routes"] == {"camera": "image", "speech": "tts"}
    assert "ocr" not in h.events("camera")[0]["ms"]


def test_any_other_model_gets_the_description() -> None:
    fake = FakeModelServer(modalities=None)  # a server that says nothing of modalities

    async def scenario() -> tuple[Harness, OpenAICompatEngine]:
        async with serving(fake.app) as url:
            return await converse(url, LLMCapabilities())

    h, llm = asyncio.run(scenario())
    assert llm.capabilities == LLMCapabilities()
    (body,) = fake.bodies
    assert all(isinstance(m["content"], str) for m in body["messages"])  # plain text only
    assert body["messages"][-2]["role"] == "system"
    assert "mostly blue" in body["messages"][-2]["content"]
    (metrics,) = h.events("metrics")
    assert metrics["routes"] == {"camera": "description", "speech": "tts"}
    assert metrics["tts_calls"] == 1  # "Blue." synthesized by the TTS bridge
