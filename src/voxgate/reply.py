"""One reply's computation: LLM tokens -> clause chunks -> TTS audio, into a buffer.

A run never sends anything: it only produces ``Piece``s that the session's
speech handle plays out once the turn is committed. So a run can start
*speculatively* (before the endpointer has decided the user is done) at
background priority, and a dropped run can never reach the client. ``promote``
makes it the live reply in place; ``close`` stops it and awaits its tasks.

A run keeps its own metrics until promoted: a dropped speculative run never
stamps the live turn.

With a ``ReplyGuard`` every clause is checked before it goes to synthesis
(see ``voxgate.quality.guard``): ``generated`` only ever holds text that passed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

from voxgate.aio import cancel_and_wait
from voxgate.audio.pcm import Int16Array
from voxgate.llm.base import ChatMessage, LLMEngine, LLMRequest, LLMUsage, SpeechWanted
from voxgate.metrics.turn import SessionClock, TurnMetrics
from voxgate.model_speech import ModelSpeech
from voxgate.personas.persona import VoiceSpec
from voxgate.quality.checks import Violation
from voxgate.quality.guard import ReplyGuard
from voxgate.scheduler import Priority, PriorityRef
from voxgate.tools.persona_tools import escape_markup, tool_call_text, tool_response_text
from voxgate.tools.registry import Tool, ToolContext, ToolError, call_tool
from voxgate.tools.tool_call_stream import BadToolCall, SpokenText, ToolCall, ToolCallStream
from voxgate.tts.base import TTSEngine
from voxgate.tts.chunker import TextChunker

log = logging.getLogger("voxgate.reply")
EVENT_RESULT_CHARS = 500  # of a result, in the client's tool event
MAX_TOOL_CALLS = 3  # per reply: a model that keeps calling is stopped there
HOLDING_AFTER_S = 0.3  # a tool still running then gets the persona's holding line
TOO_SLOW = "Sorry, that is taking too long."
# After a result a small model tends to call again, or to talk about the call; this
# line (the last message, so the cached prefix before it stays valid) asks for the answer.
ANSWER_FROM_RESULT = "Answer the user's question from this result, in one short spoken sentence."
TOOL_FAILED = "Sorry, I couldn't do that."


@dataclass(frozen=True, slots=True)
class Piece:
    """A clause: its text and its audio (None when synthesis failed: text only).

    ``delta`` is the raw reply text to show with it, spacing intact (the clause
    text is trimmed for synthesis); it may be empty or run ahead of the clause.
    """

    text: str
    audio: Int16Array | None
    delta: str
    holding: bool = False  # the holding line said while a tool runs, not the answer


class _Clause(NamedTuple):
    text: str
    delta: str
    audio: Int16Array | None = None  # made ahead (the holding line), else synthesized
    holding: bool = False
    voiced_later: bool = False  # the model's speech of it goes with a later piece


@dataclass(frozen=True, slots=True)
class ReplyEnd:
    error: str | None


ReplyItem = Piece | ReplyEnd


def _add_usage(total: LLMUsage, part: LLMUsage) -> None:
    """Fold one attempt's usage into the reply's: work adds up, the prompt is one."""
    total.prompt_tokens = max(total.prompt_tokens, part.prompt_tokens)
    total.reused_tokens += part.reused_tokens
    total.evaluated_tokens += part.evaluated_tokens
    total.generated_tokens += part.generated_tokens
    total.restore_ms += part.restore_ms
    total.prefill_ms += part.prefill_ms
    total.decode_ms += part.decode_ms


class ReplyRun:
    def __init__(
        self,
        *,
        llm: LLMEngine,
        tts: TTSEngine,
        request: LLMRequest,
        voice: VoiceSpec,
        clock: SessionClock,
        clauses: bool,
        answering: str,
        history_len: int,
        mode: str,
        guard: ReplyGuard | None = None,
        first_chunk_words: int = 0,
        speak: bool = True,
        tools: Sequence[Tool] = (),
        holding_line: str = "One moment.",
        holding_audio: Int16Array | None = None,
        tool_context: ToolContext | None = None,
        model_voice: str = "",
    ) -> None:
        """``model_voice``: the audio_out route, the model speaks in this voice of its own
        and nothing is synthesized (the engine's capabilities decide; see Session)."""
        if model_voice and speak:
            request = replace(request, speech=SpeechWanted(model_voice, self._model_said))
        self.llm, self.tts, self.request, self.voice, self.clock = llm, tts, request, voice, clock
        self.model_speaks = request.speech is not None
        self._speech = ModelSpeech(tts.sample_rate)
        self._unvoiced: list[str] = []  # words released before any of their speech came
        # Our words, not the model's, from here on (a tool's apology): synthesized even
        # when the model speaks.
        self._own_words = False
        self.answering = answering  # the transcript this run answers
        self.history_len = history_len  # the speaker's history length its prompt was built on
        self.metrics = TurnMetrics(0, request.persona_id, mode)  # its own until promoted
        self.usage = LLMUsage()
        self.metrics.llm = self.usage
        self.guard = guard
        self.speak = speak  # False: a text-only reply (no synthesis, its pieces carry no audio)
        self.options: object = None  # the session's reply options it was built with
        self.camera_note = ""  # the camera's description its prompt gave, for the history
        self._tools = {tool.name: tool for tool in tools}
        self._holding_line = holding_line
        self._holding_audio = holding_audio  # synthesized at start-up, when it could be
        self._tool_context = tool_context
        # Tools run only once the run answers a committed turn: never speculatively.
        self._promoted = asyncio.Event()
        self._tool_results: dict[str, str] = {}  # per call: a regenerated attempt reuses it
        self.tool_notes: list[str] = []  # results, for the conversation's context
        self._notify: Callable[[dict[str, Any]], None] | None = None  # tool events out
        self._unsent_events: list[dict[str, Any]] = []
        self._calls_made = 0
        self._called_on_words: dict[str, str] = {}  # tool -> result, of the intent calls
        self.effects_ran = False  # a tool with effects ran: the reply is not regenerated
        self.history_version = 0  # the session's count of history edits it was built on
        self._clause_mode = clauses
        self._first_chunk_words = first_chunk_words
        self._clauses: asyncio.Queue[_Clause | None] = asyncio.Queue()  # to synthesize
        self._unshown = ""  # raw text generated and not yet attached to a clause
        self._pending: list[tuple[str, str]] = []  # (clause, delta) not yet judged
        self._released: list[str] = []  # clauses that passed: the reply so far
        self._failed_opening = ""  # the text of the last attempt the guard failed
        self._chunker = self._new_chunker()
        self._attempt_no = 0
        self._first_token_ms: float | None = None
        self._items: asyncio.Queue[ReplyItem] = asyncio.Queue()
        self._tts_priority = PriorityRef(Priority.SPECULATIVE)
        self.error: str | None = None
        self._clauses_queued = 0
        self._tasks = [
            asyncio.create_task(self._generate(), name="reply-llm"),
            asyncio.create_task(self._synthesize_all(), name="reply-tts"),
        ]

    def _new_chunker(self) -> TextChunker:
        return TextChunker(clauses=self._clause_mode, first_chunk_words=self._first_chunk_words)

    @property
    def generated(self) -> str:
        """The reply so far: the clauses that passed, and nothing else."""
        return " ".join(self._released)

    @property
    def speaker_id(self) -> str:
        return self.request.persona_id

    def promote(self, metrics: TurnMetrics) -> None:
        """Make this the live reply of the turn ``metrics`` describes: live priorities,
        and its stamps and spans so far move into the turn's metrics."""
        self.request.priority.value = Priority.LLM_LIVE
        # Promote a synthesis already waiting for the CPU, not only the next one.
        self._tts_priority.value = Priority.TTS_LIVE
        for name, value in self.metrics.stamps.items():
            metrics.stamp(name, value)
        metrics.spans.extend(self.metrics.spans)
        metrics.tts_calls += self.metrics.tts_calls
        metrics.routes.update(self.metrics.routes)
        metrics.llm = self.usage
        metrics.persona = self.speaker_id
        self.metrics = metrics
        self._promoted.set()

    def answer_due(self) -> bool:
        """Answer audio is ready or being synthesized: a filler now would only delay it."""
        return self._clauses_queued > 0 or not self._items.empty()

    async def next_item(self) -> ReplyItem:
        return await self._items.get()

    async def _generate(self) -> None:
        self.metrics.stamp("llm_start", self.clock.now_ms())
        span = self.metrics.span("llm", self.clock.now_ms())
        try:
            await self._generate_guarded()
        except Exception as exc:  # a dead or failing backend ends this reply, not the session
            self.error = f"llm_failed: {exc}"
            # What was generated before the failure is still spoken, if it passes.
            self._take_rest()
            if self._pending and not self._judge(final=True):
                self._release()
        finally:
            self._queue_model_tail()
            self._clauses.put_nowait(None)
            span.end_ms = round(self.clock.now_ms(), 1)
            decode_s = max(self.usage.decode_ms, 1.0) / 1000.0
            span.attrs.update(
                tokens=self.usage.generated_tokens,
                tok_per_s=round(self.usage.generated_tokens / decode_s, 1),
                prompt_tokens=self.usage.prompt_tokens,
                evaluated_tokens=self.usage.evaluated_tokens,
            )
            if self.guard is not None and self.guard.hits:
                span.attrs["guard"] = [h.as_dict() for h in self.guard.hits]

    async def _generate_guarded(self) -> None:
        """Up to ``guard.attempts`` generations; a neutral acknowledgement when all fail."""
        attempts = self.guard.attempts if self.guard is not None else 1
        request = self.request
        for attempt in range(attempts):
            if attempt:
                request = replace(
                    request,
                    seed=(request.seed * 1_000_003 + attempt) % 2**31,
                    temperature=ReplyGuard.retry_temperature(request.temperature),
                    # A retry that opens the same way mostly fails the same way.
                    avoid_openings=(*request.avoid_openings, self._failed_opening),
                )
            failed = await self._attempt(request, attempt)
            if not failed:
                return
            if self.effects_ran:  # a new attempt could run those tools again: stop here
                assert self.guard is not None
                if self._released:
                    self.guard.record(failed, attempt, "truncated")
                    return
                self.guard.record(failed, attempt, "fallback")  # say something, not nothing
                break
            assert self.guard is not None
            last = attempt + 1 == attempts
            self.guard.record(failed, attempt, "fallback" if last else "regenerated")
        assert self.guard is not None
        ack = self.guard.neutral_ack()
        self._pending = [(ack, ack)]
        self._speech.reset()  # the failed attempt's speech
        self._release(synthesize=True)  # on the model-speech route too: it said otherwise

    async def _attempt(self, request: LLMRequest, attempt: int) -> list[Violation]:
        """One generation. Returns the violations that failed it before anything was
        released (regenerate); a failure after that truncates the reply instead."""
        self._chunker = self._new_chunker()
        self._pending, self._unshown, self._attempt_no = [], "", attempt
        self._speech.reset()  # a failed attempt's speech is never played
        self._unvoiced, self._own_words = [], False
        self._first_token_ms = None
        usage = LLMUsage()  # this attempt's; added to the reply's total when it ends
        stream = (
            self._with_tools(request, usage) if self._tools else self.llm.stream(request, usage)
        )
        try:
            # aclosing: a cancelled or truncated reply closes the stream at once.
            async with contextlib.aclosing(stream):  # type: ignore[type-var]
                async for delta in stream:
                    if self._first_token_ms is None:
                        self._first_token_ms = self.clock.now_ms()
                    self._unshown += delta
                    self._speech.said_chars += len(delta)
                    for chunk in self._take_chunks(self._chunker.feed(delta)):
                        self._pending.append(chunk)
                        if self._holding_opening():
                            continue
                        if failed := self._judge(final=False):
                            return self._reject(failed)
                        self._release()
                    # A short held opening ("Sure,") goes out once the words after it,
                    # mid-clause, are enough to judge it: no waiting for the clause to end.
                    ahead = self._chunker.pending
                    if self._pending and not self._released and not self._holding_opening(ahead):
                        if failed := self._judge(final=False, ahead=ahead):
                            return self._reject(failed)
                        self._release()
        finally:
            _add_usage(self.usage, usage)
        self._take_rest()
        if self._pending or not self._released:
            if failed := self._judge(final=True):
                return self._reject(failed)
            self._release()
        return []

    async def _with_tools(self, request: LLMRequest, usage: LLMUsage) -> AsyncIterator[str]:
        """The reply's words across tool rounds: a call ends a round, its result starts
        the next; the markup itself is never given out to be spoken."""
        found, apology = await self._called_by_intent(request)
        if apology:  # the user asked for it and it failed: say so, claim nothing
            self._own_words = True
            yield apology
            return
        messages = list(request.messages) + found
        spoken = ""  # across rounds: a new round's words must not run into the last ones
        while True:
            parser, said, call = ToolCallStream(), "", None
            stream = self.llm.stream(replace(request, messages=messages), usage)
            async with contextlib.aclosing(stream):  # type: ignore[type-var]
                async for delta in stream:
                    for item in parser.feed(delta):
                        if isinstance(item, ToolCall):
                            call = item
                            break  # what follows a call is the model waiting for its result
                        if isinstance(item, BadToolCall):
                            self._tool_event({"name": None, "outcome": "bad_call",
                                              "error": item.problem})  # fmt: skip
                        elif item.text:
                            text = item.text
                            if spoken and not said and not spoken[-1].isspace():
                                text = " " + text.lstrip()
                            said += text
                            spoken += text
                            yield text
                    if call is not None:
                        break
            if call is None:
                for item in parser.close():
                    if isinstance(item, SpokenText):
                        yield item.text
                return
            if call.name in self._called_on_words:
                # Already run on the user's words (a note kept): the model's own call of it
                # is answered from that run, not run again with other wording.
                result, apology = self._called_on_words[call.name], ""
            elif self._calls_made >= MAX_TOOL_CALLS:  # per reply, attempts included
                self._tool_event({"name": call.name, "outcome": "capped"})
                return
            else:
                self._calls_made += 1
                result, apology = await self._run_tool(call)
            if apology:
                self._own_words = True
                yield f" {apology}" if spoken and not spoken[-1].isspace() else apology
                return
            messages += [
                ChatMessage("assistant", said + tool_call_text(call.name, call.arguments)),
                ChatMessage("user", tool_response_text(result)),
                ChatMessage("system", ANSWER_FROM_RESULT),
            ]

    def intent_calls(self, asked: str) -> list[ToolCall]:
        """The calls the user's words ``asked`` ask for (built-ins declare the words)."""
        calls = []
        for tool in self._tools.values():
            if tool.intent is None or not tool.intent.search(asked):
                continue
            arguments = tool.intent_arguments(asked) if tool.intent_arguments else {}
            if arguments is not None:
                calls.append(ToolCall(tool.name, arguments))
        return calls

    def effects_asked(self, asked: str) -> list[ToolCall]:
        """The calls with effects ``asked`` asks for: a speculative run built on other words
        (punctuation counts: "?" makes a note a question) must not run its own."""
        return [c for c in self.intent_calls(asked) if not self._tools[c.name].pure]

    async def _called_by_intent(self, request: LLMRequest) -> tuple[list[ChatMessage], str]:
        """Tools the user's words ask for, called before the model answers (pure ones on a
        speculative run too): their calls and results, as if the model had made the calls,
        or an apology to speak when one failed."""
        asked = next((m.content for m in reversed(request.messages) if m.role == "user"), "")
        found: list[ChatMessage] = []
        for call in self.intent_calls(asked)[:MAX_TOOL_CALLS]:
            self._calls_made += 1
            # One with effects waits here for the commit (a speculative run does not run it).
            result, apology = await self._run_tool(call)
            if apology:
                return [], apology
            if not self._tools[call.name].pure:  # a read may be asked again (other args)
                self._called_on_words[call.name] = result
            found += [
                ChatMessage("assistant", tool_call_text(call.name, call.arguments)),
                ChatMessage("user", tool_response_text(result)),
            ]
        return ([*found, ChatMessage("system", ANSWER_FROM_RESULT)] if found else []), ""

    async def _run_tool(self, call: ToolCall) -> tuple[str, str]:
        """(result, "") or ("", an apology to speak). Waits for the commit first, unless
        the tool is pure."""
        tool = self._tools.get(call.name)
        if tool is None or not tool.pure:
            await self._promoted.wait()
        key = json.dumps([call.name, call.arguments], sort_keys=True)
        if key in self._tool_results:
            return self._tool_results[key], ""
        started = self.clock.now_ms()
        span = self.metrics.span("tool", started, name=call.name)
        self._tool_event({"name": call.name, "arguments": call.arguments, "outcome": "started"})
        outcome, result, apology = "failed", "", TOOL_FAILED
        try:
            if tool is None:
                raise ToolError("unknown_tool", f"no tool {call.name!r}")
            task = asyncio.ensure_future(call_tool(tool, call.arguments, self._tool_context))
            try:
                done, _ = await asyncio.wait({task}, timeout=HOLDING_AFTER_S)
                if not done and self.speak and await self._still_running_when_live(task):
                    line = self._holding_line  # a slow tool: say so while it runs
                    if not self._pending:  # words not yet passed keep their speech back
                        self._flush_model_speech()  # the model's words before the call
                    self._queue(_Clause(line, f"{line} ", self._holding_audio, holding=True))
                result = await task
                outcome, apology = "ok", ""
                if not tool.pure:
                    self.effects_ran = True  # a regenerated attempt must not run it again
            finally:
                task.cancel()  # interrupted (the run is closed): an async tool stops here
        except ToolError as exc:
            outcome = exc.code
            apology = TOO_SLOW if exc.code == "timeout" else TOOL_FAILED
        except Exception:  # a bug below call_tool: the reply apologises, the turn ends
            log.exception("tool %s failed", call.name)
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        finally:
            span.end_ms = round(self.clock.now_ms(), 1)
            span.attrs["outcome"] = outcome
            duration = round(self.clock.now_ms() - started)
            event: dict[str, Any] = {"name": call.name, "outcome": outcome, "duration_ms": duration}
            if outcome == "ok":
                event["result"] = result[:EVENT_RESULT_CHARS]
            self._tool_event(event)
            if outcome == "ok":
                self._tool_results[key] = result
                args = escape_markup(json.dumps(call.arguments, ensure_ascii=False))
                note = f"({call.name}({args}) returned: {escape_markup(result)})"
                self.tool_notes.append(note)
        return result, apology

    async def _still_running_when_live(self, task: asyncio.Future[str]) -> bool:
        """Wait for the commit or the tool, whichever comes first: a speculative run's tool
        that is done by the commit needs no holding line."""
        promoted: asyncio.Future[Any] = asyncio.ensure_future(self._promoted.wait())
        either: set[asyncio.Future[Any]] = {task, promoted}
        try:
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        finally:
            promoted.cancel()
        return not task.done()

    def _tool_event(self, event: dict[str, Any]) -> None:
        if self._notify is not None:
            self._notify(event)
        else:  # before its turn started (a speculative run's pure calls): told then
            self._unsent_events.append(event)

    def open_events(self, notify: Callable[[dict[str, Any]], None]) -> None:
        """The turn has started on the wire: tool events go to ``notify`` from now on."""
        self._notify = notify
        unsent, self._unsent_events = self._unsent_events, []
        for event in unsent:
            notify(event)

    def _take_chunks(self, chunks: list[str]) -> list[tuple[str, str]]:
        """Pair each new clause with the raw text it came from (spacing intact). The
        chunker still holds the text after the last cut: that stays unshown, so text a
        later check may reject never rides along with a clause that passed."""
        if not chunks:
            return []
        held = len(self._chunker.pending)
        raw = self._unshown[: len(self._unshown) - held] if held else self._unshown
        self._unshown = self._unshown[len(raw) :]
        pairs, pos = [], 0
        for i, chunk in enumerate(chunks):
            found = raw.find(chunk, pos)
            end = len(raw) if found < 0 or i == len(chunks) - 1 else found + len(chunk)
            pairs.append((chunk, raw[pos:end]))
            pos = end
        return pairs

    def _take_rest(self) -> None:
        """The end of the stream: the chunker's last words become the last clause."""
        if rest := self._chunker.flush():
            self._pending.append((rest, self._unshown))
        elif self._pending and self._unshown:  # trailing spaces belong to the last clause
            text, delta = self._pending[-1]
            self._pending[-1] = (text, delta + self._unshown)
        self._unshown = ""

    def _holding_opening(self, ahead: str = "") -> bool:
        """The opening is held until it says enough to be judged (``ahead``: words
        generated past the last clause count too)."""
        return (
            self.guard is not None
            and not self._released
            and not self.guard.ready_to_judge(f"{self._candidate()} {ahead}")
        )

    def _candidate(self) -> str:
        return " ".join([*self._released, *(text for text, _ in self._pending)])

    def _judge(self, final: bool, ahead: str = "") -> list[Violation]:
        """Check the reply so far (plus ``ahead``: text generated past the last clause)."""
        if self.guard is None:
            return []
        text = f"{self._candidate()} {ahead}".strip() if ahead else self._candidate()
        failed = self.guard.check_final(text) if final else self.guard.check_partial(text)
        if self._tool_results:
            # An answer from a fresh result may say what an earlier one said ("It is
            # Wednesday..."): the same words, new facts behind them. Not a loop.
            failed = [v for v in failed if v.rule != "repeat"]
        return failed

    def _reject(self, failed: list[Violation]) -> list[Violation]:
        self._failed_opening = self._candidate()
        self._pending = []
        if not self._released:
            return failed  # nothing spoken yet: regenerate
        assert self.guard is not None
        # What was released had passed: the reply stops here.
        self.guard.record(failed, self._attempt_no, "truncated")
        return []

    def _release(self, synthesize: bool = False) -> None:
        """Pending clauses passed: on to synthesis (or with the model's speech), and into
        the reply. ``synthesize``: our own words, not the model's, even when it speaks."""
        synthesize = synthesize or self._own_words or not self.model_speaks
        if synthesize:
            self._flush_model_speech()  # the model's speech before our words goes first
        if not self._released and self._pending and self._first_token_ms is not None:
            # The first token of the reply that is spoken: a rejected attempt's does not count.
            self.metrics.stamp("llm_first_token", self._first_token_ms)
        for text, delta in self._pending:
            self._released.append(text)
            self._speech.released_chars += len(delta)
            if synthesize:
                self._queue(_Clause(text, delta))
            elif self._speech.buffered:
                self._queue(_Clause(self._voiced(text), delta, self._model_audio()))
            else:  # its speech has not come yet: shown now, said with the next piece
                self._unvoiced.append(text)
                self._queue(_Clause("", delta, voiced_later=True))
        self._pending = []

    def _model_said(self, pcm: bytes, rate: int) -> None:
        """A chunk of the model's speech (the audio_out route), kept until words pass."""
        self._speech.add(pcm, rate)

    def _model_audio(self) -> Int16Array:
        audio = self._speech.take()
        if len(audio):
            self.metrics.stamp("first_model_audio", self.clock.now_ms())
        return audio

    def _voiced(self, text: str = "") -> str:
        """The words a piece of the model's speech says: those released before it came."""
        words = " ".join([*self._unvoiced, text]).strip()
        self._unvoiced = []
        return words

    def _flush_model_speech(self) -> None:
        """The model's speech buffered so far goes out now, with the words it says."""
        if self.model_speaks and self._speech.buffered:
            self._queue(_Clause(self._voiced(), "", self._model_audio()))

    def _queue_model_tail(self) -> None:
        """The end of the reply: the rest of the speech of the words that passed (a cut
        reply's speech of words that did not is dropped here)."""
        if self.model_speaks and self._released:
            self._speech.keep_released_share()
            self._flush_model_speech()

    def _queue(self, clause: _Clause) -> None:
        self._clauses_queued += 1
        self._clauses.put_nowait(clause)

    async def _synthesize_all(self) -> None:
        tts_failed: str | None = None
        try:
            while (clause := await self._clauses.get()) is not None:
                text, delta, audio, holding, voiced_later = clause
                if not self.speak or voiced_later:
                    audio = None
                elif audio is not None:
                    pass  # made ahead (the holding line), or the model's own speech
                elif tts_failed is None:
                    audio = await self._synthesize(text)
                    if audio is None:
                        tts_failed = self.error
                else:
                    audio = None  # the text still goes out; its audio stops here
                self._clauses_queued -= 1
                self._items.put_nowait(Piece(text, audio, delta, holding))
        except Exception as exc:  # a bug here must still end the reply, not hang its player
            self.error = self.error or f"internal: {exc}"
            raise
        finally:
            self._items.put_nowait(ReplyEnd(self.error))

    async def _synthesize(self, text: str) -> Int16Array | None:
        self.metrics.tts_calls += 1
        span = self.metrics.span("tts", self.clock.now_ms(), chars=len(text))
        try:
            audio = await self.tts.synthesize(text, self.voice, self._tts_priority)
        except Exception as exc:
            self.error = self.error or f"tts_failed: {exc}"
            return None
        finally:
            span.end_ms = round(self.clock.now_ms(), 1)
        self.metrics.stamp("first_tts_audio", self.clock.now_ms())
        span.attrs["audio_ms"] = round(len(audio) * 1000 / self.tts.sample_rate)
        return audio

    async def close(self) -> None:
        """Stop generation and synthesis and wait until they have stopped."""
        await cancel_and_wait(*(t for t in self._tasks if not t.done()))
