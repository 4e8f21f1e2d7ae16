"""A command-line voice client: streams speech to a server in real time, collects the replies.

``voxgate converse a.wav b.wav`` plays each file as one user turn (at 16 kHz,
in 20 ms frames, paced by the clock like a microphone), keeps streaming
silence while the persona answers, and reports per turn: the final
transcript, the reply, the reply audio, the server's latency breakdown and
the voice-to-voice latency measured here, at the client (user speech end ->
first answer audio frame received). Benchmarks and tests reuse ``converse``.

It plays nothing, but it reports playback like a listener would (protocol 2,
``playback`` events): a play cursor that advances in real time from a turn's
first audio frame and never passes the audio received. With ``barge_in_after_s``
the next utterance starts that long after the reply's first audio, over the
reply; ``ignore_interrupted`` keeps collecting the reply after ``interrupted``,
to measure when the server itself stopped sending it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

from voxgate.aio import cancel_and_wait
from voxgate.audio.pcm import FloatArray, float_to_pcm16
from voxgate.audio.wav import read_wav, write_wav_bytes
from voxgate.protocol.frames import (
    FLAG_FILLER,
    FrameType,
    decode,
    encode,
    encode_event,
)

RATE = 16000
FRAME_SAMPLES = 320  # 20 ms
# After the reply has played, a person takes a moment before speaking again.
GAP_AFTER_REPLY_S = 0.6
# How long after a reply to wait for a turn from speech the server heard but has not
# answered yet (the sequential baseline decodes ~1 s after a 500 ms endpoint).
UNANSWERED_SPEECH_WAIT_S = 5.0
SPEECH_RMS = 0.01
# The protocol version this client speaks (the server also accepts 1, without
# `playback` reports).
CLIENT_PROTOCOL = 2
# `playback` reports while audio plays: the protocol asks for one at least every
# 100 ms; 80 ms leaves room for event-loop jitter.
PLAYBACK_REPORT_S = 0.08


@dataclass
class Playback:
    """A simulated listener's playback of one server turn's reply audio.

    A play cursor advances in real time from the turn's first audio frame (or
    from the end of the previous turn's audio, which plays first), never past
    the audio received: when it runs dry it waits, and resumes when the next
    frame arrives.
    """

    turn: int
    received_ms: float = 0.0
    cursor_ms: float = 0.0  # play position at anchor_wall
    anchor_wall: float | None = None  # None until the first frame
    stopped_ms: float | None = None  # flushed (interrupted) at this position
    reported_ms: float | None = None  # last position sent to the server

    def position(self, now: float) -> float:
        """Milliseconds of this turn's audio played by wall time ``now``."""
        if self.stopped_ms is not None:
            return self.stopped_ms
        if self.anchor_wall is None:
            return 0.0
        return min(self.received_ms, self.cursor_ms + max(0.0, now - self.anchor_wall) * 1000)

    def end_wall(self) -> float | None:
        """When the audio received so far will have played (None: nothing to play)."""
        if self.anchor_wall is None or self.stopped_ms is not None:
            return None
        return self.anchor_wall + (self.received_ms - self.cursor_ms) / 1000

    def receive(self, ms: float, now: float, not_before: float = 0.0) -> None:
        if self.stopped_ms is not None or ms <= 0:
            return
        if self.anchor_wall is None:
            self.anchor_wall = max(now, not_before)
        else:
            played = self.position(now)
            if played >= self.received_ms:  # ran dry: the cursor resumes from now
                self.cursor_ms, self.anchor_wall = played, now
        self.received_ms += ms

    def stop(self, now: float) -> None:
        if self.stopped_ms is None:
            self.stopped_ms = self.position(now)


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
    server_turns: list[int] = field(default_factory=list)  # `turn` of those turn_start events
    open_turns: set[int] = field(default_factory=set)  # started, DONE not yet received
    interruptions: list[dict[str, Any]] = field(default_factory=list)  # `interrupted` events
    speech_start_wall: float | None = None
    last_audio_wall: float | None = None  # the last TTS_AUDIO frame of this turn's replies
    spoke_over: bool = False  # the next utterance started while this reply was playing
    next_speech_start_wall: float | None = None

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

    @property
    def last_audio_after_barge_in_ms(self) -> float | None:
        """The last reply audio frame received, after the next utterance's speech began.

        Only for a reply that was spoken over or interrupted. How long the server
        kept sending once the user barged in (negative: it had stopped before).
        """
        if not (self.spoke_over or self.interrupted):
            return None
        if self.last_audio_wall is None or self.next_speech_start_wall is None:
            return None
        return round((self.last_audio_wall - self.next_speech_start_wall) * 1000, 1)

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
            "playback": self.metrics.get("playback"),
            "interrupted_playback": (
                self.interruptions[-1].get("playback") if self.interruptions else None
            ),
            "spoke_over": self.spoke_over,
            "last_audio_after_barge_in_ms": self.last_audio_after_barge_in_ms,
        }


