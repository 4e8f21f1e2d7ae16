"""One reply: LLM tokens -> clause chunks -> TTS -> frames, held until the turn is committed.

A run can start *speculatively* (before the endpointer has decided the user
is done): it generates and synthesizes into a buffer at background priority
and sends nothing. ``commit()`` promotes it in place and releases what it has
buffered; ``cancel()`` drops it and awaits every task it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from voxgate.audio.pcm import Int16Array, int16_to_bytes
from voxgate.llm.base import LLMEngine, LLMRequest
from voxgate.metrics.turn import SessionClock, TurnMetrics
from voxgate.personas.persona import VoiceSpec
from voxgate.protocol.frames import FLAG_FILLER, FrameType, encode, encode_text
from voxgate.scheduler import Priority, PriorityRef
from voxgate.tts.base import TTSEngine
from voxgate.tts.chunker import TextChunker

Send = Callable[[bytes], Awaitable[None]]
WAKE = ""  # queued by commit(): "send what is ready", not a clause to speak
# Audio goes out in pieces of at most this many ms, so the client can start
# playing and a barge-in can stop it without a long frame already queued.
AUDIO_FRAME_MS = 200


@dataclass(slots=True)
class SpokenChunk:
    text: str
    samples: int


class ReplyRun:
    def __init__(
        self,
        *,
        llm: LLMEngine,
        tts: TTSEngine,
        request: LLMRequest,
        voice: VoiceSpec,
        metrics: TurnMetrics,
        clock: SessionClock,
        send: Send,
        clauses: bool,
        answering: str,
    ) -> None:
        self.llm, self.tts, self.request, self.voice = llm, tts, request, voice
        self.metrics, self.clock, self._send = metrics, clock, send
        self.answering = answering  # the transcript this run answers
        self._chunker = TextChunker(clauses=clauses)
        self._committed = asyncio.Event()
        self._chunks: asyncio.Queue[str | None] = asyncio.Queue()
        self._ready: list[tuple[str, Int16Array]] = []  # synthesized, not yet sent
        self.generated = ""
        self.spoken: list[SpokenChunk] = []
        self.error: str | None = None
        self.first_sent_wall: float | None = None
        self.samples_sent = 0
        self.finished = asyncio.Event()  # all answer audio sent (or failed)
        self.logged = False  # the session has written this turn to the history
        self.heard: str | None = None  # set when interrupted: the words that were played
        self._audio_lock = asyncio.Lock()  # a filler and the answer never interleave
        self._text_backlog: list[str] = []  # deltas generated before the commit
        self._text_live = False
        self._tts_priority = PriorityRef(Priority.SPECULATIVE)
        # Two tasks, not three: synthesis and sending share one, so the first audio
        # is sent the moment it is synthesized, without another task hand-off.
        self._tasks = [
            asyncio.create_task(self._generate(), name="reply-llm"),
            asyncio.create_task(self._speak(), name="reply-tts"),
        ]

    @property
    def committed(self) -> bool:
        return self._committed.is_set()

    def commit(self) -> None:
        self.request.priority.value = Priority.LLM_LIVE
        # Promote a synthesis already waiting for the CPU, not only the next one.
        self._tts_priority.value = Priority.TTS_LIVE
        self._committed.set()
        # Wake the speaking task if it waits for the next clause with audio ready.
        self._chunks.put_nowait(WAKE)

    async def _generate(self) -> None:
        self.metrics.stamp("llm_start", self.clock.now_ms())
        span = self.metrics.span("llm", self.clock.now_ms(), speculative=not self.committed)
        try:
            stream = self.llm.stream(self.request, self.metrics.llm)
            # aclosing: a cancelled reply closes the stream at once, which stops the engine.
            async with contextlib.aclosing(stream):  # type: ignore[type-var]
                unsent = ""  # text goes out a clause at a time: one frame, not one per token
                async for delta in stream:
                    if not self.generated:
                        self.metrics.stamp("llm_first_token", self.clock.now_ms())
                    self.generated += delta
                    unsent += delta
                    chunks = self._chunker.feed(delta)
                    if chunks:
                        await self._emit_text(unsent)
                        unsent = ""
                    for chunk in chunks:
                        self._chunks.put_nowait(chunk)
                if unsent:
                    await self._emit_text(unsent)
            rest = self._chunker.flush()
            if rest:
                self._chunks.put_nowait(rest)
        except Exception as exc:  # a dead or failing backend ends this reply, not the session
            self.error = f"llm_failed: {exc}"
        finally:
            span.end_ms = round(self.clock.now_ms(), 1)
            usage = self.metrics.llm
            decode_s = max(usage.decode_ms, 1.0) / 1000.0
            span.attrs.update(
                tokens=usage.generated_tokens,
                tok_per_s=round(usage.generated_tokens / decode_s, 1),
                prompt_tokens=usage.prompt_tokens,
                evaluated_tokens=usage.evaluated_tokens,
            )
            self._chunks.put_nowait(None)

    async def _emit_text(self, delta: str) -> None:
        if self._text_live:
            await self._send(encode_text(FrameType.LLM_CHUNK, delta))
        else:
            self._text_backlog.append(delta)

    async def _speak(self) -> None:
        """Synthesize each clause; once committed, send what is ready at once."""
        try:
            while (text := await self._chunks.get()) is not None:
                if text and not await self._synthesize(text):  # WAKE is empty: nothing to say
                    break
                if self.committed:
                    await self._deliver_ready()
            await self._committed.wait()
            await self._deliver_ready()
            if self.error:
                await self._send(encode_text(FrameType.ERROR, self.error))
        finally:
            if self.committed:  # a dropped speculative run ends no reply
                self.metrics.stamp("reply_end", self.clock.now_ms())
            self.finished.set()

    async def _synthesize(self, text: str) -> bool:
        span = self.metrics.span("tts", self.clock.now_ms(), chars=len(text))
        try:
            audio = await self.tts.synthesize(text, self.voice, self._tts_priority)
        except Exception as exc:
            self.error = f"tts_failed: {exc}"
            return False
        finally:
            span.end_ms = round(self.clock.now_ms(), 1)
        self.metrics.stamp("first_tts_audio", self.clock.now_ms())
        span.attrs["audio_ms"] = round(len(audio) * 1000 / self.tts.sample_rate)
        self._ready.append((text, audio))
        return True

    async def _deliver_ready(self) -> None:
        while self._text_backlog:
            await self._send(encode_text(FrameType.LLM_CHUNK, self._text_backlog.pop(0)))
        self._text_live = True
        while self._ready:
            text, audio = self._ready.pop(0)
            async with self._audio_lock:
                await self._send_audio(audio)
            self.spoken.append(SpokenChunk(text, len(audio)))

    async def _send_audio(self, audio: Int16Array, flags: int = 0) -> None:
        step = self.tts.sample_rate * AUDIO_FRAME_MS // 1000
        for start in range(0, len(audio), step):
            piece = audio[start : start + step]
            await self._send(encode(FrameType.TTS_AUDIO, int16_to_bytes(piece), flags))
            now = self.clock.now_ms()
            self.metrics.stamp("first_audio_sent", now)
            if not flags & FLAG_FILLER:
                self.metrics.stamp("first_answer_audio_sent", now)
            if self.first_sent_wall is None:
                self.first_sent_wall = time.monotonic()
            self.samples_sent += len(piece)

    async def send_filler(self, text: str, audio: Int16Array) -> None:
        """An acknowledgment, sent only if no answer audio has gone out yet."""
        async with self._audio_lock:
            if self.samples_sent or not self.committed:
                return
            self.metrics.filler = text
            await self._send(encode_text(FrameType.LLM_CHUNK, text, FLAG_FILLER))
            await self._send_audio(audio, FLAG_FILLER)

    def has_audio_ready(self) -> bool:
        """Speculative synthesis already produced answer audio waiting to be sent."""
        return bool(self._ready) or self.samples_sent > 0

    def playing_until(self) -> float:
        """Wall time (monotonic) at which the client will have played all audio sent."""
        if self.first_sent_wall is None:
            return 0.0
        return self.first_sent_wall + self.samples_sent / self.tts.sample_rate

    def heard_text(self) -> str:
        """The words the user heard, estimating playback from when audio was first sent."""
        if self.first_sent_wall is None:
            return ""
        played = (time.monotonic() - self.first_sent_wall) * self.tts.sample_rate
        words: list[str] = []
        for chunk in self.spoken:
            if played >= chunk.samples:
                words += chunk.text.split()
                played -= chunk.samples
                continue
            chunk_words = chunk.text.split()
            words += chunk_words[: int(len(chunk_words) * max(played, 0) / max(chunk.samples, 1))]
            break
        return " ".join(words)

    def played_ms(self) -> float:
        if self.first_sent_wall is None:
            return 0.0
        elapsed = (time.monotonic() - self.first_sent_wall) * 1000.0
        return min(elapsed, self.samples_sent * 1000.0 / self.tts.sample_rate)

    async def cancel(self) -> None:
        """Stop generation and synthesis and wait until they have stopped."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def wait(self) -> None:
        await self.finished.wait()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
