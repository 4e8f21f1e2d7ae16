"""The ``converse`` voice client over the OpenAI Realtime endpoint instead of the native
protocol: the same real-time pacing, turn logic and client-side voice-to-voice clock,
so that ``voxgate bench latency --realtime`` compares the two transports on equal terms.

Audio goes up as base64 PCM16 at 24 kHz (each 16 kHz test utterance resampled whole
before it is streamed, as a 24 kHz microphone would deliver it) and comes back the
same way. The Realtime API has no playback reports: the
server estimates playback, as for a protocol-1 client.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from typing import Any

import aiohttp
import numpy as np

from voxgate.audio.pcm import FloatArray, float_to_pcm16, resample
from voxgate.client.converse import RATE, TurnResult, VoiceClient, with_token

REALTIME_RATE = 24000


class RealtimeVoiceClient(VoiceClient):
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        super().__init__(ws, protocol=1)
        self.output_rate = REALTIME_RATE
        self._prepared: FloatArray | None = None  # the utterance being streamed, at 24 kHz
        self._sent = 0
        self._turn_of: dict[str, int] = {}  # response id -> the session's turn number

    async def handshake(
        self, persona: str | None = None, config: dict[str, Any] | None = None
    ) -> None:
        self._reader = asyncio.create_task(self._read())
        await asyncio.wait_for(self._ready.wait(), timeout=30)  # session.created
        if config:
            await self._send({"type": "session.update", "session": {"voxgate": config}})

    async def _send(self, event: dict[str, Any]) -> None:
        await self.ws.send_str(json.dumps(event))

    async def stream(
        self, audio: FloatArray, stop: asyncio.Event | None = None, turn: TurnResult | None = None
    ) -> float:
        # A microphone captures at 24 kHz: the utterance is resampled whole, beforehand, so
        # this client adds no resampler delay of its own (the server's is measured).
        self._prepared, self._sent = resample(audio, RATE, REALTIME_RATE), 0
        try:
            return await super().stream(audio, stop, turn)
        finally:
            self._prepared = None

    async def send_audio(self, chunk: FloatArray) -> None:
        n = len(chunk) * REALTIME_RATE // RATE  # 320 -> 480: the ratio is exact
        if self._prepared is not None:
            piece = self._prepared[self._sent : self._sent + n]
            self._sent += n
        else:  # the open microphone between utterances: silence
            piece = np.zeros(n, dtype=np.float32)
        pcm = float_to_pcm16(piece)
        await self._send(
            {"type": "input_audio_buffer.append", "audio": base64.b64encode(pcm).decode()}
        )

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type is aiohttp.WSMsgType.TEXT:
                await self._on_realtime(json.loads(msg.data), time.monotonic())

    async def _on_realtime(self, event: dict[str, Any], now: float) -> None:
        kind = event.get("type")
        if kind == "session.created":
            self.welcome = {"session_id": event["session"]["id"], **event["session"]}
            self._ready.set()
        elif kind == "input_audio_buffer.speech_started":
            await self._on_event({"type": "vad", "speaking": True}, now)
        elif kind == "conversation.item.input_audio_transcription.delta":
            turn = self._current()
            turn.interims.append((turn.interims[-1] if turn.interims else "") + event["delta"])
        elif kind == "conversation.item.input_audio_transcription.completed":
            self._current().transcript = event["transcript"]
        elif kind == "response.created":
            number = len(self._turn_of) + 1
            self._turn_of[event["response"]["id"]] = number
            await self._on_event({"type": "turn_start", "turn": number}, now)
        elif kind == "response.output_audio_transcript.delta":
            owner = self._owner()
            if event.get("voxgate_filler"):
                owner.filler += event["delta"]
            else:
                owner.reply += event["delta"]
        elif kind == "response.output_audio.delta":
            pcm = base64.b64decode(event["delta"])
            self._on_audio(pcm, bool(event.get("voxgate_filler")), now)
        elif kind == "response.done":
            response = event["response"]
            if response.get("status") == "cancelled":
                cut = self._turn_of.get(response["id"])
                await self._on_event({"type": "interrupted", "turn": cut}, now)
            self._reply_done()
        elif kind == "voxgate.turn.metrics":
            owner = self._owner(self._turn_of.get(event.get("response_id", "")))
            owner.metrics = event["metrics"]
        elif kind == "error":
            error = event.get("error") or {}
            text = f"{error.get('code')}: {error.get('message')}"
            self.errors.append(text)
            self._current().errors.append(text)

    async def close(self) -> None:
        await self.ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader


async def converse_realtime(
    url: str,
    utterances: list[FloatArray],
    *,
    token: str | None = None,
    model: str | None = None,
    config: dict[str, Any] | None = None,
    timeout: float = 90.0,
) -> tuple[list[TurnResult], RealtimeVoiceClient]:
    """``converse`` through ``/v1/realtime``: one session, one turn per utterance."""
    target = url + (f"?model={model}" if model else "")
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(with_token(target, token), max_msg_size=0) as ws,
    ):
        client = RealtimeVoiceClient(ws)
        await client.handshake(config=config)
        results = [await client.turn(audio, timeout) for audio in utterances]
        await client.close()
        return results, client
