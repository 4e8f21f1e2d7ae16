"""The turn machine: one synchronous state machine decides every turn of a session.

``TurnMachine.handle(event) -> list[action]`` has no awaits and no I/O, so
deciding and acting can never be interleaved with other work: it is race-free
by construction, and a recorded event sequence replays to the same actions.
The session only *executes* the actions (starts a decode, starts or drops a
speculative reply, queues a committed turn, interrupts a reply) and feeds the
outcomes back as events.

What it owns:

- endpointing on the audio clock (``Endpointer``): speech start, pause,
  resume, end of turn after the minimum delay on a complete-looking
  transcript or the maximum delay in any case;
- the early decode at each pause (it overlaps the endpointing wait) and the
  interim decodes while the user speaks, when the CPU is idle;
- speculation: a reply starts on a complete-looking early transcript, is
  promoted when the turn commits with the same words, dropped otherwise;
- barge-in (speech over a reply for ``interrupt_min_ms`` interrupts it), the
  cough rule (a shorter burst over a reply is not a turn) and the utterance cap.

All times are absolute sample indices of the input audio (the audio clock).
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field

from voxgate.turns.endpointing import (
    EndpointConfig,
    Endpointer,
    EventKind,
    Phase,
    TurnEvent,
    Verdict,
    transcript_verdict,
)

# -- events (in) ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VadWindow:
    """One VAD window ended at sample ``end``; ``cpu_idle``: nothing waits for the CPU."""

    end: int
    length: int
    prob: float
    cpu_idle: bool = True


@dataclass(frozen=True, slots=True)
class DecodeLanded:
    decode_id: int
    text: str


@dataclass(frozen=True, slots=True)
class DecodeFailed:
    decode_id: int
    error: str


@dataclass(frozen=True, slots=True)
class TurnScored:
    """The end-of-turn model's probability that the speech up to pause ``score_id`` is a
    finished turn."""

    score_id: int
    probability: float


@dataclass(frozen=True, slots=True)
class TypedTurn:
    text: str
    now: int


@dataclass(frozen=True, slots=True)
class AudioEnded:
    """The client closed its audio stream: an utterance in progress ends here."""

    now: int


@dataclass(frozen=True, slots=True)
class ReplyFinished:
    """Turn ``turn``'s reply has sent everything; the client plays it until ``plays_until``."""

    turn: int
    plays_until: int


@dataclass(frozen=True, slots=True)
class PlaybackProgress:
    """The client (or the server's estimate) says how much of ``turn`` is still to play."""

    turn: int
    plays_until: int


TurnInput = (
    VadWindow | DecodeLanded | DecodeFailed | TurnScored | TypedTurn | AudioEnded | ReplyFinished
)
MachineEvent = TurnInput | PlaybackProgress

# -- actions (out) ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    utterance: int
    speech_start: int
    at: int


@dataclass(frozen=True, slots=True)
class SpeechPaused:
    utterance: int
    at: int


@dataclass(frozen=True, slots=True)
class StartDecode:
    """Transcribe input audio ``[start, end)``. A final decode may become the transcript."""

    decode_id: int
    utterance: int
    start: int
    end: int
    final: bool


@dataclass(frozen=True, slots=True)
class ScoreTurn:
    """Ask the end-of-turn model whether input audio ``[start, end)`` ends a turn."""

    score_id: int
    utterance: int
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class CancelDecode:
    decode_id: int


@dataclass(frozen=True, slots=True)
class ShowTranscript:
    text: str
    final: bool
    utterance: int | None = field(default=None, compare=False)  # whose words they are


@dataclass(frozen=True, slots=True)
class PrimePartial:
    """The user is still speaking and has said ``text`` so far: prefill it for the reply."""

    utterance: int
    text: str


@dataclass(frozen=True, slots=True)
class TranscriptReady:
    """The utterance's transcript up to its pause is known; ``source``: where it came from
    ("partial": the last interim decode already covered all the speech, no decode needed;
    "interim": an interim decode in flight covered it; "decode": a decode of its own)."""

    utterance: int
    source: str


