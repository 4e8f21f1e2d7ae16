"""One voice session: the turn machine decides, this class carries out its actions.

Read this file first. Input comes in through four methods (the input port):
``push_audio``, ``end_audio``, ``push_text`` and ``playback``. Every decision
about turns (endpointing, early decodes, speculation, barge-in, the cough
rule) is made synchronously by ``TurnMachine`` (turns/machine.py); this
class executes the actions it returns and feeds the outcomes back as events.

Committed turns, spoken or typed, go through one speech queue served by one
task, so at most one reply speaks at a time and each turn sees the history
of the turns before it. Every turn ends with ``TurnReport`` (metrics) and
``TurnDone``, whether it finished, failed or was interrupted.

Output goes to an ``OutputPort`` as typed messages (ports.py); the wire
protocol is an adapter at the edge (transport/binary_protocol.py).
"""

from __future__ import annotations

import asyncio
import logging
import random
import statistics
import time
import uuid
from collections import deque
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, replace
from typing import Any

from voxgate.aio import cancel_and_wait
from voxgate.audio.pcm import FloatArray, SampleBuffer
from voxgate.audio.wav import wav_bytes
from voxgate.config import SessionConfig, config_for, updated_config
from voxgate.engines import Engines
from voxgate.llm.base import ChatMessage, LLMError, LLMRequest, MediaPart
from voxgate.metrics.turn import SessionClock, TurnMetrics
from voxgate.personas.memory import DEFAULT_USER
from voxgate.personas.memory_writer import TurnRef
from voxgate.personas.persona import Persona, VoiceSpec
from voxgate.personas.room import choose_speaker, exchange_messages, overheard
from voxgate.ports import (
    CameraSeen,
    ConfigChanged,
    Interrupted,
    OutputPort,
    SessionError,
    SpeechActivity,
    ToolActivity,
    Transcript,
    TurnDone,
    TurnReport,
    TurnStarted,
    UtteranceDropped,
)
from voxgate.prompt.assembler import AssembledPrompt, PromptAssembler
from voxgate.quality.checks import ReplyContext, reply_context
from voxgate.quality.guard import ReplyGuard
from voxgate.reply import ReplyRun
from voxgate.scheduler import Priority, PriorityRef
from voxgate.speech import Filler, SpeechHandle
from voxgate.tools.registry import ToolContext
from voxgate.tts.router import voice_problem
from voxgate.turns import machine as tm
from voxgate.turns.endpointing import Phase
from voxgate.turns.recording import event_record
from voxgate.turns.vad import VAD_RATE, SileroStreamVad
from voxgate.vision.camera import CameraView, Sighting

log = logging.getLogger("voxgate.session")
# An unchanged view is said again once its note is this many messages back: compaction
# or an edit may have dropped it, and a note far back is easily overlooked.
CAMERA_NOTE_WINDOW = 8

INPUT_RATE = VAD_RATE
# Audio kept before the VAD's speech start: Silero needs a few windows to be
# sure, and Whisper wants the onset of the first word.
PREROLL_MS = 300
MAX_ROOM = 6  # personas in one conversation
MAX_USER_ID = 64
MAX_USER_TEXT = 2000  # a typed turn; longer input is a paste, not a conversational turn
# The persona's replies a new one must not repeat: all of them, in practice (the
# history is compacted long before this).
GUARD_REPLY_WINDOW = 64
# What a client may add to the context without replies (Realtime items): the prompt only
# ever holds the recent part, but the session keeps all of it.
MAX_CONTEXT_CHARS = 500_000


HEARD_NOT_TRANSCRIBED = "(said aloud; not transcribed)"


@dataclass(slots=True)
class SessionSetup:
    """What a client chose at the start: who talks, in which room, for which user."""

    persona: Persona
    room: list[Persona]
    user: str
    config: SessionConfig


def session_setup(
    engines: Engines,
    base: SessionConfig,
    *,
    persona: Any = None,
    room: Any = None,
    user: Any = DEFAULT_USER,
    config: Any = None,
) -> SessionSetup:
    """Validate a client's choices (any JSON values); ValueError or KeyError says what is wrong."""
    if persona is not None and not isinstance(persona, str):  # a list would not hash
        raise ValueError(f"persona must be a string, got {persona!r}")
    if room is None:
        members = [engines.persona(None)]
    elif (
        not isinstance(room, list)
        or not 1 <= len(room) <= MAX_ROOM
        or not all(isinstance(v, str) for v in room)
        or len(set(room)) != len(room)
    ):
        raise ValueError(f"room must be a list of 1 to {MAX_ROOM} distinct persona ids")
    else:
        members = [engines.persona(v) for v in room]
    main = engines.persona(persona) if persona else members[0]
    if main not in members:
        members.insert(0, main)
    for member in members:
        if problem := voice_problem(engines.tts, member.voice):
            raise ValueError(f"persona {member.id!r} cannot speak: {problem}")
        engines.tools_for(member)  # ValueError: a tool that cannot be loaded, and why
    if not isinstance(user, str) or not 0 < len(user) <= MAX_USER_ID:
        raise ValueError(f"user must be a string of 1 to {MAX_USER_ID} characters")
    if not isinstance(config or {}, dict):
        raise ValueError("config must be a JSON object")
    chosen = config_for(main, base, config or {})
    check_models(engines, chosen)
    return SessionSetup(main, members, user, chosen)


