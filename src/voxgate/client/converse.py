"""A command-line voice client: streams speech to a server in real time, collects the replies.

``voxgate converse a.wav b.wav`` plays each file as one user turn (at 16 kHz,
in 20 ms frames, paced by the clock like a microphone), keeps streaming
silence while the persona answers, and reports per turn: the final
transcript, the reply, the reply audio, the server's latency breakdown and
the voice-to-voice latency measured here, at the client (user speech end ->
first answer audio frame received). Benchmarks and tests reuse ``converse``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

from voxgate.audio.pcm import FloatArray, float_to_pcm16
from voxgate.audio.wav import read_wav, write_wav_bytes
from voxgate.protocol.frames import (
    FLAG_FILLER,
    PROTOCOL_VERSION,
    FrameType,
    decode,
    encode,
    encode_event,
)

RATE = 16000
FRAME_SAMPLES = 320  # 20 ms
# After the reply has played, a person takes a moment before speaking again.
GAP_AFTER_REPLY_S = 0.6
SPEECH_RMS = 0.01


@dataclass
class TurnResult:
    index: int
    transcript: str = ""
    interims: list[str] = field(default_factory=list)
    reply: str = ""
    filler: str = ""
    reply_audio: bytearray = field(default_factory=bytearray)
    metrics: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    speech_end_wall: float = 0.0
    first_audio_wall: float | None = None
    first_answer_audio_wall: float | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)
    interrupted: bool = False
    turn_starts: list[float] = field(default_factory=list)  # wall times of turn_start events

    @property
    def false_endpoint(self) -> bool:
        """The server took the turn before the user had finished this utterance."""
        return len(self.turn_starts) > 1 or any(t < self.speech_end_wall for t in self.turn_starts)

    @property
    def client_voice_to_voice_ms(self) -> float | None:
        if self.first_answer_audio_wall is None:
            return None
        return round((self.first_answer_audio_wall - self.speech_end_wall) * 1000, 1)

    @property
    def client_first_audio_ms(self) -> float | None:
        if self.first_audio_wall is None:
            return None
        return round((self.first_audio_wall - self.speech_end_wall) * 1000, 1)

    def summary(self) -> dict[str, Any]:
        return {
            "turn": self.index,
            "transcript": self.transcript,
            "reply": self.reply,
            "filler": self.filler,
            "errors": self.errors,
            "client_voice_to_voice_ms": self.client_voice_to_voice_ms,
            "client_first_audio_ms": self.client_first_audio_ms,
            "durations": self.metrics.get("durations", {}),
            "speculative": self.metrics.get("speculative"),
            "wasted_llm_calls": self.metrics.get("wasted_llm_calls"),
            "llm": self.metrics.get("llm", {}),
            "interrupted": self.interrupted,
        }


def speech_end_sample(audio: FloatArray) -> int:
    """End of the last 20 ms frame with speech energy: where the user stops talking."""
    n = len(audio) // FRAME_SAMPLES
    if n == 0:
        return len(audio)
    frames = audio[: n * FRAME_SAMPLES].reshape(n, FRAME_SAMPLES)
    loud = np.flatnonzero(np.sqrt(np.mean(frames**2, axis=1)) > SPEECH_RMS)
    return int((loud[-1] + 1) * FRAME_SAMPLES) if loud.size else len(audio)


class VoiceClient:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.welcome: dict[str, Any] = {}
        self.output_rate = 22050
        self.turns: list[TurnResult] = []
        self.events: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self._ready = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None
        # Replies the server has started (turn_start) and not yet finished (DONE): a
        # turn is over only when every reply its utterance caused is done.
        self._open_replies = 0

    async def handshake(
        self, persona: str | None = None, config: dict[str, Any] | None = None
    ) -> None:
        hello: dict[str, Any] = {"type": "hello", "protocol": PROTOCOL_VERSION, "sample_rate": RATE}
        if persona:
            hello["persona"] = persona
        if config:
            hello["config"] = config
        self._reader = asyncio.create_task(self._read())
        await self.ws.send_bytes(encode_event(hello))
        await asyncio.wait_for(self._ready.wait(), timeout=30)

    def _current(self) -> TurnResult:
        if not self.turns:
            self.turns.append(TurnResult(0))
        return self.turns[-1]

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type is not aiohttp.WSMsgType.BINARY:
                continue
            frame = decode(msg.data)
            now = time.monotonic()
            turn = self._current()
            if frame.type is FrameType.EVENT:
                event = frame.json()
                self.events.append(event)
                if event.get("type") == "welcome":
                    self.welcome = event
                    self.output_rate = int(event["output_sample_rate"])
                elif event.get("type") == "metrics":
                    turn.metrics = event
                elif event.get("type") == "turn_start":
                    turn.turn_starts.append(now)
                    self._open_replies += 1
                    turn.done.clear()
                elif event.get("type") == "interrupted":
                    turn.interrupted = True
            elif frame.type is FrameType.READY:
                self._ready.set()
            elif frame.type is FrameType.TRANSCRIPT:
                if frame.final:
                    turn.transcript = frame.text
                else:
                    turn.interims.append(frame.text)
            elif frame.type is FrameType.LLM_CHUNK:
                if frame.flags & FLAG_FILLER:
                    turn.filler += frame.text
                else:
                    turn.reply += frame.text
            elif frame.type is FrameType.TTS_AUDIO:
                turn.first_audio_wall = turn.first_audio_wall or now
                if not frame.flags & FLAG_FILLER:
                    turn.first_answer_audio_wall = turn.first_answer_audio_wall or now
                    turn.reply_audio += frame.payload
            elif frame.type is FrameType.ERROR:
                self.errors.append(frame.text)
                turn.errors.append(frame.text)
            elif frame.type is FrameType.DONE:
                self._open_replies = max(0, self._open_replies - 1)
                if self._open_replies == 0:
                    turn.done.set()

    async def stream(self, audio: FloatArray, stop: asyncio.Event | None = None) -> float:
        """Send audio paced in real time; returns the wall time its speech ended."""
        end_sample = speech_end_sample(audio)
        speech_end_wall = 0.0
        start = time.monotonic()
        for i, offset in enumerate(range(0, len(audio), FRAME_SAMPLES)):
            if stop is not None and stop.is_set():
                break
            await asyncio.sleep(max(0.0, start + i * 0.02 - time.monotonic()))
            chunk = audio[offset : offset + FRAME_SAMPLES]
            await self.ws.send_bytes(encode(FrameType.AUDIO_CHUNK, float_to_pcm16(chunk)))
            if offset + len(chunk) >= end_sample and not speech_end_wall:
                speech_end_wall = time.monotonic()
        return speech_end_wall or time.monotonic()

    async def silence_until(self, done: asyncio.Event, timeout: float) -> None:
        """Keep the microphone open (silence) until ``done`` or the timeout."""
        silent = np.zeros(FRAME_SAMPLES, dtype=np.float32)
        deadline = time.monotonic() + timeout
        start = time.monotonic()
        i = 0
        while not done.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(max(0.0, start + i * 0.02 - time.monotonic()))
            await self.ws.send_bytes(encode(FrameType.AUDIO_CHUNK, float_to_pcm16(silent)))
            i += 1

    async def turn(self, audio: FloatArray, timeout: float = 60.0) -> TurnResult:
        result = TurnResult(len(self.turns))
        self.turns.append(result)
        result.speech_end_wall = await self.stream(audio)
        while True:
            await self.silence_until(result.done, timeout)
            if not result.done.is_set():
                result.errors.append(f"timeout: no reply within {timeout:.0f} s")
                return result
            starts = len(result.turn_starts)
            # Let the reply "play" before the next turn, as a listener would.
            reply_s = len(result.reply_audio) / 2 / self.output_rate
            played_s = time.monotonic() - (result.first_audio_wall or time.monotonic())
            pause = asyncio.Event()
            await self.silence_until(pause, max(0.0, reply_s - played_s) + GAP_AFTER_REPLY_S)
            # A false endpoint leaves the rest of the utterance to be taken as one more
            # turn a moment later: follow it before speaking again.
            if len(result.turn_starts) == starts and self._open_replies == 0:
                return result

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.ws.send_bytes(encode(FrameType.AUDIO_END))
        await self.ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader


def with_token(url: str, token: str | None) -> str:
    if not token:
        return url
    return url + ("&" if "?" in url else "?") + f"token={token}"


async def converse(
    url: str,
    utterances: list[FloatArray],
    *,
    token: str | None = None,
    persona: str | None = None,
    config: dict[str, Any] | None = None,
    timeout: float = 90.0,
) -> tuple[list[TurnResult], VoiceClient]:
    """One session, one turn per utterance (16 kHz float32 audio)."""
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(with_token(url, token), max_msg_size=0) as ws,
    ):
        client = VoiceClient(ws)
        await client.handshake(persona, config)
        await ws.send_bytes(encode(FrameType.AUDIO_START))
        results = [await client.turn(audio, timeout) for audio in utterances]
        await client.close()
        return results, client


def _print_turn(result: TurnResult) -> None:
    print(f"--- turn {result.index + 1}")
    print(f"you said : {result.transcript}")
    if result.filler:
        print(f"filler   : {result.filler}")
    print(f"reply    : {result.reply.strip()}")
    for error in result.errors:
        print(f"error    : {error}")
    durations = result.metrics.get("durations", {})
    parts = [f"{k}={v:.0f}ms" for k, v in durations.items() if isinstance(v, int | float)]
    print("server   : " + ", ".join(parts))
    print(
        f"client   : voice-to-voice={result.client_voice_to_voice_ms} ms "
        f"(first audio {result.client_first_audio_ms} ms)"
    )


def cli_converse(args: argparse.Namespace) -> int:
    utterances = [read_wav(path, RATE)[0] for path in args.wav]
    try:
        results, client = asyncio.run(
            converse(args.url, utterances, token=args.token, persona=args.persona)
        )
    except aiohttp.ClientError as exc:
        print(
            f"voxgate converse: cannot reach {args.url}: {exc}. Is `voxgate serve` running? "
            "Pass --token if the server printed one.",
            file=sys.stderr,
        )
        return 1
    out = Path(args.out)
    for result in results:
        path = out if len(results) == 1 else out.with_stem(f"{out.stem}-{result.index + 1}")
        write_wav_bytes(path, bytes(result.reply_audio), client.output_rate)
        if args.json:
            print(json.dumps(result.summary()))
        else:
            _print_turn(result)
            print(f"audio    : {path}")
    return 0 if all(r.reply and not r.errors for r in results) else 2
