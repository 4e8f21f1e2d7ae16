"""LlamaEngine's job scheduler without a model: the real worker loop, stepped units.

``SteppedEngine`` replaces one unit of work (a prefill chunk or a decode step)
with a token that waits for the test's permission, so each test decides
exactly when the worker may go on and can check which job it picked.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable

import pytest

from voxgate.llm.base import ChatMessage, LLMError, LLMRequest, LLMUsage
from voxgate.llm.llama_engine import _THREAD_NAME, LlamaEngine, _Job
from voxgate.scheduler import ComputeGate, Priority, PriorityRef


class SteppedEngine(LlamaEngine):
    def __init__(self) -> None:
        super().__init__(ComputeGate(), model_path="/nonexistent.gguf")
        self.units: list[str] = []  # persona of each unit run, in order
        self.entered = 0  # units begun: one more than ``units`` while the worker waits in one
        self._allow = threading.Semaphore(0)

    def _load(self) -> None:
        return None

    def _unload(self) -> None:
        self.slots.clear()
        self._owner = None

    def _unit(self, job: _Job) -> bool:
        self.entered += 1
        # Block until the test allows one unit. A real unit is short: it ends on its own
        # soon after a cancel or close, which is what the worker waits for.
        while not self._allow.acquire(timeout=0.01):
            if self._closing or job.cancel.is_set():
                break
        if not job.started:  # what _start does to the bookkeeping
            job.started = True
            if job.emit is not None:
                self.active_requests += 1
            job.usage.prompt_tokens = 10
        self._owner = job.temp_key
        self.units.append(job.request.persona_id)
        job.steps += 1
        job.usage.generated_tokens += 1
        if job.emit is not None:
            job.emit(f"{job.request.persona_id}{job.steps} ")
        return job.steps < job.request.max_tokens

    async def step(self, n: int = 1) -> None:
        """Let ``n`` more units run and wait until they have."""
        target = len(self.units) + n
        for _ in range(n):
            self._allow.release()
        await self._until(lambda: len(self.units) >= target, f"{target} units")
        await self._settle()

    async def running(self, persona: str) -> None:
        """Wait until ``persona``'s job is queued and the worker has picked its next unit."""

        def queued() -> bool:
            with self._cond:
                return any(j.request.persona_id == persona for j in self._jobs)

        await self._until(queued, f"{persona} queued")
        await self._settle()

    async def _settle(self) -> None:
        """Wait until the worker is blocked inside its next unit, or has nothing to run,
        so that what the test submits next cannot race with its pick."""

        def settled() -> bool:
            with self._cond:
                idle = not self._jobs
            return idle or self.entered > len(self.units)

        await self._until(settled, "the worker to pick a unit")

    @staticmethod
    async def _until(condition: Callable[[], bool], what: str) -> None:
        for _ in range(5000):
            if condition():
                return
            await asyncio.sleep(0.001)
        raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
async def engine() -> AsyncIterator[SteppedEngine]:
    eng = SteppedEngine()
    yield eng
    await eng.close()


def _request(persona: str, max_tokens: int, priority: Priority) -> LLMRequest:
    return LLMRequest(
        persona, [ChatMessage("user", "hi")], max_tokens=max_tokens, priority=PriorityRef(priority)
    )


async def _collect(engine: LlamaEngine, request: LLMRequest, usage: LLMUsage) -> str:
    async with contextlib.aclosing(engine.stream(request, usage)) as deltas:
        return "".join([d async for d in deltas])


async def test_live_job_preempts_a_speculative_one_which_then_resumes(
    engine: SteppedEngine,
) -> None:
    spec = asyncio.create_task(_collect(engine, _request("s", 5, Priority.SPECULATIVE), LLMUsage()))
    await engine.running("s")
    await engine.step(2)  # s ran two units; the worker now waits in its third
    live = asyncio.create_task(_collect(engine, _request("l", 2, Priority.LLM_LIVE), LLMUsage()))
    await engine.running("l")
    await engine.step(5)
    assert await live == "l1 l2 "
    assert await spec == "s1 s2 s3 s4 s5 "
    # The speculative job yields after the unit in progress and resumes where it stopped.
    assert engine.units == ["s", "s", "s", "l", "l", "s", "s"]
    assert engine.preemptions == 1
    assert engine.active_requests == 0


async def test_equal_priorities_run_in_arrival_order(engine: SteppedEngine) -> None:
    first = asyncio.create_task(_collect(engine, _request("a", 3, Priority.LLM_LIVE), LLMUsage()))
    await engine.running("a")
    second = asyncio.create_task(_collect(engine, _request("b", 2, Priority.LLM_LIVE), LLMUsage()))
    await engine.running("b")
    await engine.step(5)
    await asyncio.gather(first, second)
    assert engine.units == ["a", "a", "a", "b", "b"]
    assert engine.preemptions == 0