def check_models(engines: Engines, config: SessionConfig) -> None:
    """A setting that needs a model this server has not loaded is refused, with the fix."""
    if config.smart_turn and engines.turn_scorer is None:
        raise ValueError(
            "smart_turn needs the Smart Turn v3.2 model, which this server has not loaded: "
            "run 'voxgate models assemble' and restart the server"
        )


def machine_config(c: SessionConfig, audio_turns: bool = False) -> tm.MachineConfig:
    """The turn machine's settings for a session configuration (``audio_turns``: the
    model hears the user itself, see LLMCapabilities.audio_in)."""
    return tm.MachineConfig(
        rate=INPUT_RATE,
        endpoint_min_ms=c.endpoint_min_ms,
        endpoint_max_ms=c.endpoint_max_ms,
        turn_score=c.smart_turn,
        endpoint_mid_ms=c.endpoint_mid_ms,
        interrupt_min_ms=c.interrupt_min_ms,
        overlap=c.overlap,
        speculate=c.speculate,
        interim_stt=c.interim_stt,
        prime_partials=c.prime_partials,
        interim_interval_ms=c.interim_interval_ms,
        max_utterance_ms=c.max_utterance_ms,
        preroll_ms=PREROLL_MS,
        hold_on_speech=c.hold_on_speech,
        vad_threshold=c.vad_threshold,
        audio_turns=audio_turns,
    )


@dataclass(frozen=True, slots=True)
class ReplyOptions:
    """How to answer: a client may change these per session or per reply (the Realtime
    endpoint's ``session.update`` and ``response.create``)."""

    speak: bool = True  # False: text only, no synthesis
    max_tokens: int | None = None  # a cap below the persona's own
    instructions: str = ""  # for this reply only: after the history, never cached


@dataclass(slots=True)
class QueuedTurn:
    turn: int
    text: str
    metrics: TurnMetrics
    run: ReplyRun | None  # a promoted speculative reply, if any
    options: ReplyOptions = ReplyOptions()
    heard: MediaPart | None = None  # the utterance's audio, for a model that hears