@dataclass(frozen=True, slots=True)
class StartSpeculation:
    reply_id: int
    utterance: int
    text: str
    # Input audio [start, end) the reply hears, on the audio_turns route (else None).
    audio: tuple[int, int] | None = None


@dataclass(frozen=True, slots=True)
class DropSpeculation:
    reply_id: int
    utterance: int | None  # the utterance charged with the wasted call, if still live


@dataclass(frozen=True, slots=True)
class CommitTurn:
    """Answer ``text`` as turn ``turn``; ``reply_id``: a speculative reply to promote."""

    turn: int
    text: str
    utterance: int | None  # None: a typed turn
    reply_id: int | None
    speech_end: int
    committed_at: int
    audio: tuple[int, int] | None = None  # as StartSpeculation's


@dataclass(frozen=True, slots=True)
class DiscardUtterance:
    """An utterance that is not a turn: noise, a cough over the reply, or a failed decode."""

    utterance: int
    reason: str
    error: str | None = None


@dataclass(frozen=True, slots=True)
class HoldOutput:
    """The user started speaking over ``turn``'s reply: send no more audio for now."""

    turn: int


@dataclass(frozen=True, slots=True)
class ResumeOutput:
    """It was only a cough: ``turn``'s reply goes on."""

    turn: int


@dataclass(frozen=True, slots=True)
class Interrupt:
    """Stop turn ``turn``'s reply now and keep only what the user heard."""

    turn: int


Action = (
    SpeechStarted
    | SpeechPaused
    | StartDecode
    | ScoreTurn
    | CancelDecode
    | ShowTranscript
    | PrimePartial
    | TranscriptReady
    | StartSpeculation
    | DropSpeculation
    | CommitTurn
    | DiscardUtterance
    | HoldOutput
    | ResumeOutput
    | Interrupt
)


@dataclass(frozen=True, slots=True)
class MachineConfig:
    rate: int = 16000
    endpoint_min_ms: int = 400
    endpoint_max_ms: int = 1500
    # A learned end-of-turn model scores each pause's audio (ScoreTurn); a complete-looking
    # transcript that does not sound finished then waits endpoint_mid_ms.
    turn_score: bool = False
    endpoint_mid_ms: int = 800
    interrupt_min_ms: int = 300
    overlap: bool = True  # final decode at the pause, during the endpointing wait
    speculate: bool = True
    interim_stt: bool = True
    interim_interval_ms: int = 300
    prime_partials: bool = True  # prefill each interim transcript while the user speaks
    max_utterance_ms: int = 30000
    preroll_ms: int = 300  # audio kept before speech start for the decode
    hold_on_speech: bool = True  # hold a reply's audio while the user speaks over it
    vad_threshold: float = 0.5  # VAD probability at which speech starts
    # The model hears the user's audio (LLMCapabilities.audio_in): a turn commits on
    # the audio, with no final decode; the words shown are the last interim decode's.
    audio_turns: bool = False


def normalize(text: str) -> str:
    """Case and punctuation do not change what the user asked."""
    return " ".join(re.sub(r"[^\w\s']", " ", text.lower()).split())


@dataclass(slots=True)
class _Decode:
    decode_id: int
    utterance: int
    speech_end: int
    end: int  # the decode covers the input audio up to here
    text: str | None = None  # None until it lands
    error: str | None = None
    source: str = "decode"  # see TranscriptReady


@dataclass(slots=True)
class _Held:
    """A committed utterance waiting for its final transcript."""

    utterance: int
    decode: _Decode
    speech_end: int
    committed_at: int
    speech_ms: float
    over_reply: bool
    audio_start: int  # where its audio (pre-roll included) starts