async def test_promoted_queued_job_goes_first(engine: SteppedEngine) -> None:
    first = asyncio.create_task(
        _collect(engine, _request("a", 3, Priority.SPECULATIVE), LLMUsage())
    )
    await engine.running("a")
    request = _request("b", 2, Priority.SPECULATIVE)
    second = asyncio.create_task(_collect(engine, request, LLMUsage()))
    await engine.running("b")
    request.priority.value = Priority.LLM_LIVE  # its turn was committed
    await engine.step(5)
    await asyncio.gather(first, second)
    assert engine.units == ["a", "b", "b", "a", "a"]
    assert engine.preemptions == 1


async def test_promoted_running_job_is_not_preempted_by_a_later_live_one(
    engine: SteppedEngine,
) -> None:
    request = _request("a", 4, Priority.SPECULATIVE)
    first = asyncio.create_task(_collect(engine, request, LLMUsage()))
    await engine.running("a")
    await engine.step(1)
    request.priority.value = Priority.LLM_LIVE
    second = asyncio.create_task(_collect(engine, _request("b", 2, Priority.LLM_LIVE), LLMUsage()))
    await engine.running("b")
    await engine.step(5)
    await asyncio.gather(first, second)
    assert engine.units == ["a", "a", "a", "a", "b", "b"]
    assert engine.preemptions == 0


async def test_cancelled_queued_job_is_dropped_without_a_unit(engine: SteppedEngine) -> None:
    first = asyncio.create_task(
        _collect(engine, _request("a", 3, Priority.SPECULATIVE), LLMUsage())
    )
    await engine.running("a")
    usage = LLMUsage()
    queued = asyncio.create_task(_collect(engine, _request("b", 3, Priority.SPECULATIVE), usage))
    await engine.running("b")
    queued.cancel()
    await asyncio.sleep(0.02)
    assert not queued.done()  # aclose waits for the worker to let go of it...
    await engine.step(1)  # ...which it does right after the unit in progress
    with pytest.raises(asyncio.CancelledError):
        await queued
    assert engine.dropped_before_start == 1
    assert usage.prompt_tokens == 0  # never tokenized
    await engine.step(2)
    await first
    assert engine.units == ["a", "a", "a"]
    assert engine.slots.slot_keys() == []


async def test_closing_a_running_stream_stops_it_at_the_next_unit(engine: SteppedEngine) -> None:
    usage = LLMUsage()
    seen: list[str] = []

    async def consume() -> None:
        async with contextlib.aclosing(
            engine.stream(_request("a", 50, Priority.LLM_LIVE), usage)
        ) as deltas:
            async for delta in deltas:
                seen.append(delta)
                if len(seen) == 2:
                    break

    task = asyncio.create_task(consume())
    await engine.running("a")
    await engine.step(2)
    await task  # returns once the unit under way when the consumer stopped has ended
    assert engine.active_requests == 0
    assert usage.generated_tokens <= 3
    units = len(engine.units)
    await asyncio.sleep(0.05)
    assert len(engine.units) == units  # no unit after the stream closed
    assert engine.dropped_before_start == 0
    # The finished job's state belongs to its conversation now, not to a job key.
    assert engine._owner == "a"


async def test_calls_run_between_units(engine: SteppedEngine) -> None:
    long = asyncio.create_task(_collect(engine, _request("a", 4, Priority.SPECULATIVE), LLMUsage()))
    await engine.running("a")
    forget = asyncio.create_task(engine.forget_conversation("x"))
    await engine._until(lambda: bool(engine._calls), "the call to be queued")
    await engine.step(1)
    await asyncio.wait_for(forget, timeout=5)  # not behind the whole generation
    assert not long.done()
    await engine.step(3)
    await long


async def test_close_fails_running_and_queued_jobs_and_ends_the_thread() -> None:
    before = set(threading.enumerate())
    engine = SteppedEngine()
    running = asyncio.create_task(
        _collect(engine, _request("a", 50, Priority.LLM_LIVE), LLMUsage())
    )
    await engine.running("a")
    await engine.step(1)
    queued = asyncio.create_task(
        _collect(engine, _request("b", 5, Priority.SPECULATIVE), LLMUsage())
    )
    await engine.running("b")
    await engine.close()
    with pytest.raises(LLMError):
        await running
    with pytest.raises(LLMError):
        await queued
    workers = [t for t in threading.enumerate() if t not in before and t.name == _THREAD_NAME]
    assert workers == []
    with pytest.raises(LLMError):
        await _collect(engine, _request("c", 1, Priority.LLM_LIVE), LLMUsage())
