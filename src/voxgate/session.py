"""One voice session: wires audio in -> VAD/endpointing -> STT -> LLM -> TTS -> frames out.

Read this file first. The stages live elsewhere (turns/, stt/, llm/, tts/,
reply.py); this class only decides *when* each one runs:

- at a VAD pause the final decode starts at once (it overlaps the
  endpointing wait) and, when it lands, a speculative reply starts on it;
- the endpointer commits the turn after the minimum delay if the transcript
  looks finished, after the maximum delay in any case; the speculative reply
  is then promoted (hit) or replaced (miss);
- speech resuming before the commit discards that work;
- speech during a reply, longer than the minimum interruption, cancels it and
  truncates the history to the words that were heard.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import statistics
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import numpy as np

from voxgate.audio.pcm import SampleBuffer, pcm16_to_float
from voxgate.config import SessionConfig, config_for
from voxgate.engines import Engines
from voxgate.llm.base import ChatMessage, LLMRequest, LLMUsage
from voxgate.metrics.turn import SessionClock, TurnMetrics
from voxgate.personas.memory import DEFAULT_USER
from voxgate.personas.persona import Persona
from voxgate.personas.room import choose_speaker, exchange_messages, overheard
from voxgate.prompt.assembler import PromptAssembler
from voxgate.protocol.frames import (
    FLAG_FINAL,
    PROTOCOL_VERSION,
    FrameType,
    ProtocolError,
    decode,
    encode,
    encode_event,
    encode_text,
)
from voxgate.reply import ReplyRun
from voxgate.scheduler import Priority, PriorityRef
from voxgate.stt.base import STTError
from voxgate.tts.router import voice_problem
from voxgate.turns.endpointing import (
    EndpointConfig,
    Endpointer,
    EventKind,
    Phase,
    TurnEvent,
    looks_complete,
)
from voxgate.turns.vad import VAD_RATE, SileroStreamVad

log = logging.getLogger("voxgate.session")

INPUT_RATE = VAD_RATE
# Audio kept before the VAD's speech start: Silero needs a few windows to be
# sure, and Whisper wants the onset of the first word.
PREROLL_MS = 300
LLM_STAMPS = ("llm_start", "llm_first_token", "first_tts_audio")
MAX_ROOM = 6  # personas in one conversation
MAX_USER_ID = 64
MAX_USER_TEXT = 2000  # a typed turn; longer input is a paste, not a conversational turn

Send = Callable[[bytes], Awaitable[None]]


class CloseSession(Exception):
    """Raised by the handshake when the socket must be closed after the error frame."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code


def _exactly(value: Any, expected: int) -> bool:
    """JSON number equality without Python's coercions (True == 1, 16000.0 == 16000)."""
    return type(value) is int and value == expected


def normalize(text: str) -> str:
    """Case and punctuation do not change what the user asked."""
    return " ".join(re.sub(r"[^\w\s']", " ", text.lower()).split())


@dataclass(slots=True)
class FinalDecode:
    speech_end: int  # sample index the decoded audio ends at (the VAD speech end)
    task: asyncio.Task[str]