@dataclass(slots=True)
class _Utterance:
    utterance: int
    speech_start: int
    over_reply: bool  # a reply was playing when it started
    last_interim: int
    decode: _Decode | None = None  # the early decode of the current pause
    interim: _Decode | None = None  # the periodic interim decode in flight
    tail: _Decode | None = None  # the decode of a first silence after speech, in flight
    partial: _Decode | None = None  # the last interim decode that landed
    score_id: int | None = None  # the end-of-turn score asked for at the current pause


@dataclass(slots=True)
class _Reply:
    turn: int
    plays_until: int | None = None  # None: still sending


@dataclass(slots=True)
class TurnMachine:
    config: MachineConfig = field(default_factory=MachineConfig)
    endpointer: Endpointer = field(init=False)
    now: int = 0
    turns: int = 0  # committed turns so far
    _ids: int = 0
    _utt: _Utterance | None = None
    _held: deque[_Held] = field(default_factory=deque)
    _spec: tuple[int, int, str] | None = None  # (reply id, utterance, normalized text)
    _reply: _Reply | None = None  # the last committed turn while its reply may be playing
    _holding: int | None = None  # the turn whose output is held while the user speaks

    def __post_init__(self) -> None:
        self.endpointer = Endpointer(self._endpoint_config())

    def _endpoint_config(self) -> EndpointConfig:
        c = self.config
        return EndpointConfig(
            c.endpoint_min_ms,
            c.endpoint_max_ms,
            c.rate,
            use_score=c.turn_score,
            mid_delay_ms=c.endpoint_mid_ms,
            speech_on=c.vad_threshold,
        )

    def configure(self, config: MachineConfig) -> None:
        self.config = config
        self.endpointer.config = self._endpoint_config()

    def _next_id(self) -> int:
        self._ids += 1
        return self._ids

    def _ms(self, samples: int) -> float:
        return samples * 1000.0 / self.config.rate

    def _samples(self, ms: float) -> int:
        return int(ms * self.config.rate / 1000)

    # -- queries ---------------------------------------------------------------

    def reply_playing(self) -> bool:
        """The one answer to "is a reply still playing": from its commit until the client
        has played its last sample."""
        reply = self._reply
        if reply is None:
            return False
        return reply.plays_until is None or self.now < reply.plays_until

    def holding(self) -> int | None:
        """The turn whose audio is held while the user speaks over it, if any."""
        return self._holding

    def utterance_start(self) -> int | None:
        """Where the utterance in progress started: decodes may still need audio from there."""
        return self._utt.speech_start if self._utt is not None else None

    @property
    def phase(self) -> Phase:
        return self.endpointer.phase

    # -- the machine -------------------------------------------------------------

    def handle(self, event: MachineEvent) -> list[Action]:
        actions: list[Action] = []
        if isinstance(event, VadWindow):
            self.now = max(self.now, event.end)
            self._on_window(event, actions)
        elif isinstance(event, DecodeLanded | DecodeFailed):
            self._on_decode(event, actions)
        elif isinstance(event, TurnScored):
            self._on_score(event, actions)
        elif isinstance(event, TypedTurn):
            self._commit(event.text, None, None, event.now, event.now, actions)
        elif isinstance(event, AudioEnded):
            self.now = max(self.now, event.now)
            self._endpoint(self.endpointer.force_end(event.now), actions)
        elif self._reply is not None and self._reply.turn == event.turn:
            self._reply.plays_until = event.plays_until  # ReplyFinished, PlaybackProgress
        return actions

    def _on_window(self, w: VadWindow, actions: list[Action]) -> None:
        self._endpoint(self.endpointer.update(w.end, w.length, w.prob), actions)
        utt = self._utt
        if utt is None or self.endpointer.phase is not Phase.SPEAKING:
            return
        # Measured like the cough rule measures it (to the last speech window), so that a
        # burst both rules judge alike is either an interruption or a cough, never both.
        speech_ms = self._ms(self.endpointer.speech_end - utt.speech_start)
        if self.reply_playing() and speech_ms >= self.config.interrupt_min_ms:
            assert self._reply is not None
            actions.append(Interrupt(self._reply.turn))
            self._reply = self._holding = None
        if self._ms(w.end - utt.speech_start) > self.config.max_utterance_ms:
            self._endpoint(self.endpointer.force_end(w.end), actions)
            return
        if self._tail_due(utt, w):
            # The live turn's work: on the final decode's path, whatever else is running.
            # Heard by the model, it is only a caption that may judge the pause sooner:
            # nothing waits for it.
            final = not self.config.audio_turns
            utt.tail = self._partial_decode(utt, w.end, actions, final=final)
        elif self._interim_due(utt, w):
            utt.last_interim = w.end
            utt.interim = self._partial_decode(utt, w.end, actions, final=False)

    def _partial_decode(
        self, utt: _Utterance, end: int, actions: list[Action], final: bool
    ) -> _Decode:
        decode = _Decode(self._next_id(), utt.utterance, self.endpointer.speech_end, end)
        start = utt.speech_start - self._samples(self.config.preroll_ms)
        actions.append(StartDecode(decode.decode_id, utt.utterance, start, end, final=final))
        return decode

    def _interim_due(self, utt: _Utterance, w: VadWindow) -> bool:
        """Re-decode the utterance every ``interim_interval_ms`` while the CPU is free."""
        if not self.config.interim_stt or not w.cpu_idle or utt.interim is not None:
            return False
        return self._ms(w.end - utt.last_interim) >= self.config.interim_interval_ms

    def _tail_due(self, utt: _Utterance, w: VadWindow) -> bool:
        """The first silent window after speech that nothing decoded or decoding covers:
        decode it now, so that if this silence becomes the pause, its transcript is
        (nearly) there. A periodic interim still running does not stop it."""
        speech_end = self.endpointer.speech_end
        c = self.config
        if not c.interim_stt or not c.overlap or w.end <= speech_end:
            return False
        return not any(
            d is not None and d.end > speech_end for d in (utt.partial, utt.tail, utt.interim)
        ) and (utt.tail is None)

    def _endpoint(self, events: list[TurnEvent], actions: list[Action]) -> None:
        for event in events:
            if event.kind is EventKind.SPEECH_START:
                self._speech_start(event, actions)
            elif event.kind is EventKind.PAUSE:
                self._pause(event, actions)
            elif event.kind is EventKind.RESUME:
                self._resume(actions)
            elif event.kind is EventKind.END_OF_TURN:
                self._end_of_turn(event, actions)

    def _speech_start(self, event: TurnEvent, actions: list[Action]) -> None:
        utterance = self._next_id()
        self._utt = _Utterance(utterance, event.speech_start, self.reply_playing(), event.sample)
        actions.append(SpeechStarted(utterance, event.speech_start, event.sample))
        self._hold(actions)

    def _hold(self, actions: list[Action]) -> None:
        """Speech over a playing reply: hold its audio at once. Interrupting waits for
        ``interrupt_min_ms`` (a cough must not cut the reply), but meanwhile nothing more
        is sent, so the user is not talked over while we find out."""
        if (
            self.config.hold_on_speech
            and self._holding is None
            and self._reply is not None
            and self.reply_playing()
        ):
            self._holding = self._reply.turn
            actions.append(HoldOutput(self._holding))

    def _release(self, actions: list[Action]) -> None:
        if self._holding is not None:
            actions.append(ResumeOutput(self._holding))
            self._holding = None

    def _cancel_interim(self, utt: _Utterance, actions: list[Action]) -> None:
        for decode in (utt.interim, utt.tail):
            if decode is not None:
                actions.append(CancelDecode(decode.decode_id))
        utt.interim = utt.tail = None

    def _pause(self, event: TurnEvent, actions: list[Action]) -> None:
        utt = self._utt
        if utt is None:
            return
        actions.append(SpeechPaused(utt.utterance, event.sample))
        if self._ms(event.speech_end - utt.speech_start) < self.config.interrupt_min_ms:
            self._release(actions)  # a burst too short to interrupt: the reply goes on
        if not self.config.overlap:
            return
        if self.config.turn_score:
            utt.score_id = self._next_id()
            start = utt.speech_start - self._samples(self.config.preroll_ms)
            actions.append(ScoreTurn(utt.score_id, utt.utterance, start, event.sample))
        if self.config.audio_turns:
            utt.decode = self._heard_decode(utt, event.speech_end, event.sample)
        else:
            utt.decode = self._pause_decode(utt, event, actions)
        if utt.decode.text is not None:
            self._early_transcript(utt, utt.decode, actions)

    def _pause_decode(self, utt: _Utterance, event: TurnEvent, actions: list[Action]) -> _Decode:
        """The transcript up to the pause: the last partial when no speech came after the
        audio it covered, else the interim in flight when it covers the speech, else a
        decode of its own."""
        # "Covers" means it heard some silence after the speech too: Whisper cut off at
        # the last speech window often drops the final period, and the turn then waits.
        partial = utt.partial
        if partial is not None and partial.end > event.speech_end:
            self._cancel_interim(utt, actions)
            return _Decode(
                self._next_id(),
                utt.utterance,
                event.speech_end,
                partial.end,
                partial.text,
                source="partial",
            )
        for running in (utt.tail, utt.interim):
            if running is not None and running.end > event.speech_end:
                if running is utt.tail:
                    utt.tail = None
                else:
                    utt.interim = None
                self._cancel_interim(utt, actions)  # the other one, if any
                running.speech_end, running.source = event.speech_end, "interim"
                return running
        self._cancel_interim(utt, actions)
        decode = _Decode(self._next_id(), utt.utterance, event.speech_end, event.sample)
        actions.append(self._decode_action(decode, utt, event.sample))
        return decode

    def _decode_action(self, decode: _Decode, utt: _Utterance, end: int) -> StartDecode:
        return StartDecode(decode.decode_id, utt.utterance, self._audio_start(utt), end, final=True)

    def _audio_start(self, utt: _Utterance) -> int:
        return utt.speech_start - self._samples(self.config.preroll_ms)

    def _heard_decode(self, utt: _Utterance, speech_end: int, end: int) -> _Decode:
        """The audio_turns route: the model hears ``[start, end)`` itself, so nothing is
        decoded; the words to show are the last interim's ("" when none landed). An
        interim still running goes on and may bring newer words by the commit."""
        words = utt.partial.text if utt.partial is not None else None
        return _Decode(self._next_id(), utt.utterance, speech_end, end, words or "", source="audio")

    def _heard_pause(self, utt: _Utterance, interim: _Decode) -> bool:
        """An interim that landed during the pause of an utterance the model hears, and
        covers all of its speech."""
        decode = utt.decode
        return (
            self.phase is Phase.PAUSED
            and decode is not None
            and decode.source == "audio"
            and interim.end > decode.speech_end
        )

    def _spec_key(self, text: str, speech_end: int | None) -> str:
        """What a speculative reply answers: the words, or on the audio_turns route the
        audio up to that pause (a resumed utterance drops it anyway)."""
        return f"@{speech_end}" if self.config.audio_turns else normalize(text)

    def _resume(self, actions: list[Action]) -> None:
        """The user went on speaking: the decode and speculation of that pause are void."""
        utt = self._utt
        if utt is None:
            return
        if utt.decode is not None and utt.decode.text is None:
            actions.append(CancelDecode(utt.decode.decode_id))
        utt.decode = None
        self._drop_speculation(actions, charge=utt.utterance)
        self._hold(actions)

    def _drop_speculation(self, actions: list[Action], charge: int | None) -> None:
        if self._spec is not None:
            actions.append(DropSpeculation(self._spec[0], charge))
            self._spec = None

    def _drop_speculation_of(self, utterance: int, actions: list[Action]) -> None:
        if self._spec is not None and self._spec[1] == utterance:
            self._drop_speculation(actions, charge=None)

    def _end_of_turn(self, event: TurnEvent, actions: list[Action]) -> None:
        utt, self._utt = self._utt, None
        if utt is None:
            return
        self._cancel_interim(utt, actions)
        decode = utt.decode
        speech_ms = self._ms(event.speech_end - utt.speech_start)
        words = utt.partial.text if utt.partial is not None else ""
        if self.config.audio_turns and (words or speech_ms >= self.config.interrupt_min_ms):
            if decode is None or decode.speech_end != event.speech_end:
                decode = self._heard_decode(utt, event.speech_end, event.sample)
            elif words:
                decode.text = words  # an interim that landed during the wait
        elif decode is None or decode.speech_end != event.speech_end or decode.source == "audio":
            # Sequential mode, a forced end while speaking, or (heard by the model) a
            # burst too short to tell a word from a noise with no words yet: decode now.
            decode = _Decode(self._next_id(), utt.utterance, event.speech_end, event.sample)
            actions.append(self._decode_action(decode, utt, event.sample))
        if speech_ms < self.config.interrupt_min_ms:
            self._release(actions)  # ended (e.g. the stream closed) before it could interrupt
        self._held.append(
            _Held(
                utt.utterance,
                decode,
                event.speech_end,
                event.sample,
                speech_ms,
                utt.over_reply,
                self._audio_start(utt),
            )
        )
        self._release_held(actions)

    def _on_decode(self, event: DecodeLanded | DecodeFailed, actions: list[Action]) -> None:
        utt = self._utt
        interim = self._running_partial(utt, event.decode_id)
        if utt is not None and interim is not None:
            if isinstance(event, DecodeLanded) and (
                utt.partial is None or interim.end > utt.partial.end
            ):
                interim.text = event.text
                utt.partial = interim
                if event.text and self.phase is Phase.SPEAKING:
                    actions.append(ShowTranscript(event.text, False, utt.utterance))
                    if self.config.prime_partials and self.config.speculate:
                        actions.append(PrimePartial(utt.utterance, event.text))
                elif event.text and self._heard_pause(utt, interim):
                    # Heard by the model: these words, now covering the pause, judge it.
                    assert utt.decode is not None
                    utt.decode.text = event.text
                    self._early_transcript(utt, utt.decode, actions)
            return
        decode = self._find_decode(event.decode_id)
        if decode is None or decode.text is not None:
            return  # superseded (its utterance resumed or was discarded), or already known
        if isinstance(event, DecodeLanded):
            decode.text = event.text
        else:
            decode.text, decode.error = "", event.error
        actions.append(TranscriptReady(decode.utterance, decode.source))
        if utt is not None and utt.decode is decode and self.phase is Phase.PAUSED:
            self._early_transcript(utt, decode, actions)
        self._release_held(actions)

    def _on_score(self, event: TurnScored, actions: list[Action]) -> None:
        utt = self._utt
        if utt is None or utt.score_id != event.score_id or self.phase is not Phase.PAUSED:
            return  # a pause the user has since spoken past
        self.endpointer.set_turn_score(event.probability)
        self._endpoint(self.endpointer.poll(self.now), actions)

    @staticmethod
    def _running_partial(utt: _Utterance | None, decode_id: int) -> _Decode | None:
        """The interim or tail decode ``decode_id`` of the live utterance (then forgotten)."""
        if utt is None:
            return None
        if utt.interim is not None and utt.interim.decode_id == decode_id:
            found, utt.interim = utt.interim, None
            return found
        if utt.tail is not None and utt.tail.decode_id == decode_id:
            found, utt.tail = utt.tail, None
            return found
        return None

    def _find_decode(self, decode_id: int) -> _Decode | None:
        live = self._utt.decode if self._utt is not None else None
        if live is not None and live.decode_id == decode_id:
            return live
        return next((h.decode for h in self._held if h.decode.decode_id == decode_id), None)

    def _early_transcript(self, utt: _Utterance, decode: _Decode, actions: list[Action]) -> None:
        """The pause's transcript is known before the commit: judge it, maybe speculate."""
        if decode.source == "partial":
            actions.append(TranscriptReady(utt.utterance, decode.source))
        text = decode.text or ""
        heard = decode.source == "audio"
        if heard and (utt.partial is None or utt.partial.end <= decode.speech_end):
            # Words that stop before the pause say nothing of how it ends: the audio's
            # own score (if any) or the middle wait decide.
            verdict = Verdict.UNHEARD
        else:
            verdict = transcript_verdict(text)
        self.endpointer.set_transcript_verdict(verdict)
        long_enough = self._ms(decode.speech_end - utt.speech_start) >= self.config.interrupt_min_ms
        if text or (heard and long_enough):  # a short wordless burst may be a noise
            if text:
                actions.append(ShowTranscript(text, False, utt.utterance))
            # An unfinished-looking thought will most likely go on: speculating on it
            # would mostly burn CPU that the resumed utterance's decode needs.
            if self.config.speculate and verdict is not Verdict.INCOMPLETE:
                key = self._spec_key(text, decode.speech_end)
                if self._spec is None or self._spec[2] != key:
                    self._drop_speculation(actions, charge=utt.utterance)
                    reply_id = self._next_id()
                    self._spec = (reply_id, utt.utterance, key)
                    audio = (self._audio_start(utt), decode.end) if heard else None
                    actions.append(StartSpeculation(reply_id, utt.utterance, text, audio))
        self._endpoint(self.endpointer.poll(self.now), actions)

    def _release_held(self, actions: list[Action]) -> None:
        """Committed utterances become turns in order, each once its transcript has landed."""
        while self._held and self._held[0].decode.text is not None:
            held = self._held.popleft()
            text = held.decode.text or ""
            short = held.speech_ms < self.config.interrupt_min_ms
            cough = held.over_reply and short
            # Heard by the model itself, no words shown is no reason to drop it; only a
            # burst too short to be a turn (it has no words to tell otherwise) is.
            wordless = not text and (not self.config.audio_turns or short)
            if held.decode.error is not None or wordless or cough:
                self._drop_speculation_of(held.utterance, actions)
                reason = "failed" if held.decode.error else "cough" if cough else "no words"
                actions.append(DiscardUtterance(held.utterance, reason, held.decode.error))
                continue
            # Even with no words: a turn the model heard is still the user's (a Realtime
            # client gets its item from this).
            actions.append(ShowTranscript(text, True, held.utterance))
            audio = (held.audio_start, held.decode.end) if self.config.audio_turns else None
            self._commit(
                text, held.utterance, held.speech_end, held.committed_at, None, actions, audio
            )

    def _commit(
        self,
        text: str,
        utterance: int | None,
        speech_end: int | None,
        committed_at: int,
        typed_at: int | None,
        actions: list[Action],
        audio: tuple[int, int] | None = None,
    ) -> None:
        self._holding = None
        # A new turn ends the reply still playing. Without audio coming in (a typed turn
        # in a text-only session) the audio clock stands still, so only a reply that is
        # still being sent counts: its tail may still play, ahead of the new reply.
        reply = self._reply
        if reply is not None and (
            reply.plays_until is None if utterance is None else self.reply_playing()
        ):
            actions.append(Interrupt(reply.turn))
        reply_id = None
        if self._spec is not None and utterance is not None and self._spec[1] == utterance:
            if self._spec[2] == self._spec_key(text, speech_end):
                reply_id, self._spec = self._spec[0], None
            else:
                self._drop_speculation(actions, charge=utterance)
        self.turns += 1
        self._reply = _Reply(self.turns)
        end = speech_end if speech_end is not None else (typed_at or committed_at)
        actions.append(CommitTurn(self.turns, text, utterance, reply_id, end, committed_at, audio))
