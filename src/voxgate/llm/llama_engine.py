"""The embedded LLM: llama.cpp on one worker thread, scheduled by priority; KV slots.

One ``llama_cpp.Llama`` holds the live KV cache. A request keeps the cached
tokens its prompt shares and prefills only the rest. When another conversation
needs the cache, the live cache is saved as its owner's slot and the new
owner's slot (if any) is restored with the low-level state API, so each
persona's stable prefix is prefilled once.

Every llama.cpp call runs on one dedicated thread. Requests are jobs: the
thread runs one unit at a time (one prefill chunk or one decode step) of the
most urgent runnable job by its *current* priority, ties in arrival order. So
a live turn waits at most one unit behind a speculative generation, which
yields and later resumes exactly where it stopped. Each unit holds the
process-wide ComputeGate at its job's priority.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import ctypes
import itertools
import logging
import os
import threading
import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from voxgate.llm.base import ChatMessage, LLMError, LLMRequest, LLMUsage
from voxgate.llm.chatml import tokenize_chatml
from voxgate.llm.kv_slots import KVSlot, KVSlotStore
from voxgate.scheduler import ComputeGate, Priority, PriorityRef
from voxgate.sequences import common_prefix_len

log = logging.getLogger("voxgate.llm")

DEFAULT_SLOT_BUDGET_BYTES = 256 * 1024 * 1024
# A prefill chunk is one unit: ~64 tokens is ~0.5 s on 2 cores, short enough
# that a live request does not wait long behind speculative prefill.
DEFAULT_PREFILL_CHUNK = 64
# Tokens per unit of a background prime (~100 ms of the 1.5B on 2 cores).
BACKGROUND_CHUNK = 4

_DONE = object()
_THREAD_NAME = "voxgate-llm"


def _default_model_path() -> Path:
    try:
        from voxgate.models.assets import llm_model_path  # type: ignore[import-not-found,unused-ignore]
    except ImportError as exc:
        raise LLMError(
            "no model_path given and voxgate.models.assets is not available: "
            "pass LlamaEngine(model_path=...)"
        ) from exc
    return Path(llm_model_path())


class _Call:
    """A short bookkeeping call (tokenize, forget, ...) run on the worker between units."""

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.fn = fn
        self.args = args
        self.future: Future[Any] = _running_future()


class _Job:
    """One generation (or a prime: prefill only) and everything needed to pause and resume it."""

    def __init__(
        self,
        seq: int,
        request: LLMRequest,
        usage: LLMUsage,
        *,
        add_generation_prompt: bool,
        emit: Callable[[object], None] | None,
    ) -> None:
        self.seq = seq  # arrival order: breaks priority ties
        self.request = request
        self.usage = usage
        self.add_generation_prompt = add_generation_prompt
        self.emit = emit  # None for a prime: nobody reads text
        self.cancel = threading.Event()
        self.future: Future[None] = _running_future()
        # The conversation's slot key owns the cache once the job ends; while it is in
        # flight the job has its own key, so that two jobs of one conversation (a
        # speculative run and its successor) never overwrite each other's state.
        self.key = request.slot_key
        self.temp_key = f"job#{seq}"
        self.started = False  # its first unit ran: it counts as active and may own KV state
        self.prompt: list[int] = []
        # The tokens whose KV cells this job has computed, in order: a prefix of the
        # prompt while prefilling, then the prompt and every evaluated reply token.
        self.tokens: list[int] = []
        self.steps = 0  # decode steps taken (tokens sampled), at most max_tokens
        self.pending: int | None = None  # sampled, emitted, not yet evaluated
        self.sampler: Any = None  # llama_sampler chain: keeps the repeat-penalty history
        self.opening_ban = False  # the chain's first sampler bans openings: drop it after one
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.piece = ctypes.create_string_buffer(64)
        self.first_token_at: float | None = None

    @property
    def priority(self) -> PriorityRef:
        return self.request.priority

    def rank(self) -> tuple[int, int]:
        """Sort key: the current priority (lower is more urgent), then arrival."""
        return (int(self.request.priority.value), self.seq)


class LlamaEngine:
    """``LLMEngine`` on llama-cpp-python. Construct cheaply; the model loads on first use."""

    name = "llama.cpp"

    def __init__(
        self,
        gate: ComputeGate,
        model_path: str | Path | None = None,
        *,
        n_ctx: int = 2048,
        n_threads: int = 2,
        n_batch: int = 256,
        prefill_chunk: int = DEFAULT_PREFILL_CHUNK,
        slot_budget_bytes: int = DEFAULT_SLOT_BUDGET_BYTES,
        top_k: int = 40,
        top_p: float = 0.95,
        min_p: float = 0.05,
        repeat_penalty: float = 1.1,
        extra_buffers: bool = False,
    ) -> None:
        self.gate = gate
        self._model_path = Path(model_path) if model_path is not None else None
        self._n_ctx = n_ctx
        self._n_threads = n_threads
        self._n_batch = n_batch
        self._prefill_chunk = max(1, min(prefill_chunk, n_batch))
        self._top_k = top_k
        self._top_p = top_p
        self._min_p = min_p
        self._repeat_penalty = repeat_penalty
        self._extra_buffers = extra_buffers
        self.slots = KVSlotStore(slot_budget_bytes)
        self._llm: Any = None  # llama_cpp.Llama, created on the worker thread
        self._owner: str | None = None  # slot key whose tokens are in the live KV cache
        self._closed = False
        # The job queue, shared with the worker thread under _cond.
        self._cond = threading.Condition()
        self._jobs: list[_Job] = []  # queued, running and preempted generations
        self._calls: deque[_Call] = deque()
        self._closing = False
        self._thread: threading.Thread | None = None  # started by the first job
        self._stopped: Future[None] = _running_future()  # the thread's last act
        self._seq = itertools.count()
        self.active_requests = 0  # started, unfinished stream requests (running or preempted)
        # Stats for tests and metrics.
        self.last_save_ms = 0.0  # time of the last slot save / restore
        self.last_restore_ms = 0.0
        self.preemptions = 0  # a started job yielded the worker to a more urgent one
        self.dropped_before_start = 0  # cancelled while queued: never touched the KV cache

    # -- public API --------------------------------------------------------

    async def warm(self) -> None:
        """Load the model and generate a few tokens so the first user turn is not the cold one."""
        request = LLMRequest(
            persona_id="__warmup__",
            messages=[ChatMessage("user", "Hi")],
            max_tokens=2,
            temperature=0.0,
            priority=PriorityRef(Priority.SPECULATIVE),
        )
        async with contextlib.aclosing(self._stream(request, LLMUsage())) as chunks:
            async for _ in chunks:
                pass
        await self._call(self._forget, "__warmup__")

    def stream(self, request: LLMRequest, usage: LLMUsage) -> AsyncIterator[str]:
        """Reply text deltas. Use ``contextlib.aclosing``: closing the stream cancels the
        generation and returns once the worker thread has stopped working on it."""
        return self._stream(request, usage)

    async def prime(
        self,
        persona_id: str,
        messages: Sequence[ChatMessage],
        conversation_id: str = "",
        priority: Priority = Priority.SPECULATIVE,
    ) -> LLMUsage:
        """Prefill ``messages`` into the KV slot of the persona (in ``conversation_id``):
        its stable prefix at start-up, so that its first real turn prefills only the
        user's words; or the user's words so far while they are still speaking."""
        usage = LLMUsage()
        request = LLMRequest(
            persona_id,
            list(messages),
            max_tokens=0,
            priority=PriorityRef(priority),
            conversation_id=conversation_id,
        )
        job = self._new_job(request, usage, add_generation_prompt=False, emit=None)
        self._submit(job)
        try:
            await asyncio.wrap_future(job.future)
        finally:
            job.cancel.set()
            await _wait_uncancellable(asyncio.wrap_future(job.future))
        return usage

    def tokenize(self, text: str, special: bool = False) -> list[int]:
        """Tokenize with the model's vocabulary (blocking; loads the model if needed).
        Waits at most one unit of the running generation."""
        call = _Call(self._tokenize_sync, (text, special))
        self._submit(call)
        result: list[int] = call.future.result()
        return result

    async def forget_conversation(self, conversation_id: str) -> None:
        """Drop a finished conversation's KV slots: nobody will extend them again."""
        if not self._closed:
            await self._call(self._forget_conversation, conversation_id)

    async def close(self) -> None:
        """Fail what is still queued or running, free the model and end the worker thread."""
        if self._closed:
            return
        self._closed = True
        with self._cond:
            self._closing = True
            thread = self._thread
            self._cond.notify_all()
        if thread is not None:
            await _wait_uncancellable(asyncio.wrap_future(self._stopped))
            thread.join()  # it has returned from _run: this is immediate

    # -- asyncio side --------------------------------------------------------

    async def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        call = _Call(fn, args)
        self._submit(call)
        return await asyncio.wrap_future(call.future)

    def _new_job(
        self,
        request: LLMRequest,
        usage: LLMUsage,
        *,
        add_generation_prompt: bool,
        emit: Callable[[object], None] | None,
    ) -> _Job:
        return _Job(
            next(self._seq),
            request,
            usage,
            add_generation_prompt=add_generation_prompt,
            emit=emit,
        )

    def _submit(self, item: _Job | _Call) -> None:
        with self._cond:
            if self._closing:
                raise LLMError("LlamaEngine is closed")
            if isinstance(item, _Call):
                self._calls.append(item)
            else:
                self._jobs.append(item)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=_THREAD_NAME, daemon=True)
                self._thread.start()
            self._cond.notify()

    async def _stream(self, request: LLMRequest, usage: LLMUsage) -> AsyncGenerator[str, None]:
        if self._closed:
            raise LLMError("LlamaEngine is closed")
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[object] = asyncio.Queue()

        def emit(item: object) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the loop is gone: nobody is listening any more
                job.cancel.set()

        job = self._new_job(request, usage, add_generation_prompt=True, emit=emit)
        self._submit(job)
        try:
            while True:
                item = await queue.get()
                if item is _DONE:
                    break
                assert isinstance(item, str)
                yield item
            await asyncio.wrap_future(job.future)  # surfaces worker errors
        finally:
            # Queued: dropped untouched at the worker's next pick. Running: stops after
            # its current unit. Either way wait, so the caller knows the worker let go.
            # (A fresh wrapper: one cancelled above no longer tracks the worker.)
            job.cancel.set()
            await _wait_uncancellable(asyncio.wrap_future(job.future))

    # -- worker thread: the scheduler -------------------------------------------

    def _run(self) -> None:
        leftover: list[_Job] = []  # what close() found queued or running
        try:
            leftover = self._schedule()
        except BaseException:  # a bug in the scheduler itself: fail everyone, never hang them
            log.exception("llama.cpp worker failed; the engine stops")
            with self._cond:
                self._closing = True
                leftover, self._jobs = self._jobs, []
                calls, self._calls = list(self._calls), deque()
            for call in calls:
                call.future.set_exception(LLMError("the llama.cpp worker stopped (see the log)"))
        try:
            for j in leftover:
                try:
                    self._finish(j, LLMError("LlamaEngine stopped before the request finished"))
                except Exception:
                    log.exception("llama.cpp worker: could not end a request cleanly")
                    if not j.future.done():
                        j.future.set_exception(LLMError("LlamaEngine stopped"))
            self._unload()
        finally:
            self._stopped.set_result(None)

    def _schedule(self) -> list[_Job]:
        """Run units until close(); returns the jobs still queued or running then."""
        last: _Job | None = None  # the job whose unit ran last
        while True:
            with self._cond:
                while not (self._calls or self._jobs or self._closing):
                    self._cond.wait()
                call = self._calls.popleft() if self._calls else None
                if call is None and self._closing:
                    leftover, self._jobs = self._jobs, []
                    return leftover
                # Cancelled jobs leave now: a queued one before it tokenizes or touches
                # the KV cache, a running one instead of its next unit.
                cancelled = [j for j in self._jobs if j.cancel.is_set()]
                for j in cancelled:
                    self._jobs.remove(j)
                job = min(self._jobs, key=_Job.rank) if call is None and self._jobs else None
            for j in cancelled:
                if not j.started:
                    self.dropped_before_start += 1
                self._finish(j, None)
            if call is not None:
                self._run_call(call)
                continue
            if job is None:
                continue
            # Only the worker removes jobs, so membership here is stable.
            if last is not None and last is not job and last in self._jobs:
                self.preemptions += 1  # ``last`` yields; its KV state is saved on the switch
            last = job
            error: BaseException | None = None
            try:
                more = self._unit(job)
            except LLMError as exc:
                more, error = False, exc
            except Exception as exc:  # a native failure: say which engine and model
                more = False
                error = LLMError(f"llama.cpp generation failed ({self._model_path}): {exc}")
                error.__cause__ = exc
            if not more:
                with self._cond:
                    self._jobs.remove(job)
                self._finish(job, error)
                last = None

    def _run_call(self, call: _Call) -> None:
        try:
            call.future.set_result(call.fn(*call.args))
        except BaseException as exc:
            call.future.set_exception(exc)

    def _finish(self, job: _Job, error: BaseException | None) -> None:
        """Hand the job's KV state to its conversation and tell the consumer it ended."""
        try:
            if job.sampler is not None:
                import llama_cpp

                llama_cpp.llama_sampler_free(job.sampler)
                job.sampler = None
            if job.started:
                parked = self.slots.get(job.temp_key)
                self.slots.discard(job.temp_key)
                if self._owner == job.temp_key:
                    # The live cache now extends the conversation: its next turn reuses it.
                    self._owner = job.key
                elif parked is not None and job.key not in self.slots and self._owner != job.key:
                    # Cancelled while preempted: its saved state is the best start there is.
                    self.slots.put(job.key, parked)
                if job.emit is not None:
                    self.active_requests -= 1
        finally:
            if error is None:
                job.future.set_result(None)
            else:
                job.future.set_exception(error)
            if job.emit is not None:
                job.emit(_DONE)

    # -- worker thread: one unit of a job -----------------------------------------

    def _unit(self, job: _Job) -> bool:
        """Run one unit of ``job`` (its start plus a prefill chunk, a prefill chunk,
        or a decode step); False once the job is finished."""
        self._load()  # outside the timing: the first request pays the load, not its prefill
        t0 = time.perf_counter()
        if not job.started:
            restore_ms = self._start(job)
        elif self._owner != job.temp_key:
            restore_ms = self._resume(job)  # another job used the cache since our last unit
        else:
            restore_ms = 0.0
        job.usage.restore_ms += restore_ms
        # Nothing sampled yet: still prefilling (the last chunk also samples the first token).
        more = self._prefill_chunk_unit(job) if job.steps == 0 else self._decode_step(job)
        now = time.perf_counter()
        first = job.first_token_at
        usage = job.usage
        if first is not None and first >= t0:  # prefill ended in this unit
            usage.prefill_ms += (first - t0) * 1000.0 - restore_ms
            usage.decode_ms += (now - first) * 1000.0
        elif first is None:
            usage.prefill_ms += (now - t0) * 1000.0 - restore_ms
        else:
            usage.decode_ms += (now - t0) * 1000.0 - restore_ms
        if not more and job.emit is not None:
            tail = job.decoder.decode(b"", final=True)
            if tail:
                job.emit(tail)
        return more

    def _start(self, job: _Job) -> float:
        """Tokenize and bring the cache to the longest cached prefix of the prompt."""
        job.started = True
        if job.emit is not None:
            self.active_requests += 1
        llm = self._llm
        prompt = self._prompt_tokens(job.request.messages, job.add_generation_prompt)
        job.prompt = prompt
        job.usage.prompt_tokens = len(prompt)
        if self._owner == job.key:
            # The conversation's last turn is live: extend it in place, no save needed.
            self._owner = job.temp_key
            restore_ms = 0.0
        else:
            restore_ms = self._switch_to(job.temp_key, prompt, fallback=job.key)
        cached = common_prefix_len(llm.input_ids[: llm.n_tokens].tolist(), prompt)
        # Always evaluate the last prompt token, so that fresh logits exist to sample from.
        keep = min(cached, len(prompt) - 1)
        self._truncate(keep)
        job.tokens = prompt[:keep]
        job.usage.reused_tokens = keep
        job.usage.evaluated_tokens = len(prompt) - keep
        return restore_ms

    def _resume(self, job: _Job) -> float:
        """Bring back a preempted job's KV state (prompt and reply so far)."""
        restore_ms = self._switch_to(job.temp_key, job.tokens, fallback=job.key)
        self.slots.discard(job.temp_key)  # the live cache is ahead of it from now on
        llm = self._llm
        cached = common_prefix_len(llm.input_ids[: llm.n_tokens].tolist(), job.tokens)
        self._truncate(cached)
        missing = job.tokens[cached:]
        if job.steps == 0:
            job.tokens = job.tokens[:cached]  # prefilling: the next chunks redo the rest
        else:
            # The parked state was evicted (slot budget): recompute it. The sampler
            # needs no logits from it: the next step evaluates the pending token first.
            for i in range(0, len(missing), self._prefill_chunk):
                with self.gate.hold(job.priority):
                    llm.eval(missing[i : i + self._prefill_chunk])
        return restore_ms

    def _prefill_chunk_unit(self, job: _Job) -> bool:
        llm = self._llm
        done = len(job.tokens)
        # Background prefill goes in small bites, so the gate is free again soon.
        background = job.priority.value >= Priority.BACKGROUND
        size = BACKGROUND_CHUNK if background else self._prefill_chunk
        chunk = job.prompt[done : done + size]
        with self.gate.hold(job.priority):
            # A background unit may have waited long for the gate, blocking this thread;
            # if a better job (or a cancel) came meanwhile, it yields without computing.
            if background and self._outranked(job):
                return True
            llm.eval(chunk)
        job.tokens.extend(chunk)
        if len(job.tokens) < len(job.prompt):
            return True
        if job.request.max_tokens <= 0:
            return False  # a prime: prefill only
        # The first sample needs this chunk's logits, which another job's unit would
        # overwrite: take it now, in the same unit.
        return self._decode_step(job)

    def _outranked(self, job: _Job) -> bool:
        with self._cond:
            return job.cancel.is_set() or any(
                other is not job and other.rank() < job.rank() for other in self._jobs
            )

    def _decode_step(self, job: _Job) -> bool:
        import llama_cpp

        llm = self._llm
        if job.sampler is None:
            # The opening ban is for the first token only: a resumed job has passed it.
            job.sampler, job.opening_ban = self._make_sampler(llm, job.request, job.steps == 0)
        with self.gate.hold(job.priority):
            if job.pending is not None:
                llm.eval([job.pending])
                job.tokens.append(job.pending)
                job.pending = None
            token = int(llama_cpp.llama_sampler_sample(job.sampler, llm.ctx, -1))
        if job.opening_ban:  # the opening is chosen: the ban must not touch later tokens
            llama_cpp.llama_sampler_free(llama_cpp.llama_sampler_chain_remove(job.sampler, 0))
            job.opening_ban = False
        job.steps += 1
        if job.first_token_at is None:
            job.first_token_at = time.perf_counter()
        vocab = llama_cpp.llama_model_get_vocab(llm.model)
        if llama_cpp.llama_vocab_is_eog(vocab, token):
            return False
        job.usage.generated_tokens += 1
        piece = job.piece
        n = llama_cpp.llama_token_to_piece(vocab, token, piece, len(piece), 0, False)
        if n < 0:  # the piece is longer than the buffer: -n is its size
            job.piece = piece = ctypes.create_string_buffer(-n)
            n = llama_cpp.llama_token_to_piece(vocab, token, piece, len(piece), 0, False)
        text = job.decoder.decode(piece.raw[: max(n, 0)])
        if text and job.emit is not None:
            job.emit(text)
        job.pending = token
        return job.steps < job.request.max_tokens and llm.n_tokens + 1 < self._n_ctx

    # -- worker thread: model and calls ------------------------------------------

    def _load(self) -> Any:
        if self._llm is None:
            # llama.cpp's threads meet at OpenMP barriers; spinning there is fine on an
            # idle machine but, when anything else wants a core, one spinning thread
            # starves the other: measured 0.7 tok/s instead of 10 under load. Sleeping
            # waiters avoid that. libgomp reads this when it loads, i.e. on the first
            # import of llama_cpp in the process; an explicit setting wins.
            os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
            import llama_cpp

            path = self._model_path or _default_model_path()
            if not path.is_file():
                raise LLMError(f"LLM model file not found: {path}")
            try:
                with _model_params(extra_buffers=self._extra_buffers):
                    self._llm = llama_cpp.Llama(
                        model_path=str(path),
                        n_ctx=self._n_ctx,
                        n_threads=self._n_threads,
                        n_threads_batch=self._n_threads,
                        n_batch=self._n_batch,
                        verbose=False,
                    )
            except ValueError as exc:
                raise LLMError(f"llama.cpp could not load {path}: {exc}") from exc
            self._owner = None
        return self._llm

    def _unload(self) -> None:
        if self._llm is not None:
            self._llm.close()
            self._llm = None
        self.slots.clear()
        self._owner = None

    def _forget_conversation(self, conversation_id: str) -> None:
        for key in self.slots.slot_keys():
            if key.endswith(f"/{conversation_id}"):
                self._forget(key)
        if self._owner is not None and self._owner.endswith(f"/{conversation_id}"):
            self._owner = None  # nobody saves the live cache for it any more

    def _forget(self, persona_id: str) -> None:
        self.slots.discard(persona_id)
        if self._owner == persona_id:
            self._owner = None

    def _tokenize_sync(self, text: str, special: bool) -> list[int]:
        llm = self._load()
        return list(llm.tokenize(text.encode("utf-8"), add_bos=False, special=special))

    def _prompt_tokens(
        self, messages: Sequence[ChatMessage], add_generation_prompt: bool
    ) -> list[int]:
        llm = self._llm

        def tokenize(text: str, special: bool) -> list[int]:
            return list(llm.tokenize(text.encode("utf-8"), add_bos=False, special=special))

        tokens = tokenize_chatml(messages, tokenize, add_generation_prompt)
        if len(tokens) >= self._n_ctx:
            raise LLMError(
                f"prompt of {len(tokens)} tokens does not fit the context of {self._n_ctx}: "
                "compact the history"
            )
        return tokens

    def _make_sampler(self, llm: Any, request: LLMRequest, first: bool) -> tuple[Any, bool]:
        """The sampler chain, and whether its first sampler is an opening ban (``first``:
        the job has not sampled yet and asks to avoid openings)."""
        import llama_cpp

        chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
        add = llama_cpp.llama_sampler_chain_add
        ban = self._ban_openings(llm, request.avoid_openings) if first else None
        if ban is not None:
            add(chain, ban)
        if self._repeat_penalty != 1.0:
            add(
                chain,
                llama_cpp.llama_sampler_init_penalties(
                    llm.n_vocab(), 64, self._repeat_penalty, 0.0, 0.0
                ),
            )
        if request.temperature <= 0.0:
            add(chain, llama_cpp.llama_sampler_init_greedy())
        else:
            add(chain, llama_cpp.llama_sampler_init_top_k(self._top_k))
            add(chain, llama_cpp.llama_sampler_init_top_p(self._top_p, 1))
            add(chain, llama_cpp.llama_sampler_init_min_p(self._min_p, 1))
            add(chain, llama_cpp.llama_sampler_init_temp(request.temperature))
            add(chain, llama_cpp.llama_sampler_init_dist(request.seed & 0xFFFFFFFF))
        return chain, ban is not None

    @staticmethod
    def _ban_openings(llm: Any, openings: Sequence[str]) -> Any:
        """A logit-bias sampler that rules out the first token of each opening."""
        import llama_cpp

        if not openings:
            return None
        banned = sorted(
            {ids[0] for text in openings if (ids := llm.tokenize(text.encode(), False, False))}
        )
        if not banned:
            return None
        biases = (llama_cpp.llama_logit_bias * len(banned))()
        for entry, token in zip(biases, banned, strict=True):
            entry.token, entry.bias = token, float("-inf")
        return llama_cpp.llama_sampler_init_logit_bias(llm.n_vocab(), len(banned), biases)

    # -- KV cache and slots (worker thread) ----------------------------------------

    def _truncate(self, n: int) -> None:
        """Drop KV cells at positions >= n and forget their tokens."""
        import llama_cpp

        llm = self._llm
        if n < llm.n_tokens:
            mem = llama_cpp.llama_get_memory(llm.ctx)
            if not llama_cpp.llama_memory_seq_rm(mem, -1, n, -1):
                # Partial removal unsupported (recurrent models): start over.
                llama_cpp.llama_memory_clear(mem, True)
                n = 0
            llm.n_tokens = n

    def _switch_to(self, key: str, tokens: Sequence[int], fallback: str | None = None) -> float:
        """Make the live KV cache the best start for ``tokens`` under ``key``, saving the
        previous owner's state as its slot; returns restore ms. The slot looked for is
        ``key``'s, then ``fallback``'s, then the one sharing the longest prefix."""
        llm = self._llm
        if self._owner == key:
            return 0.0
        if self._owner is not None and llm.n_tokens > 0:
            self._save_slot(self._owner)
        self._owner = key
        slot = self.slots.get(key)
        if slot is None and fallback is not None:
            slot = self.slots.get(fallback)
        if slot is None:
            slot = self._best_slot(tokens)
        if slot is None:
            return 0.0
        live = common_prefix_len(llm.input_ids[: llm.n_tokens].tolist(), tokens)
        if common_prefix_len(slot.tokens, tokens) <= live:
            return 0.0
        return self._restore_slot(slot)

    def _best_slot(self, tokens: Sequence[int]) -> KVSlot | None:
        """A conversation's first turn starts from the slot sharing the longest prefix:
        usually its persona's primed system prompt, or another session of that persona."""
        best, best_len = None, 0
        for slot in self.slots.snapshot():
            if (n := common_prefix_len(slot.tokens, tokens)) > best_len:
                best, best_len = slot, n
        return best

    def _save_slot(self, key: str) -> None:
        import llama_cpp

        llm = self._llm
        t0 = time.perf_counter()
        size = llama_cpp.llama_state_get_size(llm.ctx)
        buf = (ctypes.c_uint8 * size)()
        n = llama_cpp.llama_state_get_data(llm.ctx, buf, size)
        slot = KVSlot(tokens=tuple(llm.input_ids[: llm.n_tokens].tolist()), state=bytes(buf)[:n])
        self.slots.put(key, slot)
        self.last_save_ms = (time.perf_counter() - t0) * 1000.0

    def _restore_slot(self, slot: KVSlot) -> float:
        import llama_cpp

        llm = self._llm
        t0 = time.perf_counter()
        src = ctypes.cast(ctypes.c_char_p(slot.state), ctypes.POINTER(ctypes.c_uint8))
        n = llama_cpp.llama_state_set_data(llm.ctx, src, len(slot.state))
        if n != len(slot.state):
            # The context is now in an unknown state: clear it and prefill from scratch.
            llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(llm.ctx), True)
            llm.n_tokens = 0
            return 0.0
        llm.input_ids[: len(slot.tokens)] = slot.tokens
        llm.n_tokens = len(slot.tokens)
        self.last_restore_ms = (time.perf_counter() - t0) * 1000.0
        return self.last_restore_ms


