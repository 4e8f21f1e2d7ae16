"""A fake of an OpenAI-compatible chat server whose model hears, speaks or sees (named
so: no such weights ship in a pip package, so ``voxgate bench routes`` and the routing
tests use this). It records every request body and answers at once with a fixed reply,
as text or, when the request asks for audio (``modalities`` with "audio"), as speech
with its transcript, the way the API streams them. ``/props`` says what llama.cpp's
server would say of its model's modalities."""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np
from aiohttp import web

SPEECH_RATE = 24000  # the API's pcm16


def spoken_reply(seconds: float = 0.6) -> bytes:
    """The fake model's speech: a 220 Hz tone, PCM16 at 24 kHz."""
    t = np.arange(int(seconds * SPEECH_RATE)) / SPEECH_RATE
    return (np.sin(2 * np.pi * 220 * t) * 8000).astype("<i2").tobytes()


class FakeModelServer:
    def __init__(self, modalities: dict[str, bool] | None = None, reply: str = "Blue.") -> None:
        self.bodies: list[dict[str, Any]] = []
        self.modalities = modalities
        self.reply = reply
        self.speech = spoken_reply()
        self.app = web.Application()
        self.app.router.add_post("/v1/chat/completions", self._chat)
        self.app.router.add_get("/props", self._props)

    async def _props(self, request: web.Request) -> web.Response:
        if self.modalities is None:
            return web.Response(status=404)
        return web.json_response({"modalities": self.modalities})

    def _chunks(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        if "audio" not in (body.get("modalities") or []):
            return [{"choices": [{"delta": {"content": self.reply}, "finish_reason": None}]}]
        # Transcript first, the audio after it in three pieces, as the API interleaves them;
        # cut mid-sample, as nothing in the API promises whole samples per chunk.
        third = len(self.speech) // 3 | 1
        pieces = [self.speech[:third], self.speech[third : 2 * third], self.speech[2 * third :]]
        audio = [{"id": "audio_1", "transcript": self.reply}]
        audio += [{"data": base64.b64encode(p).decode()} for p in pieces]
        return [{"choices": [{"delta": {"audio": a}, "finish_reason": None}]} for a in audio]

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.bodies.append(body)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for chunk in [*self._chunks(body), {"choices": [{"delta": {}, "finish_reason": "stop"}]}]:
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        return response
