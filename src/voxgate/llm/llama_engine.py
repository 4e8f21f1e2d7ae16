"""The embedded LLM: llama.cpp in one worker thread, a KV state slot per persona.

One ``llama_cpp.Llama`` holds the live KV cache. A request keeps the cached
tokens its prompt shares and prefills only the rest. When another persona
speaks, the live cache is saved as the previous persona's slot and the new
persona's slot (if any) is restored with the low-level state API, so each
persona's stable prefix is prefilled once.

Every llama.cpp call runs on one dedicated thread; each prefill chunk and each
decode step holds the process-wide ComputeGate at the request's current
priority.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import ctypes
import os
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from voxgate.llm.base import ChatMessage, LLMError, LLMRequest, LLMUsage
from voxgate.llm.chatml import tokenize_chatml
from voxgate.llm.kv_slots import KVSlot, KVSlotStore
from voxgate.scheduler import ComputeGate, Priority, PriorityRef

DEFAULT_SLOT_BUDGET_BYTES = 256 * 1024 * 1024
# A prefill chunk holds the gate; ~64 tokens is ~0.5 s on 2 cores, short enough
# that a live request does not wait long behind speculative prefill.
DEFAULT_PREFILL_CHUNK = 64

_DONE = object()


def common_prefix_len(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _default_model_path() -> Path:
    try:
        from voxgate.models.assets import llm_model_path  # type: ignore[import-not-found,unused-ignore]
    except ImportError as exc:
        raise LLMError(
            "no model_path given and voxgate.models.assets is not available: "
            "pass LlamaEngine(model_path=...)"
        ) from exc
    return Path(llm_model_path())


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
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="voxgate-llm")
        self._llm: Any = None  # llama_cpp.Llama, created on the worker thread
        self._owner: str | None = None  # persona whose tokens are in the live KV cache
        self._closed = False
        self.active_requests = 0  # requests the worker thread is computing (0 or 1)
        # Stats for tests and metrics: time of the last slot save / restore.
        self.last_save_ms = 0.0
        self.last_restore_ms = 0.0

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
        generation and returns once the worker thread has stopped."""
        return self._stream(request, usage)

    async def prime(self, persona_id: str, messages: Sequence[ChatMessage]) -> LLMUsage:
        """Prefill a persona's stable prefix (e.g. its system message) into its KV slot,
        so that its first real turn prefills only the user's words."""
        usage = LLMUsage()
        t0 = time.perf_counter()
        await self._call(self._prime_sync, persona_id, list(messages), usage)
        usage.prefill_ms = (time.perf_counter() - t0) * 1000.0
        return usage

    def tokenize(self, text: str, special: bool = False) -> list[int]:
        """Tokenize with the model's vocabulary (blocking; loads the model if needed)."""
        return self._executor.submit(self._tokenize_sync, text, special).result()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._call(self._unload)
        self._executor.shutdown(wait=True)

    # -- asyncio side --------------------------------------------------------

    async def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, *args)

    async def _stream(self, request: LLMRequest, usage: LLMUsage) -> AsyncGenerator[str, None]:
        if self._closed:
            raise LLMError("LlamaEngine is closed")
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[object] = asyncio.Queue()
        cancel = threading.Event()

        def emit(item: object) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the loop is gone: nobody is listening any more
                cancel.set()

        work = loop.run_in_executor(self._executor, self._generate, request, usage, cancel, emit)
        try:
            while True:
                item = await queue.get()
                if item is _DONE:
                    break
                assert isinstance(item, str)
                yield item
            await work  # surfaces worker errors
        finally:
            cancel.set()
            await _wait_uncancellable(work)

    # -- worker thread -------------------------------------------------------

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

    async def forget_conversation(self, conversation_id: str) -> None:
        """Drop a finished conversation's KV slots: nobody will extend them again."""
        if not self._closed:
            await self._call(self._forget_conversation, conversation_id)

    def _forget_conversation(self, conversation_id: str) -> None:
        for key in self.slots.slot_keys():
            if key.endswith(f"/{conversation_id}"):
                self._forget(key)

    def _forget(self, persona_id: str) -> None:
        self.slots.discard(persona_id)
        if self._owner == persona_id:
            self._owner = None

    def _tokenize_sync(self, text: str, special: bool) -> list[int]:
        llm = self._load()
        return list(llm.tokenize(text.encode("utf-8"), add_bos=False, special=special))

    def _prime_sync(self, persona_id: str, messages: list[ChatMessage], usage: LLMUsage) -> None:
        self._load()
        tokens = self._prompt_tokens(messages, add_generation_prompt=False)
        priority = PriorityRef(Priority.SPECULATIVE)
        self._prefill(persona_id, tokens, priority, usage, threading.Event())

    def _generate(
        self,
        request: LLMRequest,
        usage: LLMUsage,
        cancel: threading.Event,
        emit: Callable[[object], None],
    ) -> None:
        self.active_requests += 1
        try:
            self._generate_inner(request, usage, cancel, emit)
        except LLMError:
            raise
        except Exception as exc:  # a native failure: say which engine and model
            raise LLMError(f"llama.cpp generation failed ({self._model_path}): {exc}") from exc
        finally:
            self.active_requests -= 1
            emit(_DONE)

    def _generate_inner(
        self,
        request: LLMRequest,
        usage: LLMUsage,
        cancel: threading.Event,
        emit: Callable[[object], None],
    ) -> None:
        import llama_cpp

        llm = self._load()
        t_prefill = time.perf_counter()
        tokens = self._prompt_tokens(request.messages, add_generation_prompt=True)
        if not self._prefill(request.slot_key, tokens, request.priority, usage, cancel):
            return

        sampler = self._make_sampler(llm, request)
        vocab = llama_cpp.llama_model_get_vocab(llm.model)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        piece = ctypes.create_string_buffer(64)
        t_decode = 0.0
        try:
            pending: int | None = None
            for _ in range(request.max_tokens):
                if cancel.is_set():
                    break
                with self.gate.hold(request.priority.value):
                    if pending is not None:
                        llm.eval([pending])
                    token = int(llama_cpp.llama_sampler_sample(sampler, llm.ctx, -1))
                if t_decode == 0.0:
                    t_decode = time.perf_counter()
                    usage.prefill_ms = (t_decode - t_prefill) * 1000.0 - usage.restore_ms
                if llama_cpp.llama_vocab_is_eog(vocab, token):
                    break
                usage.generated_tokens += 1
                n = llama_cpp.llama_token_to_piece(vocab, token, piece, len(piece), 0, False)
                if n < 0:  # the piece is longer than the buffer: -n is its size
                    piece = ctypes.create_string_buffer(-n)
                    n = llama_cpp.llama_token_to_piece(vocab, token, piece, len(piece), 0, False)
                text = decoder.decode(piece.raw[: max(n, 0)])
                if text:
                    emit(text)
                pending = token
                if llm.n_tokens + 1 >= self._n_ctx:
                    break
            tail = decoder.decode(b"", final=True)
            if tail:
                emit(tail)
        finally:
            llama_cpp.llama_sampler_free(sampler)
            if t_decode:
                usage.decode_ms = (time.perf_counter() - t_decode) * 1000.0

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

    def _prefill(
        self,
        persona_id: str,
        tokens: list[int],
        priority: PriorityRef,
        usage: LLMUsage,
        cancel: threading.Event,
    ) -> bool:
        """Bring the KV cache to ``tokens``, evaluating only what is not cached.

        False if cancelled. The last prompt token is always evaluated, so that
        fresh logits exist to sample from.
        """
        llm = self._llm
        usage.prompt_tokens = len(tokens)
        usage.restore_ms = self._switch_to(persona_id, tokens)
        cached = common_prefix_len(llm.input_ids[: llm.n_tokens].tolist(), tokens)
        keep = min(cached, len(tokens) - 1)
        self._truncate(keep)
        suffix = tokens[keep:]
        usage.reused_tokens = keep
        usage.evaluated_tokens = len(suffix)
        for i in range(0, len(suffix), self._prefill_chunk):
            if cancel.is_set():
                return False
            with self.gate.hold(priority.value):
                llm.eval(suffix[i : i + self._prefill_chunk])
        return True

    def _make_sampler(self, llm: Any, request: LLMRequest) -> Any:
        import llama_cpp

        chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
        add = llama_cpp.llama_sampler_chain_add
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
        return chain

    # -- KV cache and persona slots (worker thread) ----------------------------

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

    def _switch_to(self, persona_id: str, tokens: Sequence[int]) -> float:
        """Make the live KV cache the best start for ``persona_id``; returns restore ms."""
        llm = self._llm
        if self._owner == persona_id:
            return 0.0
        if self._owner is not None and llm.n_tokens > 0:
            self._save_slot(self._owner)
        self._owner = persona_id
        slot = self.slots.get(persona_id) or self._best_slot(tokens)
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

    def _save_slot(self, persona_id: str) -> None:
        import llama_cpp

        llm = self._llm
        t0 = time.perf_counter()
        size = llama_cpp.llama_state_get_size(llm.ctx)
        buf = (ctypes.c_uint8 * size)()
        n = llama_cpp.llama_state_get_data(llm.ctx, buf, size)
        slot = KVSlot(tokens=tuple(llm.input_ids[: llm.n_tokens].tolist()), state=bytes(buf)[:n])
        self.slots.put(persona_id, slot)
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