class Session:
    def __init__(self, engines: Engines, send: Send, base_config: SessionConfig) -> None:
        self.engines = engines
        self._send_raw = send
        self._send_lock = asyncio.Lock()
        self.base_config = base_config
        self.id = uuid.uuid4().hex[:12]
        self.persona: Persona = engines.persona(None)
        self.config = base_config
        self.ready = False
        self.clock = SessionClock(INPUT_RATE)
        self.room: list[Persona] = [self.persona]  # several personas: a room
        self.histories: dict[str, list[ChatMessage]] = {}  # what each persona has heard
        self.user = DEFAULT_USER
        self._summaries: dict[str, str] = {}  # long-term memory, read once per session
        self._last_speaker: str | None = None
        self._turn_id: int | None = None  # the memory store's row of the last turn
        self.assembler = PromptAssembler(self.id, cache=engines.prompt_cache)
        self.turns = 0
        self._vad: SileroStreamVad | None = None
        self._endpointer = Endpointer(EndpointConfig())
        self._buffer = SampleBuffer()
        self._utt_start = 0
        self._pending: TurnMetrics | None = None  # metrics of the utterance in progress
        self._final: FinalDecode | None = None
        self._spec: ReplyRun | None = None
        self._reply: ReplyRun | None = None
        self._interim: asyncio.Task[None] | None = None
        self._last_interim = 0
        self._interrupting = False
        # Commit -> first answer audio (ms) of the last few turns: predicts a slow answer.
        self._recent_waits: deque[float] = deque(maxlen=5)
        self._tasks: set[asyncio.Task[Any]] = set()
        self.closed = False

    @property
    def history(self) -> list[ChatMessage]:
        """The conversation as the session's main persona heard it."""
        return self.histories.setdefault(self.persona.id, [])

    # -- transport side --------------------------------------------------

    async def send(self, data: bytes) -> None:
        if self.closed:
            return
        async with self._send_lock:
            await self._send_raw(data)

    async def send_error(self, code: str, message: str) -> None:
        await self.send(encode_text(FrameType.ERROR, f"{code}: {message}"))

    async def send_event(self, event: dict[str, Any]) -> None:
        await self.send(encode_event(event))

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=f"{self.id}-{name}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "session %s task %s failed", self.id, task.get_name(), exc_info=task.exception()
            )

    async def on_message(self, data: bytes) -> None:
        """One binary WebSocket message. Bad frames get an ERROR frame; the session goes on."""
        try:
            frame = decode(data)
        except ProtocolError as exc:
            await self.send_error(exc.code, exc.message)
            return
        if not self.ready and not (
            frame.type is FrameType.EVENT and frame.json().get("type") == "hello"
        ):
            await self.send_error(
                "handshake_required", "send an EVENT hello first (docs/protocol.md)"
            )
            return
        if frame.type is FrameType.EVENT:
            await self._on_event(frame.json())
        elif frame.type is FrameType.AUDIO_CHUNK:
            self._on_audio(pcm16_to_float(frame.payload))
        elif frame.type is FrameType.AUDIO_START:
            pass  # the stream is continuous; start carries no state we need
        elif frame.type is FrameType.AUDIO_END:
            self._handle(self._endpointer.force_end(self.clock.samples))
        else:
            await self.send_error("unexpected_type", f"{frame.type.name} is not sent by clients")

    async def _on_event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "hello":
            await self._hello(event)
        elif kind == "config":
            update = {k: v for k, v in event.items() if k != "type"}
            try:
                self.config = config_for(self.persona, self.config, update)
            except ValueError as exc:
                await self.send_error("bad_event", f"config rejected: {exc}")
                return
            self._apply_endpointing()
            await self.send_event({"type": "config", **self.config.model_dump()})
        elif kind == "user_text":
            text = event.get("text")
            if not isinstance(text, str) or not text.strip() or len(text) > MAX_USER_TEXT:
                await self.send_error(
                    "bad_event",
                    f"user_text needs a non-empty 'text' of at most {MAX_USER_TEXT} characters",
                )
                return
            self._spawn(self._commit_text(" ".join(text.split())), "user-text")
        else:
            await self.send_error("bad_event", f"unknown event type {kind!r}")

    async def _hello(self, event: dict[str, Any]) -> None:
        if self.ready:
            await self.send_error("bad_event", "hello was already received")
            return
        if not _exactly(event.get("protocol"), PROTOCOL_VERSION):
            await self.send_error(
                "bad_protocol",
                f"this server speaks protocol {PROTOCOL_VERSION}, "
                f"the client asked for {event.get('protocol')!r}",
            )
            raise CloseSession(1002, "protocol version")
        if not _exactly(event.get("sample_rate"), INPUT_RATE):
            await self.send_error(
                "bad_sample_rate",
                f"input must be PCM16 mono at {INPUT_RATE} Hz, "
                f"got {event.get('sample_rate')!r}: resample on the client",
            )
            raise CloseSession(1002, "sample rate")
        try:
            persona = event.get("persona")
            if persona is not None and not isinstance(persona, str):  # a list would not hash
                raise ValueError(f"persona must be a string, got {persona!r}")
            self.room = self._room_from(event.get("room"))
            self.persona = self.engines.persona(persona) if persona else self.room[0]
            if self.persona not in self.room:
                self.room.insert(0, self.persona)
            for member in self.room:
                if problem := voice_problem(self.engines.tts, member.voice):
                    raise ValueError(f"persona {member.id!r} cannot speak: {problem}")
            user = event.get("user", DEFAULT_USER)
            if not isinstance(user, str) or not 0 < len(user) <= MAX_USER_ID:
                raise ValueError(f"user must be a string of 1 to {MAX_USER_ID} characters")
            self.user = user
            if self.engines.memory is not None:
                for member in self.room:
                    self._summaries[member.id] = self.engines.memory.summary(member.id, user)
            config_update = event.get("config") or {}
            if not isinstance(config_update, dict):
                raise ValueError("config must be a JSON object")
            self.config = config_for(self.persona, self.base_config, config_update)
        except (KeyError, ValueError) as exc:
            await self.send_error("bad_event", str(exc))
            raise CloseSession(1008, "bad hello") from exc
        # Loading the VAD takes ~100 ms: off the event loop, so other sessions keep flowing.
        self._vad = await asyncio.to_thread(SileroStreamVad)
        self._apply_endpointing()
        self.ready = True
        await self.send_event(
            {
                "type": "welcome",
                "protocol": PROTOCOL_VERSION,
                "session_id": self.id,
                "input_sample_rate": INPUT_RATE,
                "output_sample_rate": self.engines.tts.sample_rate,
                "persona": self.persona.id,
                "persona_name": self.persona.name,
                "room": [{"id": p.id, "name": p.name} for p in self.room],
                "max_frame_bytes": 1 << 20,
                "config": self.config.model_dump(),
            }
        )
        await self.send(encode(FrameType.READY))

    def _room_from(self, value: Any) -> list[Persona]:
        if value is None:
            return [self.engines.persona(None)]
        if (
            not isinstance(value, list)
            or not 1 <= len(value) <= MAX_ROOM
            or not all(isinstance(v, str) for v in value)
            or len(set(value)) != len(value)
        ):
            raise ValueError(f"room must be a list of 1 to {MAX_ROOM} distinct persona ids")
        return [self.engines.persona(v) for v in value]

    def _apply_endpointing(self) -> None:
        self._endpointer.config = EndpointConfig(
            self.config.endpoint_min_ms, self.config.endpoint_max_ms, INPUT_RATE
        )

    # -- audio in ---------------------------------------------------------

    def _on_audio(self, samples: np.ndarray[Any, np.dtype[np.float32]]) -> None:
        assert self._vad is not None
        self.clock.advance(len(samples))
        self._buffer.append(samples)
        for window_end, prob in self._vad.feed(samples):
            self._handle(self._endpointer.update(window_end, self._vad.window, prob))
            self._check_barge_in(window_end)
            self._maybe_interim(window_end)
            self._check_max_utterance(window_end)
        keep_from = (
            self._utt_start if self._endpointer.phase is not Phase.IDLE else self.clock.samples
        )
        self._buffer.trim_before(keep_from - self._ms_to_samples(PREROLL_MS))

    def _ms_to_samples(self, ms: float) -> int:
        return int(ms * INPUT_RATE / 1000)

    def _handle(self, events: list[TurnEvent]) -> None:
        for event in events:
            if event.kind is EventKind.SPEECH_START:
                self._on_speech_start(event)
            elif event.kind is EventKind.PAUSE:
                self._spawn(
                    self.send_event(
                        {
                            "type": "vad",
                            "speaking": False,
                            "audio_ms": round(self.clock.sample_ms(event.sample)),
                        }
                    ),
                    "vad",
                )
                if self.config.overlap and self._pending is not None:
                    self._start_final(event.speech_end, event.sample, self._pending)
            elif event.kind is EventKind.RESUME:
                self._discard_pending("resumed")
            elif event.kind is EventKind.END_OF_TURN:
                self._end_of_turn(event)

    def _on_speech_start(self, event: TurnEvent) -> None:
        self._utt_start = event.speech_start
        self._last_interim = event.sample
        metrics = TurnMetrics(self.turns + 1, self.persona.id, self.config.mode)
        metrics.stamp("speech_start", self.clock.sample_ms(event.speech_start))
        self._pending = metrics
        self._spawn(
            self.send_event(
                {
                    "type": "vad",
                    "speaking": True,
                    "audio_ms": round(self.clock.sample_ms(event.sample)),
                }
            ),
            "vad",
        )

    def _check_max_utterance(self, now: int) -> None:
        if (
            self._endpointer.phase is Phase.SPEAKING
            and self.clock.sample_ms(now - self._utt_start) > self.config.max_utterance_ms
        ):
            self._handle(self._endpointer.force_end(now))

    # -- transcription ----------------------------------------------------

    def _utterance_audio(self, end: int) -> np.ndarray[Any, np.dtype[np.float32]]:
        return self._buffer.slice(self._utt_start - self._ms_to_samples(PREROLL_MS), end)

    def _start_final(self, speech_end: int, now: int, metrics: TurnMetrics) -> FinalDecode:
        """Decode the utterance up to the VAD's speech end; may become the final transcript."""
        self._cancel_interim()
        audio = self._utterance_audio(now)
        decode = self._decode_final(audio, speech_end, metrics)
        final = FinalDecode(speech_end, self._spawn(decode, "stt"))
        self._final = final
        return final

    async def _decode_final(
        self, audio: np.ndarray[Any, np.dtype[np.float32]], speech_end: int, metrics: TurnMetrics
    ) -> str:
        start = self.clock.now_ms()
        text = await self.engines.stt.transcribe(audio, Priority.STT_FINAL)
        metrics.stt_calls += 1
        span = metrics.span("stt_final", start, audio_ms=round(len(audio) / 16))
        span.end_ms = round(self.clock.now_ms(), 1)
        current = self._final is not None and self._final.speech_end == speech_end
        if not current and self._pending is metrics:
            span.attrs["discarded"] = True  # the user went on speaking after this pause
        if current and self._endpointer.phase is Phase.PAUSED:
            complete = looks_complete(text)
            self._endpointer.set_transcript_complete(complete)
            if text:
                await self.send(encode_text(FrameType.TRANSCRIPT, text))
                # An unfinished-looking thought will most likely go on: speculating on
                # it would mostly burn CPU the resumed utterance's decode needs.
                if self.config.speculate and complete:
                    self._start_speculation(text, metrics)
            self._handle(self._endpointer.poll(self.clock.samples))
        return text

    def _maybe_interim(self, now: int) -> None:
        """Interim transcripts while the user speaks, only when the CPU has nothing better to do."""
        if (
            not self.config.interim_stt
            or self._endpointer.phase is not Phase.SPEAKING
            or self._interim is not None
            or self.engines.gate.busy()
        ):
            return
        if self.clock.sample_ms(now - self._last_interim) < self.config.interim_interval_ms:
            return
        self._last_interim = now
        self._interim = self._spawn(self._decode_interim(self._utterance_audio(now)), "interim")

    async def _decode_interim(self, audio: np.ndarray[Any, np.dtype[np.float32]]) -> None:
        try:
            text = await self.engines.stt.transcribe(audio, Priority.SPECULATIVE)
            if self._pending is not None:
                self._pending.stt_calls += 1
            if text and self._endpointer.phase is Phase.SPEAKING:
                await self.send(encode_text(FrameType.TRANSCRIPT, text))
        except STTError as exc:
            log.warning("interim decode failed: %s", exc)
        finally:
            self._interim = None

    def _cancel_interim(self) -> None:
        if self._interim is not None:
            self._interim.cancel()
            self._interim = None

    # -- replies ----------------------------------------------------------

    def _speaker_for(self, text: str) -> Persona:
        """Who answers: in a room, the one addressed by name, else the room's policy."""
        if len(self.room) == 1:
            return self.persona
        floor = choose_speaker(text, self.room, self._last_speaker)
        return self.engines.persona(floor.persona_id)

    def _new_run(self, text: str, metrics: TurnMetrics, priority: Priority) -> ReplyRun:
        speaker = self._speaker_for(text)
        names = [p.name for p in self.room] if len(self.room) > 1 else []
        prompt = self.assembler.assemble(
            speaker,
            self.histories.setdefault(speaker.id, []),
            text,
            memory_summary=self._summaries.get(speaker.id, ""),
            speaker_names=names,
        )
        request = LLMRequest(
            speaker.id,
            prompt.messages,
            max_tokens=speaker.max_reply_tokens,
            priority=PriorityRef(priority),
            conversation_id=self.id,
        )
        metrics.llm = LLMUsage()
        metrics.persona = speaker.id
        return ReplyRun(
            llm=self.engines.llm,
            tts=self.engines.tts,
            request=request,
            voice=speaker.voice,
            metrics=metrics,
            clock=self.clock,
            send=self.send,
            clauses=self.config.clause_chunking,
            answering=text,
        )

    def _start_speculation(self, text: str, metrics: TurnMetrics) -> None:
        if self._spec is not None and normalize(self._spec.answering) == normalize(text):
            return
        self._drop_speculation(metrics)
        self._spec = self._new_run(text, metrics, Priority.SPECULATIVE)

    def _drop_speculation(self, metrics: TurnMetrics | None) -> None:
        spec, self._spec = self._spec, None
        if spec is None:
            return
        if metrics is not None:
            metrics.wasted_llm_calls += 1
            for name in LLM_STAMPS:
                metrics.stamps.pop(name, None)
            for span in metrics.spans:
                if span.stage in ("llm", "tts"):
                    span.attrs["discarded"] = True
        self._spawn(spec.cancel(), "cancel-spec")

    def _discard_pending(self, why: str) -> None:
        """The user went on speaking: the decode and speculation of that pause are void."""
        self._final = None
        self._drop_speculation(self._pending)
        log.debug("session %s: pending work discarded (%s)", self.id, why)

    def _end_of_turn(self, event: TurnEvent) -> None:
        """Synchronous part of the commit: claim the utterance before its audio is trimmed."""
        metrics, self._pending = self._pending, None
        if metrics is None:
            return
        final = self._final if self._final and self._final.speech_end == event.speech_end else None
        if final is None:  # sequential mode, or a forced end while speaking
            final = self._start_final(event.speech_end, event.sample, metrics)
        self._final = None
        self._spawn(self._commit(event, final, metrics), "commit")

    async def _commit(self, event: TurnEvent, final: FinalDecode, metrics: TurnMetrics) -> None:
        metrics.stamp("speech_end", self.clock.sample_ms(event.speech_end))
        metrics.stamp("committed", self.clock.sample_ms(event.sample))
        try:
            text = await final.task
        except Exception as exc:  # STTError, or any engine that breaks that contract
            self._drop_speculation(metrics)
            await self.send_error("stt_failed", str(exc) or "decode cancelled")
            return
        metrics.stamp("final_transcript", self.clock.now_ms())
        speech_ms = self.clock.sample_ms(event.speech_end - self._utt_start)
        replying = self._reply is not None and time.monotonic() < self._reply.playing_until()
        if not text or (replying and speech_ms < self.config.interrupt_min_ms):
            self._drop_speculation(None)  # noise, or a cough over the reply: not a turn
            return
        await self.send(encode_text(FrameType.TRANSCRIPT, text, FLAG_FINAL))
        await self._answer(text, metrics)

    async def _commit_text(self, text: str) -> None:
        """A typed user turn (EVENT user_text): the same turn machinery, without audio."""
        metrics = TurnMetrics(self.turns + 1, self.persona.id, self.config.mode)
        now = self.clock.now_ms()
        for name in ("speech_end", "committed", "final_transcript"):
            metrics.stamp(name, now)
        await self._answer(text, metrics)

    async def _answer(self, text: str, metrics: TurnMetrics) -> None:
        """Promote the speculative reply if it answers this text, else start one; speak it."""
        await self._interrupt()  # a new committed turn ends whatever was still playing
        self.turns += 1
        metrics.turn = self.turns
        metrics.transcript = text
        await self.send_event({"type": "turn_start", "turn": metrics.turn, "text": text})
        run = self._spec
        self._spec = None
        same_speaker = run is not None and run.request.persona_id == self._speaker_for(text).id
        if run is not None and same_speaker and normalize(run.answering) == normalize(text):
            metrics.speculative = "hit"
        else:
            if run is not None:
                self._spec = run
                self._drop_speculation(metrics)
                metrics.speculative = "miss"
            run = self._new_run(text, metrics, Priority.LLM_LIVE)
        run.commit()
        self._reply = run
        filler = self._spawn(self._filler(run), "filler") if self._wants_filler() else None
        await run.wait()
        if filler is not None:
            filler.cancel()
        await self._finish_turn(run, metrics)

    def _wants_filler(self) -> bool:
        return self.config.fillers and any(p.fillers for p in self.room)

    def _predicted_wait_ms(self, run: ReplyRun) -> float:
        """How long until answer audio, judged from this session's recent turns."""
        if run.has_audio_ready():
            return 0.0
        return statistics.median(self._recent_waits) if self._recent_waits else 0.0

    async def _filler(self, run: ReplyRun) -> None:
        """An acknowledgment when the answer will be slow: at once if recent turns say so,
        else only once ``filler_after_ms`` has passed without answer audio."""
        if self._predicted_wait_ms(run) < self.config.filler_after_ms:
            await asyncio.sleep(self.config.filler_after_ms / 1000)
        speaker = self.engines.persona(run.request.persona_id)
        if not speaker.fillers:
            return
        text = speaker.fillers[self.turns % len(speaker.fillers)]
        audio = self.engines.fillers.get((speaker.voice, text))
        if audio is not None:
            await run.send_filler(text, audio)

    async def _finish_turn(self, run: ReplyRun, metrics: TurnMetrics) -> None:
        wait = metrics.durations().get("answer_after_commit")
        if wait is not None:
            self._recent_waits.append(wait)
        reply = run.heard if run.heard is not None else run.generated.strip()
        metrics.reply = reply
        metrics.error = run.error
        speaker = run.request.persona_id
        for persona_id, messages in exchange_messages(
            self.room, speaker, metrics.transcript, reply
        ).items():
            self.histories.setdefault(persona_id, []).extend(messages)
        self._last_speaker = speaker
        if self.engines.memory is not None:
            self._turn_id = self.engines.memory.record_turn(
                self.id, speaker, metrics.transcript, reply, user=self.user
            )
        run.logged = True
        event = metrics.event()
        self.engines.trace.write(metrics.record(self.id, event))
        self._observe(metrics)
        await self.send_event(event)
        await self.send(encode(FrameType.DONE))

    def _observe(self, metrics: TurnMetrics) -> None:
        registry = self.engines.registry
        registry.inc(
            "voxgate_turns_total",
            help_text="Turns answered",
            mode=metrics.mode,
            speculative=metrics.speculative,
        )
        registry.inc(
            "voxgate_wasted_llm_calls_total",
            metrics.wasted_llm_calls,
            help_text="Speculative LLM runs thrown away",
        )
        for stage, value in metrics.durations().items():
            if value is not None:
                registry.observe(f"voxgate_{stage}_ms", value, help_text=f"{stage} per turn (ms)")
        if metrics.error:
            registry.inc("voxgate_turn_errors_total", help_text="Turns that ended with an error")

    # -- interruption -----------------------------------------------------

    def _check_barge_in(self, now: int) -> None:
        reply = self._reply
        if reply is None or self._interrupting or self._endpointer.phase is not Phase.SPEAKING:
            return
        active = not reply.finished.is_set() or time.monotonic() < reply.playing_until()
        if not active:
            self._reply = None
            return
        if (
            self.clock.sample_ms(now - self._endpointer.speech_start)
            >= self.config.interrupt_min_ms
        ):
            self._interrupting = True
            self._spawn(self._interrupt(), "barge-in")

    async def _interrupt(self) -> None:
        """Stop the reply now; keep in the history only what the user heard."""
        run, self._reply = self._reply, None
        try:
            if run is None:
                return
            playing = not run.finished.is_set() or time.monotonic() < run.playing_until()
            if not playing:
                return
            heard, played_ms = run.heard_text(), run.played_ms()
            run.heard = heard
            run.metrics.interrupted = True
            await run.cancel()
            if run.logged:
                # The turn was already finished and logged: correct what it said.
                self._correct_last_reply(run.request.persona_id, heard)
            await self.send_event(
                {
                    "type": "interrupted",
                    "turn": run.metrics.turn,
                    "played_ms": round(played_ms),
                    "heard": heard,
                }
            )
        finally:
            self._interrupting = False

    def _correct_last_reply(self, speaker_id: str, heard: str) -> None:
        speaker = self.engines.persona(speaker_id)
        for persona_id, history in self.histories.items():
            if not history:
                continue
            if persona_id == speaker_id and history[-1].role == "assistant":
                replacement = ChatMessage("assistant", heard)
            elif history[-1].content.startswith(f"{speaker.name}: "):
                replacement = overheard(speaker.name, heard)
            else:
                continue
            if heard.strip():
                history[-1] = replacement
            else:  # nothing was heard: as if it had not been said (see exchange_messages)
                history.pop()
        if self.engines.memory is not None and self._turn_id is not None:
            self.engines.memory.correct_reply(self._turn_id, heard)

    # -- teardown ---------------------------------------------------------

    async def close(self) -> None:
        """Cancel and await every task of the session: nothing outlives the connection."""
        self.closed = True
        runs = [r for r in (self._spec, self._reply) if r is not None]
        self._spec = self._reply = None
        for run in runs:
            await run.cancel()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        forget = getattr(self.engines.llm, "forget_conversation", None)
        if forget is not None:  # the embedded engine frees this session's KV slots
            with contextlib.suppress(Exception):
                await forget(self.id)
