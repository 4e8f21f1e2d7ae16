"""Routing by what the model can do: a model that sees gets the camera frame as an image
content part (no description, no OCR); any other gets the offline description. The LLM
is a recording HTTP server (a fake of an OpenAI-compatible one, named so) behind the real
OpenAICompatEngine; STT and TTS are fakes (tests/fakes.py)."""

from __future__ import annotations

import asyncio
import base64
import io
import json
from typing import Any

from aiohttp import web
from PIL import Image

from tests.fakes import FakeSTT, FakeTTS, fake_engines
from tests.served_app import serving
from tests.session_harness import Harness
from voxgate.llm.base import LLMCapabilities
from voxgate.llm.openai_compat import OpenAICompatEngine
from voxgate.protocol.frames import FrameType, encode


class VisionServerFake:
    """Answers every chat request with "Blue." and keeps the bodies; ``/props`` says
    what llama.cpp's server would say of its model's modalities."""

    def __init__(self, modalities: dict[str, bool] | None = None) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.modalities = modalities
        self.app = web.Application()
        self.app.router.add_post("/v1/chat/completions", self._chat)
        self.app.router.add_get("/props", self._props)

    async def _props(self, request: web.Request) -> web.Response:
        if self.modalities is None:
            return web.Response(status=404)
        return web.json_response({"modalities": self.modalities})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        self.bodies.append(await request.json())
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for chunk in (
            {"choices": [{"delta": {"content": "Blue."}, "finish_reason": None}]},
            {"choices": [{"delta": {}, "finish_reason": "stop"}]},
        ):
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        return response


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
    fake = VisionServerFake(modalities={"vision": True, "audio": False})

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
    assert metrics["routes"] == {"camera": "image"}
    assert "ocr" not in h.events("camera")[0]["ms"]


def test_any_other_model_gets_the_description() -> None:
    fake = VisionServerFake(modalities=None)  # a server that says nothing of modalities

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
    assert metrics["routes"] == {"camera": "description"}
    assert metrics["tts_calls"] == 1  # "Blue." synthesized by the TTS bridge