def _loud_frames(audio: FloatArray) -> Any:
    n = len(audio) // FRAME_SAMPLES
    frames = audio[: n * FRAME_SAMPLES].reshape(n, FRAME_SAMPLES)
    return np.flatnonzero(np.sqrt(np.mean(frames**2, axis=1)) > SPEECH_RMS)


def speech_end_sample(audio: FloatArray) -> int:
    """End of the last 20 ms frame with speech energy: where the user stops talking."""
    loud = _loud_frames(audio)
    return int((loud[-1] + 1) * FRAME_SAMPLES) if loud.size else len(audio)


def speech_start_sample(audio: FloatArray) -> int:
    """Start of the first 20 ms frame with speech energy: where the user starts talking."""
    loud = _loud_frames(audio)
    return int(loud[0] * FRAME_SAMPLES) if loud.size else 0


class VoiceClient:
    def __init__(
        self,
        ws: aiohttp.ClientWebSocketResponse,
        *,
        ignore_interrupted: bool = False,
        protocol: int = CLIENT_PROTOCOL,
    ) -> None:
        self.ws = ws
        self.ignore_interrupted = ignore_interrupted
        self.protocol = protocol
        self.welcome: dict[str, Any] = {}
        self.output_rate = 22050
        self.turns: list[TurnResult] = []
        self.events: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self.playbacks: dict[int, Playback] = {}
        self._ready = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None
        self._reporter: asyncio.Task[None] | None = None
        # The server turn whose reply is arriving (turns are serialized: every frame
        # until the next turn_start is its), and the utterance each turn answers.
        self._server_turn: int | None = None
        # The server heard speech start since its last turn_start: an utterance (the rest
        # of one split by a false endpoint) is still on its way to becoming a turn.
        self._speech_unanswered = False
        self._owners: dict[int, TurnResult] = {}
        self._dropped_turn: int | None = None  # interrupted: its late audio is not played
        self._previous_playback: Playback | None = None  # plays before the current turn's

    async def handshake(
        self, persona: str | None = None, config: dict[str, Any] | None = None
    ) -> None:
        hello: dict[str, Any] = {"type": "hello", "protocol": self.protocol, "sample_rate": RATE}
        if persona:
            hello["persona"] = persona
        if config:
            hello["config"] = config
        self._reader = asyncio.create_task(self._read())
        await self.ws.send_bytes(encode_event(hello))
        await asyncio.wait_for(self._ready.wait(), timeout=30)
        # A server without `protocol` in `welcome` speaks version 1: no reports.
        if int(self.welcome.get("protocol", 1)) >= 2:
            self._reporter = asyncio.create_task(self._report_playback())

    def _current(self) -> TurnResult:
        if not self.turns:
            self.turns.append(TurnResult(0))
        return self.turns[-1]

    def _owner(self, server_turn: Any = None) -> TurnResult:
        """The utterance a server turn answers (by default the turn now arriving)."""
        if not isinstance(server_turn, int):
            server_turn = self._server_turn
        owner = self._owners.get(server_turn) if server_turn is not None else None
        return owner or self._current()

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type is not aiohttp.WSMsgType.BINARY:
                continue
            frame = decode(msg.data)
            now = time.monotonic()
            if frame.type is FrameType.EVENT:
                await self._on_event(frame.json(), now)
            elif frame.type is FrameType.READY:
                self._ready.set()
            elif frame.type is FrameType.TRANSCRIPT:
                turn = self._current()  # the user's utterance, not the reply now arriving
                if frame.final:
                    turn.transcript = frame.text
                else:
                    turn.interims.append(frame.text)
            elif frame.type is FrameType.LLM_CHUNK:
                turn = self._owner()
                if frame.flags & FLAG_FILLER:
                    turn.filler += frame.text
                else:
                    turn.reply += frame.text
            elif frame.type is FrameType.TTS_AUDIO:
                self._on_audio(frame.payload, bool(frame.flags & FLAG_FILLER), now)
            elif frame.type is FrameType.ERROR:
                self.errors.append(frame.text)
                self._current().errors.append(frame.text)
            elif frame.type is FrameType.DONE:
                self._reply_done()

    def _reply_done(self) -> None:
        turn = self._owner()
        if self._server_turn is not None:
            turn.open_turns.discard(self._server_turn)
        # A turn is over only when every reply its utterance caused is done.
        if not turn.open_turns:
            turn.done.set()

    async def _on_event(self, event: dict[str, Any], now: float) -> None:
        self.events.append(event)
        kind = event.get("type")
        if kind == "welcome":
            self.welcome = event
            self.output_rate = int(event["output_sample_rate"])
        elif kind == "metrics":
            self._owner(event.get("turn")).metrics = event
        elif kind == "vad" and event.get("speaking"):
            self._speech_unanswered = True
        elif kind == "turn_start":
            self._speech_unanswered = False
            turn = self._current()
            turn.turn_starts.append(now)
            server_turn = event.get("turn")
            if isinstance(server_turn, int):
                self._previous_playback = (
                    self.playbacks.get(self._server_turn) if self._server_turn is not None else None
                )
                self._server_turn = server_turn
                self._owners[server_turn] = turn
                turn.server_turns.append(server_turn)
                turn.open_turns.add(server_turn)
                self.playbacks[server_turn] = Playback(server_turn)
            turn.done.clear()
        elif kind == "interrupted":
            server_turn = event.get("turn")
            turn = self._owner(server_turn)
            turn.interrupted = True
            turn.interruptions.append(event)
            if not isinstance(server_turn, int):
                server_turn = self._server_turn
            if self.ignore_interrupted or server_turn is None:
                return
            # Flush: playback stops here, late audio of the turn is dropped, and the
            # final position goes to the server.
            self._dropped_turn = server_turn
            playback = self.playbacks.get(server_turn)
            if playback is not None:
                playback.stop(now)
                await self._send_playback(playback, now, final=True)

    def _on_audio(self, pcm: bytes, filler: bool, now: float) -> None:
        turn = self._owner()
        turn.last_audio_wall = now
        if self._server_turn is not None and self._server_turn == self._dropped_turn:
            return
        turn.first_audio_wall = turn.first_audio_wall or now
        if not filler:
            turn.first_answer_audio_wall = turn.first_answer_audio_wall or now
            turn.reply_audio += pcm
        playback = self.playbacks.get(self._server_turn) if self._server_turn is not None else None
        if playback is not None:
            # The previous turn's audio plays first.
            previous = self._previous_playback
            not_before = (previous.end_wall() if previous is not None else None) or 0.0
            playback.receive(len(pcm) / 2 / self.output_rate * 1000, now, not_before)

    async def _send_playback(self, playback: Playback, now: float, final: bool = False) -> None:
        if self._reporter is None:
            return
        played = round(playback.position(now))
        if played == playback.reported_ms and not final:
            return
        playback.reported_ms = played
        event = {"type": "playback", "turn": playback.turn, "played_ms": played}
        with contextlib.suppress(ConnectionResetError):
            await self.ws.send_bytes(encode_event(event))

    async def _report_playback(self) -> None:
        """Report each turn's play position while it advances, and its final one."""
        while not self.ws.closed:
            await asyncio.sleep(PLAYBACK_REPORT_S)
            now = time.monotonic()
            # Only the last two turns can still be playing (the older one finishing).
            for server_turn in sorted(self.playbacks)[-2:]:
                await self._send_playback(self.playbacks[server_turn], now)

    def playing_until(self, turn: TurnResult) -> float:
        """Wall time when the audio received for this utterance's replies will have played."""
        ends = [self.playbacks[t].end_wall() for t in turn.server_turns if t in self.playbacks]
        return max([end for end in ends if end is not None], default=0.0)

    async def send_audio(self, chunk: FloatArray) -> None:
        """One 20 ms frame of the microphone (16 kHz float32)."""
        await self.ws.send_bytes(encode(FrameType.AUDIO_CHUNK, float_to_pcm16(chunk)))

    async def stream(
        self, audio: FloatArray, stop: asyncio.Event | None = None, turn: TurnResult | None = None
    ) -> float:
        """Send audio paced in real time; returns the wall time its speech ended."""
        start_sample = speech_start_sample(audio)
        end_sample = speech_end_sample(audio)
        speech_end_wall = 0.0
        start = time.monotonic()
        for i, offset in enumerate(range(0, len(audio), FRAME_SAMPLES)):
            if stop is not None and stop.is_set():
                break
            await asyncio.sleep(max(0.0, start + i * 0.02 - time.monotonic()))
            chunk = audio[offset : offset + FRAME_SAMPLES]
            if turn is not None and turn.speech_start_wall is None and offset >= start_sample:
                turn.speech_start_wall = time.monotonic()
            await self.send_audio(chunk)
            if offset + len(chunk) >= end_sample and not speech_end_wall:
                speech_end_wall = time.monotonic()
        return speech_end_wall or time.monotonic()

    async def silence_until(self, done: asyncio.Event, timeout: float) -> None:
        """Keep the microphone open (silence) until ``done`` or the timeout."""
        await self._silence_while(lambda: not done.is_set(), timeout)

    async def _silence_while(self, keep_going: Callable[[], bool], timeout: float) -> None:
        silent = np.zeros(FRAME_SAMPLES, dtype=np.float32)
        deadline = time.monotonic() + timeout
        start = time.monotonic()
        i = 0
        while keep_going() and time.monotonic() < deadline:
            await asyncio.sleep(max(0.0, start + i * 0.02 - time.monotonic()))
            await self.send_audio(silent)
            i += 1

    async def turn(
        self, audio: FloatArray, timeout: float = 60.0, barge_in_after_s: float | None = None
    ) -> TurnResult:
        """Speak one utterance, then listen until its reply has played.

        With ``barge_in_after_s``, return (for the next utterance to start) that
        long after the reply's first audio frame instead, over the reply if it is
        still playing.
        """
        result = TurnResult(len(self.turns))
        previous = self.turns[-1] if self.turns else None
        self.turns.append(result)
        result.speech_end_wall = await self.stream(audio, turn=result)
        if previous is not None:
            previous.next_speech_start_wall = result.speech_start_wall

        def barge_in_due() -> bool:
            if barge_in_after_s is None or result.first_audio_wall is None:
                return False
            return time.monotonic() >= result.first_audio_wall + barge_in_after_s

        def barge_in() -> TurnResult:
            result.spoke_over = time.monotonic() < self.playing_until(result)
            return result

        give_up = math.inf
        while True:
            await self._silence_while(
                lambda: not result.done.is_set() and not barge_in_due(), timeout
            )
            if give_up == math.inf:
                give_up = time.monotonic() + UNANSWERED_SPEECH_WAIT_S
            if barge_in_due():
                return barge_in()
            if not result.done.is_set():
                result.errors.append(f"timeout: no reply within {timeout:.0f} s")
                return result
            starts = len(result.turn_starts)
            # Let the reply "play" before the next turn, as a listener would.
            resume = max(time.monotonic(), self.playing_until(result)) + GAP_AFTER_REPLY_S

            def pausing(resume: float = resume) -> bool:
                return time.monotonic() < resume and not barge_in_due()

            await self._silence_while(pausing, GAP_AFTER_REPLY_S + timeout)
            if barge_in_due():
                return barge_in()
            # A false endpoint leaves the rest of the utterance to be taken as one more
            # turn a moment later: follow it before speaking again. (Speech the server
            # discards, a breath, never gets a turn: wait for it only so long.)
            settled = not self._speech_unanswered or time.monotonic() > give_up
            if len(result.turn_starts) == starts and not result.open_turns and settled:
                return result

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.ws.send_bytes(encode(FrameType.AUDIO_END))
        await self.ws.close()
        for task in (self._reporter, self._reader):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task


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
    barge_in_after_s: float | None = None,
    ignore_interrupted: bool = False,
    camera: Sequence[bytes] = (),
    camera_interval_s: float = 1.0,
) -> tuple[list[TurnResult], VoiceClient]:
    """One session, one turn per utterance (16 kHz float32 audio).

    ``barge_in_after_s``: start each next utterance that long after the reply's
    first audio (the last reply is heard out). ``camera``: JPEG frames sent as
    ``IMAGE`` frames, one every ``camera_interval_s``, in turn, for the whole session.
    """
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(with_token(url, token), max_msg_size=0) as ws,
    ):
        client = VoiceClient(ws, ignore_interrupted=ignore_interrupted)
        await client.handshake(persona, config)
        await ws.send_bytes(encode(FrameType.AUDIO_START))
        filming = asyncio.create_task(_film(ws, camera, camera_interval_s)) if camera else None
        results = []
        try:
            for i, audio in enumerate(utterances):
                last = i == len(utterances) - 1
                results.append(
                    await client.turn(audio, timeout, None if last else barge_in_after_s)
                )
        finally:
            await cancel_and_wait(filming)
        await client.close()
        return results, client


async def _film(ws: aiohttp.ClientWebSocketResponse, frames: Sequence[bytes], every: float) -> None:
    """A camera: the frames in turn, one per ``every`` seconds, until cancelled."""
    for frame in itertools.cycle(frames):
        await ws.send_bytes(encode(FrameType.IMAGE, frame))
        await asyncio.sleep(every)


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
    if result.interrupted or result.spoke_over:
        sources = [i.get("playback") for i in result.interruptions]
        print(
            f"barge-in : interrupted={result.interrupted} (playback {sources or '-'}), "
            f"last reply audio {result.last_audio_after_barge_in_ms} ms after the next speech began"
        )


def cli_converse(args: argparse.Namespace) -> int:
    utterances = [read_wav(path, RATE)[0] for path in args.wav]
    try:
        barge_in_ms = args.barge_in_ms
        results, client = asyncio.run(
            converse(
                args.url,
                utterances,
                token=args.token,
                persona=args.persona,
                barge_in_after_s=None if barge_in_ms is None else barge_in_ms / 1000,
                ignore_interrupted=args.ignore_interrupted,
            )
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