def _running_future() -> Future[Any]:
    """A future the asyncio side cannot cancel (``wrap_future`` would try when its
    awaiter is cancelled): only the worker completes it, once it has let go of the work."""
    future: Future[Any] = Future()
    future.set_running_or_notify_cancel()
    return future


_PARAMS_LOCK = threading.Lock()


@contextlib.contextmanager
def _model_params(*, extra_buffers: bool) -> Iterator[None]:
    """Set ``use_extra_bufts`` for models loaded inside this block.

    ``Llama()`` does not expose it. The extra buffer types include llama.cpp's
    AMX kernels, which a native build enables on CPUs that advertise AMX; in
    VMs that advertise it without granting the tile state (Firecracker here)
    the first decode dies with SIGSEGV. Off by default: safe everywhere.
    """
    # The low-level module whose llama_model_default_params() Llama() calls.
    import llama_cpp.llama_cpp as low_level

    if extra_buffers:
        yield
        return
    with _PARAMS_LOCK:
        original = low_level.llama_model_default_params

        def params() -> Any:
            p = original()
            p.use_extra_bufts = False
            return p

        low_level.llama_model_default_params = params
        try:
            yield
        finally:
            low_level.llama_model_default_params = original


async def _wait_uncancellable(fut: asyncio.Future[Any]) -> None:
    """Wait for the worker to finish even if we are cancelled meanwhile, then re-raise that."""
    cancelled = False
    while not fut.done():
        try:
            await asyncio.wait({fut})
        except asyncio.CancelledError:
            cancelled = True
    if not fut.cancelled():
        fut.exception()  # mark retrieved; the caller already saw or dropped it
    if cancelled:
        raise asyncio.CancelledError