class Session:
    def __init__(
        self, engines: Engines, port: OutputPort, setup: SessionSetup, session_id: str = ""
    ) -> None:
        self.engines, self.port = engines, port
        self.id = session_id or uuid.uuid4().hex[:12]
        self.persona, self.room, self.user = setup.persona, setup.room, setup.user
        self.config = setup.config
        self.clock = SessionClock(INPUT_RATE)
        self.histories: dict[str, list[ChatMessage]] = {}  # what each persona has heard
        self._summaries = {
            p.id: engines.memory.summary(p.id, self.user) if engines.memory else ""
            for p in self.room
        }  # long-term memory, read once per session
        self._last_speaker: str | None = None
        self._turn_ref: TurnRef | None = None  # the memory store's row of the last turn
        self.assembler = PromptAssembler(self.id, cache=engines.prompt_cache)
        self.machine = tm.TurnMachine(machine_config(self.config, self._hears_audio))
        self._vad: SileroStreamVad | None = None
        self._audio = SampleBuffer(self._ring_capacity(self.config))
        self._utterances: dict[int, TurnMetrics] = {}  # metrics of utterances not yet turns
        self._decodes: dict[int, asyncio.Task[None]] = {}
        self._specs: dict[int, ReplyRun] = {}  # speculative replies by reply id
        self._queue: asyncio.Queue[QueuedTurn] = asyncio.Queue()
        self._skip: set[int] = set()  # queued turns interrupted before they were served
        self._speaking: SpeechHandle | None = None
        self._last_handle: SpeechHandle | None = None  # the last finished one, maybe playing
        # Commit -> first answer audio (ms) of the last few turns: predicts a slow answer.
        self._recent_waits: deque[float] = deque(maxlen=5)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._speaker_task: asyncio.Task[None] | None = None
        self._priming: asyncio.Task[None] | None = None  # prefilling the user's words so far
        self._prime_text: str | None = None  # the newest words to prefill next
        self._closing: asyncio.Future[None] | None = None
        self.closed = False
        # What a client may set beyond SessionConfig (the Realtime endpoint): instructions
        # after the persona's own, a voice for the main persona, and how replies answer.
        self.instructions = ""
        self.voice: VoiceSpec | None = None
        self.reply_options = ReplyOptions()
        self._typed_options: ReplyOptions | None = None  # for the typed turn being committed
        self._served_through = 0  # the last turn the speaker has taken from the queue
        self._later: list[str] = []  # user messages added while a reply was being made
        self._history_edits = 0  # edits other than appends: a run built before one is stale
        # The message each persona's history got for the last reply: a cut corrects these.
        self._reply_messages: dict[str, ChatMessage] = {}
        # A new seed per reply: a retry or a repeated question does not get the same sample.
        self._seeds = random.Random(self.config.seed)
        self.camera: CameraView | None = None  # from the first IMAGE frame

    @property
    def history(self) -> list[ChatMessage]:
        """The conversation as the session's main persona heard it."""
        return self.histories.setdefault(self.persona.id, [])

    @property
    def turns(self) -> int:
        return self.machine.turns

    async def start(self) -> None:
        # Loading the VAD takes ~100 ms: off the event loop, so other sessions keep flowing.
        self._vad = await asyncio.to_thread(SileroStreamVad)
        self._speaker_task = asyncio.create_task(self._speaker(), name=f"{self.id}-speaker")

    @staticmethod
    def _ring_capacity(config: SessionConfig) -> int:
        """Input audio kept: the longest utterance, its pre-roll and the pause after it."""
        return (config.max_utterance_ms + PREROLL_MS + 5000) * INPUT_RATE // 1000

    # -- input port ------------------------------------------------------------------

    def update_config(self, update: dict[str, Any]) -> SessionConfig:
        """Apply a client's config update (ValueError: nothing of it is applied)."""
        config = updated_config(self.config, update)
        check_models(self.engines, config)
        if "seed" in update:  # a new seed starts its sequence over, as at the start
            self._seeds = random.Random(config.seed)
        self.config = config
        self.machine.configure(machine_config(self.config, self._hears_audio))
        self._audio.grow(self._ring_capacity(self.config))
        self.port.emit(ConfigChanged(self.config.model_dump()))
        return self.config

    def push_audio(self, samples: FloatArray) -> None:
        assert self._vad is not None, "start() the session first"
        self.clock.advance(len(samples))
        self._audio.append(samples)
        for window_end, prob in self._vad.feed(samples):
            idle = not self.engines.gate.busy()
            self._step(tm.VadWindow(window_end, self._vad.window, prob, idle))
        self._audio.trim_before(self._keep_audio_from())

    def _keep_audio_from(self) -> int:
        """The oldest sample a decode may still ask for."""
        start = self.machine.utterance_start()
        oldest = start if start is not None else self.clock.samples
        return oldest - PREROLL_MS * INPUT_RATE // 1000

    def end_audio(self) -> None:
        """The client closed its audio stream: an utterance in progress ends now."""
        self._step(tm.AudioEnded(self.clock.samples))

    def push_text(self, text: str) -> None:
        """A typed user turn: the same turn machinery, without audio."""
        if not isinstance(text, str) or not text.strip() or len(text) > MAX_USER_TEXT:
            raise ValueError(
                f"user_text needs a non-empty 'text' of at most {MAX_USER_TEXT} characters"
            )
        self.respond(" ".join(text.split()))

    def push_image(self, data: bytes, still: bool = False) -> None:
        """A camera frame (JPEG or PNG): the newest is described in background time and
        the next turns' prompts carry what it shows. ``still``: a picture sent once (a
        Realtime item), not a stream: it stays what the camera shows until the next."""
        if self.camera is None:
            self.camera = CameraView(
                self.engines.gate,
                self._camera_seen,
                self._camera_error,
                read_text=not self.engines.llm_capabilities.vision,  # it reads the frame itself
                idle=self._no_live_turn,
            )
        self.camera.stills = self.camera.stills or still
        self.camera.submit(data)

    async def camera_settled(self, timeout_s: float) -> bool:
        """Wait (at most ``timeout_s``) until the frames sent so far are described: a
        reply asked for right after a picture should know what it shows. False: it was
        not ready in time (the reply goes on with what is known)."""
        if self.camera is None:
            return True
        try:
            await asyncio.wait_for(self.camera.settled(), timeout_s)
        except TimeoutError:
            return False
        return True

    def _no_live_turn(self) -> bool:
        """Nothing the user waits for is under way: background work may take a core."""
        return (
            self.machine.phase is Phase.IDLE
            and not self._decodes
            and not self._specs
            and self._speaking is None
            and self._queue.empty()
        )

    def _camera_seen(self, sighting: Sighting) -> None:
        self.port.emit(CameraSeen(sighting.frame, sighting.description, sighting.ms))

    def _camera_error(self, code: str, message: str) -> None:
        self.port.emit(SessionError(code, message))

    def respond(self, text: str = "", options: ReplyOptions | None = None) -> None:
        """A turn answering ``text``, or with ``text`` empty the conversation as it stands
        (user messages added by ``add_user_message``); ``options`` for this reply only."""
        self._typed_options = options
        try:
            # The audio clock, like every other event: wall time would run ahead of it.
            self._step(tm.TypedTurn(text, self.clock.samples))
        finally:
            self._typed_options = None

    def add_user_message(self, text: str) -> None:
        """User words into every persona's context without a reply (a Realtime client's
        ``conversation.item.create``); the next reply answers them."""
        if not text.strip():
            return
        held = sum(len(m.content) for m in self.history) + sum(map(len, self._later))
        if held + len(text) > MAX_CONTEXT_CHARS:
            raise ValueError(
                f"the conversation holds {held} characters, the most is {MAX_CONTEXT_CHARS}: "
                "delete items or start a new session"
            )
        if self._speaking is not None or self._served_through < self.machine.turns:
            # A reply is being made: its exchange goes into the context first, so these
            # words follow it (as they followed it in time), not the question it answers.
            self._later.append(text)
            return
        self._append_user(text)

    def _append_user(self, text: str) -> None:
        for persona in self.room:
            self.histories.setdefault(persona.id, []).append(ChatMessage("user", text))

    def forget_message(self, role: str, content: str) -> bool:
        """Take the newest message of ``role`` with ``content`` out of every context."""
        if role == "user" and content in self._later:
            self._later.remove(content)
            return True
        found = False
        for history in self.histories.values():
            for i in range(len(history) - 1, -1, -1):
                message = history[i]
                # Another persona heard a reply as a user message "Name: words".
                overheard_reply = (
                    role == "assistant"
                    and message.role == "user"
                    and (message.content.endswith(f": {content}"))
                )
                if (message.role == role and message.content == content) or overheard_reply:
                    del history[i]
                    found = True
                    break
        if found:
            self.assembler.history_edited()
            self._history_edits += 1
        return found

    def cancel_reply(self) -> list[int]:
        """Stop the reply speaking now and every committed turn not yet answered (a
        Realtime ``response.cancel``); the turns cancelled, each still ends with DONE."""
        cancelled = []
        if (handle := self._speaking) is not None:
            if not handle.interrupted:  # already cut (a barge-in): it is ending anyway
                self._interrupt(handle.turn)
            cancelled.append(handle.turn)
        for turn in range(self._served_through + 1, self.machine.turns + 1):
            self._skip.add(turn)
            cancelled.append(turn)
        return cancelled

    def truncate(self, turn: int, played_ms: float) -> str | None:
        """The client played only ``played_ms`` of ``turn``'s reply: keep only those words
        in the context (the same cut as a barge-in). None: that reply is gone."""
        handle = self._handle_of(turn)
        if handle is None:
            return None
        handle.client_played(played_ms)
        if not handle.interrupted:
            self._interrupt(turn)
            return handle.heard
        heard = handle.heard_text(min(played_ms, handle.sent_ms))
        if handle.heard is not None and len(heard.split()) >= len(handle.heard.split()):
            return handle.heard  # a cut only ever shortens what was kept
        handle.heard = heard
        if handle is self._last_handle:
            self._correct_last_reply(handle.run.speaker_id, heard)
        return heard

    def playback(self, turn: int, played_ms: float) -> None:
        """The client's report of how much of ``turn``'s reply it has played."""
        if (handle := self._handle_of(turn)) is not None:
            handle.client_played(played_ms)
            if handle is self._last_handle:
                self._step(tm.PlaybackProgress(turn, self._plays_until(handle)))

    def _plays_until(self, handle: SpeechHandle) -> int:
        return self.clock.samples + round(handle.remaining_ms() * INPUT_RATE / 1000)

    # -- executing the machine's actions -------------------------------------------------

    def _step(self, event: tm.MachineEvent) -> None:
        if self.closed:  # closing: start nothing new (a decode may still land meanwhile)
            return
        if self.engines.record_turn_events:  # a replayable record (turns/recording.py)
            self.engines.trace.write(event_record(self.id, event))
        for action in self.machine.handle(event):
            self._execute(action)

    def _execute(self, action: tm.Action) -> None:
        if isinstance(action, tm.SpeechStarted):
            metrics = TurnMetrics(0, self.persona.id, self.config.mode)
            metrics.stamp("speech_start", self.clock.sample_ms(action.speech_start))
            self._utterances[action.utterance] = metrics
            at_ms = round(self.clock.sample_ms(action.at))
            self.port.emit(SpeechActivity(True, at_ms, action.utterance))
        elif isinstance(action, tm.SpeechPaused):
            at_ms = round(self.clock.sample_ms(action.at))
            self.port.emit(SpeechActivity(False, at_ms, action.utterance))
        elif isinstance(action, tm.StartDecode):
            audio = self._audio.slice(action.start, action.end)
            decode = self._decode(action, audio, self._utterances.get(action.utterance))
            self._decodes[action.decode_id] = self._spawn(decode, "stt")
        elif isinstance(action, tm.ScoreTurn):
            audio = self._audio.slice(action.start, action.end)
            self._spawn(self._score_turn(action.score_id, audio), "turn-score")
        elif isinstance(action, tm.CancelDecode):
            if (stale := self._decodes.pop(action.decode_id, None)) is not None:
                stale.cancel()
        elif isinstance(action, tm.ShowTranscript):
            self.port.emit(Transcript(action.text, action.final, action.utterance))
        elif isinstance(action, tm.PrimePartial):
            self._prime_partial(action.text)
        elif isinstance(action, tm.TranscriptReady):
            if (heard := self._utterances.get(action.utterance)) is not None:
                heard.stamp("final_transcript", self.clock.now_ms(), overwrite=True)
                heard.stt_source = action.source
        elif isinstance(action, tm.StartSpeculation):
            speaker = self._speaker_for(action.text)
            spec = self._new_run(
                action.text, speaker, Priority.SPECULATIVE, heard=self._heard(action.audio)
            )
            spec.metrics.stamp("speculation_start", self.clock.now_ms())
            self._specs[action.reply_id] = spec
        elif isinstance(action, tm.DropSpeculation):
            if (run := self._specs.pop(action.reply_id, None)) is not None:
                self._spawn(run.close(), "drop-speculation")
            if action.utterance is not None and action.utterance in self._utterances:
                charged = self._utterances[action.utterance]
                charged.wasted_llm_calls += 1
                charged.speculative = "miss"
        elif isinstance(action, tm.CommitTurn):
            self._commit(action)
        elif isinstance(action, tm.DiscardUtterance):
            self._utterances.pop(action.utterance, None)
            self.port.emit(UtteranceDropped(action.utterance))
            if action.error is not None:
                self.port.emit(SessionError("stt_failed", action.error))
        elif isinstance(action, tm.Interrupt):
            self._interrupt(action.turn)
        elif isinstance(action, tm.HoldOutput | tm.ResumeOutput) and (
            handle := self._handle_of(action.turn)
        ):
            handle.hold(isinstance(action, tm.HoldOutput))

    async def _decode(
        self, action: tm.StartDecode, audio: FloatArray, metrics: TurnMetrics | None
    ) -> None:
        start = self.clock.now_ms()
        priority = Priority.STT_FINAL if action.final else Priority.SPECULATIVE
        try:
            text = await self.engines.stt.transcribe(audio, priority)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # we cancelled it: the machine already forgot this decode
            # The engine gave up on it (e.g. shut down): the utterance must not wait for ever.
            self._decodes.pop(action.decode_id, None)
            self._step(tm.DecodeFailed(action.decode_id, "decode cancelled by the engine"))
            return
        except Exception as exc:  # STTError, or any engine that breaks that contract
            self._decodes.pop(action.decode_id, None)
            self._step(tm.DecodeFailed(action.decode_id, str(exc) or "decode failed"))
            return
        self._decodes.pop(action.decode_id, None)
        if metrics is not None:
            metrics.stt_calls += 1
            if action.final:
                metrics.stt_final_calls += 1
                span = metrics.span("stt_final", start, audio_ms=round(len(audio) / 16))
                span.end_ms = round(self.clock.now_ms(), 1)
        self._step(tm.DecodeLanded(action.decode_id, text))

    async def _score_turn(self, score_id: int, audio: FloatArray) -> None:
        scorer = self.engines.turn_scorer
        try:
            if scorer is None:
                raise RuntimeError("no end-of-turn model loaded")
            probability = await scorer.score(audio)
        except Exception as exc:  # the turn must still end: judge on the text alone
            log.warning("session %s: end-of-turn score failed: %s", self.id, exc)
            probability = 1.0
        self._step(tm.TurnScored(score_id, probability))

    def _commit(self, action: tm.CommitTurn) -> None:
        metrics = None
        if action.utterance is not None:
            metrics = self._utterances.pop(action.utterance, None)
        if metrics is None:  # a typed turn
            metrics = TurnMetrics(0, self.persona.id, self.config.mode)
            metrics.stamp("final_transcript", self.clock.sample_ms(action.committed_at))
        metrics.turn = action.turn
        metrics.transcript = action.text
        metrics.stamp("speech_end", self.clock.sample_ms(action.speech_end))
        metrics.stamp("committed", self.clock.sample_ms(action.committed_at))
        run = self._specs.pop(action.reply_id, None) if action.reply_id is not None else None
        options = self._typed_options if self._typed_options is not None else self.reply_options
        heard = self._heard(action.audio)
        self._queue.put_nowait(QueuedTurn(action.turn, action.text, metrics, run, options, heard))

    @property
    def _hears_audio(self) -> bool:
        """The audio_in route: the model hears each utterance, no final transcription."""
        return self.engines.llm_capabilities.audio_in

    def _heard(self, span: tuple[int, int] | None) -> MediaPart | None:
        """Input audio ``[start, end)`` as a WAV part for a model that hears it."""
        if span is None:
            return None
        audio = self._audio.slice(*span)
        return MediaPart("audio", wav_bytes(audio, INPUT_RATE), "audio/wav")

    def _handle_of(self, turn: int) -> SpeechHandle | None:
        """The speech of ``turn``: speaking now, or finished and maybe still playing."""
        return next(
            (h for h in (self._speaking, self._last_handle) if h is not None and h.turn == turn),
            None,
        )

    def _interrupt(self, turn: int) -> None:
        """Stop ``turn``'s reply now; keep in the history only what the user heard."""
        handle = self._handle_of(turn)
        if handle is None:  # still queued: it will end at once when its turn comes
            self._skip.add(turn)
            return
        if handle.interrupted:
            return
        played, source, heard = handle.interrupt()
        handle.heard = heard
        handle.metrics.interrupted = True
        handle.metrics.playback = source
        if handle is self._last_handle:
            # The turn was already finished and logged: correct what it said.
            self._correct_last_reply(handle.run.speaker_id, heard)
            self.engines.trace.write(
                {"type": "turn_cut", "session": self.id, "turn": turn, "heard": heard}
            )
        self.port.emit(Interrupted(turn, round(played), heard, source))

    # -- the speech queue ------------------------------------------------------------------

    async def _speaker(self) -> None:
        while True:
            queued = await self._queue.get()
            try:
                await self._serve(queued)
            except Exception:  # a bug in one turn must not stop every later turn
                log.exception("session %s: turn %d failed", self.id, queued.turn)

    async def _serve(self, queued: QueuedTurn) -> None:
        """Speak one committed turn; always ends with its metrics and DONE."""
        self._served_through = queued.turn
        run: ReplyRun | None = None
        try:
            run = self._reply_for(queued)
            handle = SpeechHandle(
                turn=queued.turn,
                run=run,
                metrics=queued.metrics,
                port=self.port,
                clock=self.clock,
                rate=self.engines.tts.sample_rate,
                lead_ms=self.config.output_lead_ms,
                filler=self._filler_for(run),
            )
        except Exception as exc:  # e.g. the prompt does not fit: the turn still ends
            log.exception("session %s: no reply for turn %d", self.id, queued.turn)
            if run is not None:
                await run.close()
            self.port.emit(TurnStarted(queued.turn, queued.text, queued.options.speak))
            self._end_without_reply(queued, f"internal: {exc}")
            return
        handle.hold(self.machine.holding() == queued.turn)  # the user already speaks over it
        self._speaking = handle
        self.port.emit(TurnStarted(queued.turn, queued.text, run.speak))
        turn = queued.turn
        run.open_events(lambda event: self.port.emit(ToolActivity(turn, event)))
        try:
            if queued.turn in self._skip:
                self._skip.discard(queued.turn)
                handle.heard = ""
                handle.interrupted = handle.metrics.interrupted = True
                self.port.emit(Interrupted(queued.turn, 0, "", "estimate"))
            else:
                handle.task = asyncio.create_task(handle.play(), name=f"{self.id}-play")
                await self._wait_play(handle)
        finally:
            try:
                await run.close()
            finally:
                self._finish_turn(handle)
                self._speaking = None

    def _end_without_reply(self, queued: QueuedTurn, error: str) -> None:
        """A turn that could not even start its reply: it still ends with metrics and DONE."""
        queued.metrics.error = error
        self._end_turn(queued.turn, queued.metrics, self.clock.samples)

    def _end_turn(
        self, turn: int, metrics: TurnMetrics, plays_until: int, event: dict[str, Any] | None = None
    ) -> None:
        """What every turn ends with, however it went: its error, metrics and DONE."""
        later, self._later = self._later, []
        for text in later:
            self._append_user(text)
        if metrics.error:
            code, _, message = metrics.error.partition(": ")
            self.port.emit(SessionError(code, message, turn))
        self.port.emit(TurnReport(turn, event if event is not None else metrics.event()))
        self.port.emit(TurnDone(turn))
        self._step(tm.ReplyFinished(turn, plays_until))

    async def _wait_play(self, handle: SpeechHandle) -> None:
        task = handle.task
        assert task is not None
        try:
            await asyncio.wait({task})
        except asyncio.CancelledError:  # the session is closing: stop the play first
            await cancel_and_wait(task)
            raise
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("session %s: playing turn %d failed", self.id, handle.turn, exc_info=exc)
            handle.error = handle.error or f"internal: {exc}"

    def _reply_for(self, queued: QueuedTurn) -> ReplyRun:
        """The promoted speculative reply if it still answers this turn, else a new one."""
        speaker = self._speaker_for(queued.text)
        history = self.histories.get(speaker.id, [])
        run = queued.run
        if run is not None and (
            run.speaker_id != speaker.id
            or run.history_len != len(history)
            or run.options != queued.options
            or run.history_version != self._history_edits
            or run.effects_asked(run.answering) != run.effects_asked(queued.text)
        ):
            # Built on another speaker, a history that has grown since, other options, or
            # words that ask for a tool with effects differently (a note to keep).
            self._spawn(run.close(), "drop-speculation")
            queued.metrics.wasted_llm_calls += 1
            queued.metrics.speculative = "miss"
            run = None
        if run is None:
            run = self._new_run(
                queued.text, speaker, Priority.LLM_LIVE, queued.options, heard=queued.heard
            )
        else:
            queued.metrics.speculative = "hit"
        run.promote(queued.metrics)  # from here on its tools may run
        return run

    def _speaker_for(self, text: str) -> Persona:
        """Who answers: in a room, the one addressed by name, else the room's policy."""
        if len(self.room) == 1:
            return self.persona
        floor = choose_speaker(text, self.room, self._last_speaker)
        return self.engines.persona(floor.persona_id)

    def _prompt(self, text: str, speaker: Persona) -> AssembledPrompt:
        """``speaker``'s prompt for answering ``text`` now."""
        return self.assembler.assemble(
            speaker,
            self.histories.setdefault(speaker.id, []),
            text,
            memory_summary=self._summaries.get(speaker.id, ""),
            speaker_names=[p.name for p in self.room] if len(self.room) > 1 else [],
            session_instructions=self.instructions,
            tools_text=self.engines.tools_text(speaker),
        )

    def _prime_partial(self, text: str) -> None:
        """Prefill what the user has said so far, so that at the pause the reply prefills
        only the last words. One prime at a time; the newest text waits its turn."""
        if getattr(self.engines.llm, "prime", None) is None:
            return  # a remote engine: its server has its own prefix cache
        if self._speaking is not None or not self._queue.empty() or self.machine.reply_playing():
            # The history does not hold the reply in progress yet: a prime now would
            # truncate the KV cache before it, and the next turn would prefill it again.
            return
        self._prime_text = text
        if self._priming is None or self._priming.done():
            self._priming = self._spawn(self._prime_latest(), "prime-partial")

    async def _prime_latest(self) -> None:
        prime = self.engines.llm.prime  # type: ignore[attr-defined]
        while (text := self._prime_text) is not None:
            self._prime_text = None
            speaker = self._speaker_for(text)
            messages = self._with_camera(self._prompt(text, speaker).messages, speaker.id)[0]
            try:
                await prime(
                    speaker.id, messages, conversation_id=self.id, priority=Priority.BACKGROUND
                )
            except LLMError as exc:  # e.g. the prompt does not fit: the reply will say so
                log.debug("session %s: prefill of the partial skipped: %s", self.id, exc)
                return

    def _stop_priming(self) -> None:
        """The reply itself starts: a prime still running would only delay it."""
        self._prime_text = None
        if self._priming is not None:
            self._priming.cancel()
            self._priming = None

    def _new_run(
        self,
        text: str,
        speaker: Persona,
        priority: Priority,
        options: ReplyOptions | None = None,
        heard: MediaPart | None = None,
    ) -> ReplyRun:
        self._stop_priming()
        options = options if options is not None else self.reply_options
        history = self.histories.setdefault(speaker.id, [])
        messages = self._prompt(text, speaker).messages
        if heard is not None:  # the user's message is the audio, with the words if any
            heard_message = ChatMessage("user", text, (heard,))
            messages = [*messages[:-1], heard_message] if text else [*messages, heard_message]
        if options.instructions.strip():  # last: the cached prefix before it stays valid
            messages = [*messages, ChatMessage("system", options.instructions.strip())]
        messages, camera_route, camera_note = self._with_camera(messages, speaker.id)
        max_tokens = speaker.max_reply_tokens
        if options.max_tokens is not None:
            max_tokens = min(max_tokens, options.max_tokens)
        request = LLMRequest(
            speaker.id,
            messages,
            tools=self.engines.tool_definitions(speaker),
            max_tokens=max_tokens,
            seed=self._seeds.getrandbits(31),
            priority=PriorityRef(priority),
            conversation_id=self.id,
        )
        voice = self.voice if self.voice and speaker is self.persona else speaker.voice
        capabilities = self.engines.llm_capabilities
        guard = (
            ReplyGuard(self._reply_context(speaker, history, text))
            if self.config.reply_guard
            else None
        )
        run = ReplyRun(
            llm=self.engines.llm,
            tts=self.engines.tts,
            request=request,
            voice=voice,
            clock=self.clock,
            clauses=self.config.clause_chunking,
            answering=text,
            history_len=len(history),
            mode=self.config.mode,
            guard=guard,
            first_chunk_words=self.config.first_chunk_words,
            speak=options.speak,
            tools=self.engines.tools_for(speaker),
            holding_line=speaker.holding_line,
            holding_audio=self.engines.fillers.get((voice, speaker.holding_line)),
            tool_context=ToolContext(
                self.id,
                speaker.id,
                self.user,
                self.engines.memory,
                self.engines.memory_writer,
            ),
            model_voice=capabilities.voice if capabilities.audio_out else "",
        )
        run.options = options
        run.history_version = self._history_edits
        if camera_route:
            run.metrics.routes["camera"] = camera_route
        run.camera_note = camera_note
        if self._hears_audio:
            run.metrics.routes["hearing"] = "audio" if heard is not None else "text"
        if options.speak:
            run.metrics.routes["speech"] = "model" if run.model_speaks else "tts"
        return run

    def _with_camera(
        self, messages: list[ChatMessage], speaker_id: str
    ) -> tuple[list[ChatMessage], str, str]:
        """The camera's newest frame for the reply: as an image with the user's words for
        a model that sees, else its description as a system message just before them
        (after everything cached; the prefill of their words while they speak covers it).
        The description goes into the history with the turn, so it is said again only
        when the view changes. Returns the messages, the route and the note to record."""
        seen = self.camera.fresh() if self.camera is not None else None
        if seen is None:
            return messages, "", ""
        last = user_turn_index(messages)
        if self.engines.llm_capabilities.vision:
            image = MediaPart("image", seen.jpeg, "image/jpeg")
            if last is None:  # a reply to the conversation as it stands: the picture
                return [*messages, ChatMessage("user", "", (image,))], "image", ""
            return with_part(messages, image), "image", ""
        messages = list(messages)
        if last is None:  # no words of this turn: the description goes last
            last = len(messages)
        recent = self.histories.get(speaker_id, [])[-CAMERA_NOTE_WINDOW:]
        if any(m.role == "system" and m.content == seen.description for m in recent):
            return messages, "description", ""  # the history says it, not long ago
        messages.insert(last, ChatMessage("system", seen.description))
        return messages, "description", seen.description

    def _reply_context(
        self, speaker: Persona, history: list[ChatMessage], text: str
    ) -> ReplyContext:
        """What the guard checks ``speaker``'s reply to ``text`` against."""
        return reply_context(
            speaker.name,
            speaker.instructions,
            speaker.facts,
            text,
            earlier_replies=[m.content for m in history if m.role == "assistant"],
            earlier_user_lines=[m.content for m in history if m.role == "user"],
            other_personas=[p.name for p in self.engines.personas.values()],
            memory=self._summaries.get(speaker.id, ""),  # names the user from earlier sessions
            window=GUARD_REPLY_WINDOW,
        )

    def _filler_for(self, run: ReplyRun) -> Filler | None:
        """An acknowledgment for a slow answer: at once when recent turns predict one,
        else once ``filler_after_ms`` passes without answer audio."""
        speaker = self.engines.persona(run.speaker_id)
        if not self.config.fillers or not speaker.fillers or not run.speak:
            return None
        text = speaker.fillers[self.turns % len(speaker.fillers)]
        audio = self.engines.fillers.get((run.voice, text))
        if audio is None:
            return None
        predicted = statistics.median(self._recent_waits) if self._recent_waits else 0.0
        delay_ms = 0.0 if predicted >= self.config.filler_after_ms else self.config.filler_after_ms
        return Filler(text, audio, time.monotonic() + delay_ms / 1000.0)

    def _finish_turn(self, handle: SpeechHandle) -> None:
        """History, memory, trace, metrics and DONE: synchronous, so nothing interleaves."""
        metrics, run = handle.metrics, handle.run
        event: dict[str, Any] | None = None
        try:
            wait = metrics.durations().get("answer_after_commit")
            # A tool's run time is not the model's pace: it would bring fillers too early.
            ran_tool = any(span.stage == "tool" for span in metrics.spans)
            if wait is not None and not handle.interrupted and not ran_tool:
                self._recent_waits.append(wait)
            if self.closed and not handle.interrupted:  # cut off by a disconnect or shutdown
                played, source = handle.played_ms()
                handle.heard, metrics.playback = handle.heard_text(played), source
                handle.interrupted = metrics.interrupted = True
            reply = handle.heard if handle.heard is not None else run.generated.strip()
            metrics.stamp("reply_end", self.clock.now_ms())
            metrics.reply = reply
            metrics.error = handle.error or run.error
            metrics.guard = [h.as_dict() for h in run.guard.hits] if run.guard is not None else []
            metrics.playback = metrics.playback or handle.played_ms()[1]
            self._last_handle = handle
            event = metrics.event()  # built once: for the trace and for the client
            self._remember(run.speaker_id, metrics, event, run.tool_notes, run.camera_note)
        finally:  # whatever failed above, the client learns that the turn is over
            self._end_turn(handle.turn, metrics, self._plays_until(handle), event)

    def _remember(
        self,
        speaker: str,
        metrics: TurnMetrics,
        event: dict[str, Any],
        notes: Sequence[str] = (),
        camera_note: str = "",
    ) -> None:
        """The turn into every persona's history, the memory store and the trace."""
        self._reply_messages = {}
        asked = metrics.transcript
        if not asked and metrics.routes.get("hearing") == "audio":
            # The model heard words no decode wrote down: the history still needs the
            # user's turn (templates that want turns to alternate refuse two replies).
            asked = HEARD_NOT_TRANSCRIBED
        for persona_id, messages in exchange_messages(
            self.room, speaker, asked, metrics.reply, notes
        ).items():
            if camera_note and persona_id == speaker:  # where its prompt had it
                self.histories.setdefault(persona_id, []).append(ChatMessage("system", camera_note))
            self.histories.setdefault(persona_id, []).extend(messages)
            if metrics.reply.strip() and messages:  # the reply is the last one it added
                self._reply_messages[persona_id] = messages[-1]
        self._last_speaker = speaker
        if self.engines.memory_writer is not None:
            self._turn_ref = self.engines.memory_writer.record_turn(
                self.id,
                speaker,
                asked,
                metrics.reply,
                user=self.user,
                interrupted=metrics.interrupted,
            )
        self.engines.trace.write(metrics.record(self.id, event))
        if not metrics.interrupted:
            self._observe(metrics)

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
        for hit in metrics.guard:
            registry.inc(
                "voxgate_reply_guard_total",
                help_text="Reply clauses the guard failed, by rule and what it did",
                rule=str(hit["rule"]),
                action=str(hit["action"]),
            )

    def _correct_last_reply(self, speaker_id: str, heard: str) -> None:
        """The last reply was heard only up to ``heard``: correct the very messages it
        added (later user messages may follow them)."""
        speaker = self.engines.persona(speaker_id)
        for persona_id, said in list(self._reply_messages.items()):
            history = self.histories.get(persona_id, [])
            at = next((i for i in range(len(history) - 1, -1, -1) if history[i] is said), None)
            if at is None:  # deleted by the client meanwhile
                continue
            if heard.strip():
                mine = persona_id == speaker_id
                history[at] = (
                    ChatMessage("assistant", heard) if mine else overheard(speaker.name, heard)
                )
                self._reply_messages[persona_id] = history[at]
            else:  # nothing was heard: as if it had not been said (see exchange_messages)
                del history[at]
                del self._reply_messages[persona_id]
        self.assembler.history_edited()
        self._history_edits += 1
        if self.engines.memory_writer is not None and self._turn_ref is not None:
            self.engines.memory_writer.correct_reply(self._turn_ref, heard)

    # -- tasks and teardown --------------------------------------------------------------------

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

    async def close(self) -> None:
        """Cancel and await every task of the session: nothing outlives the connection.

        Safe to call twice or concurrently, and to cancel: the teardown runs once, shielded.
        """
        if self._closing is None:
            self.closed = True
            self._closing = asyncio.ensure_future(self._teardown())
        await asyncio.shield(self._closing)

    async def _teardown(self) -> None:
        if self.camera is not None:
            await self.camera.close()
        await cancel_and_wait(*self._decodes.values())  # no decode lands while we tear down
        await cancel_and_wait(self._speaker_task)  # the turn in progress ends as interrupted
        runs = list(self._specs.values())
        self._specs.clear()
        while not self._queue.empty():
            queued = self._queue.get_nowait()
            if queued.run is not None:
                runs.append(queued.run)
        for run in runs:
            await run.close()
        await cancel_and_wait(*self._tasks)
        self._tasks.clear()
        forget = getattr(self.engines.llm, "forget_conversation", None)
        if forget is not None:  # the embedded engine frees this session's KV slots
            try:
                await forget(self.id)
            except Exception:  # freeing is best effort: the slot store evicts by budget anyway
                log.exception("session %s: freeing KV slots failed", self.id)


def user_turn_index(messages: list[ChatMessage]) -> int | None:
    """Where the user's words of this turn are: the last message unless system notes
    follow it (the client's instructions); a reply to the conversation as it stands
    has none."""
    last = len(messages) - 1
    while last >= 0 and messages[last].role == "system":
        last -= 1
    return last if last >= 0 and messages[last].role == "user" else None


def with_part(messages: list[ChatMessage], part: MediaPart) -> list[ChatMessage]:
    """``messages`` with ``part`` (the camera's image, the user's audio) added to the
    user's words of this turn; unchanged when there are none."""
    last = user_turn_index(messages)
    if last is None:
        return messages
    messages = list(messages)
    messages[last] = replace(messages[last], parts=(*messages[last].parts, part))
    return messages
