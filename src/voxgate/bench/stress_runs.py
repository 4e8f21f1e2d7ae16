"""The stress benchmark's runs: N concurrent persona sessions x M typed turns on one Engines.

Fixture runs use the FixedDelay* benchmark fixtures (see ``fixtures.py``); real
runs use the embedded llama.cpp model with the fixture TTS and STT. Each run
materializes N sessions (Session + hello handshake, one after another, as a
server accepts them), then serves M turns per session with all N sessions
talking at once on one event loop.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from voxgate.bench.fixtures import (
    FixedDelayLLM,
    FixedDelaySTT,
    FixedDelayTTS,
    FixtureTiming,
    tokens_to_first_chunk,
)
from voxgate.bench.stress_client import PersonaClient, TurnRecord
from voxgate.bench.stress_personas import make_personas, user_turn
from voxgate.config import SessionConfig
from voxgate.engines import Engines
from voxgate.llm.base import LLMEngine
from voxgate.llm.kv_slots import KVSlotStore
from voxgate.metrics.trace import JsonlTrace
from voxgate.personas.persona import Persona
from voxgate.scheduler import ComputeGate

Progress = Callable[[str], None]
# Short real replies keep the real runs to minutes on 2 cores; the token
# accounting (prefill vs reuse) does not depend on the reply length.
REAL_REPLY_TOKENS = 24


def bench_config() -> SessionConfig:
    """Production defaults, minus filler audio: a filler is not the answer being timed."""
    return SessionConfig(fillers=False)


def fixture_config() -> SessionConfig:
    """For the fixture engines: their one canned reply is not a model's, so the reply
    guard (which would reject it as a repeat from the second turn on) is off."""
    return SessionConfig(fillers=False, reply_guard=False)


def rss_mb(field_name: str = "VmRSS") -> float:
    """Resident memory of this process from /proc (Linux), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


@dataclass(slots=True)
class RunResult:
    kind: str  # "fixture" | "fixture-lockstep" | "real"
    n: int
    m: int
    materialize_ms: float
    serve_wall_ms: float
    cpu_ms: float  # process CPU time over the serve phase, all threads
    listen_wait_ms: float  # mean per session: waiting for replies to finish playing
    records: list[TurnRecord]
    prewarm_ms: float = 0.0
    overhead_ms: list[float] = field(default_factory=list)  # fixture runs, per turn
    slack_ms: list[float] = field(default_factory=list)  # fixture runs, per turn
    stt_calls: int = 0
    rss_mb: float | None = None
    slots: int = 0
    slot_mb: float = 0.0


def _engines(llm: LLMEngine, tts: FixedDelayTTS, stt: FixedDelaySTT, gate: ComputeGate,
             personas: list[Persona], trace: Path) -> Engines:
    return Engines(gate=gate, stt=stt, llm=llm, tts=tts,
                   personas={p.id: p for p in personas}, default_persona=personas[0].id,
                   trace=JsonlTrace(trace))


async def _materialize(engines: Engines, personas: list[Persona],
                       config: SessionConfig) -> tuple[list[PersonaClient], float]:
    started = time.perf_counter()
    clients = []
    for persona in personas:
        client = PersonaClient(engines, persona.id, config)
        await client.handshake()
        clients.append(client)
    return clients, (time.perf_counter() - started) * 1000.0


async def _serve(clients: list[PersonaClient], m: int, progress: Progress,
                 stagger_s: float = 0.0) -> tuple[float, float]:
    """All sessions talk at once, session i starting ``i * stagger_s`` late; returns
    (wall ms, process CPU ms)."""

    async def talk(index: int, client: PersonaClient) -> None:
        await asyncio.sleep(index * stagger_s)
        for turn in range(m):
            await client.turn(user_turn(index, turn))
        progress(f"    {client.persona_id} done: {m} turns")

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(talk(i, c) for i, c in enumerate(clients)))
    return (time.perf_counter() - wall) * 1000.0, (time.process_time() - cpu) * 1000.0


def _fixture_overheads(run: RunResult, llm: FixedDelayLLM, tts: FixedDelayTTS,
                       timing: FixtureTiming, clauses: bool,
                       voices: dict[str, str]) -> None:
    """Per turn: time to first answer audio minus what the fixtures actually slept on it."""
    k = tokens_to_first_chunk(llm.tokens, clauses)
    nominal = timing.critical_path_ms(k)
    for record in run.records:
        if record.first_audio_ms is None:
            continue
        call = next(c for c in llm.calls
                    if c.persona_id == record.persona and c.started >= record.sent)
        voice = voices[record.persona]
        synth = next(c for c in tts.calls if c.voice == voice and c.started >= record.sent)
        slept = sum(call.slept_ms[:k]) + synth.slept_ms
        run.overhead_ms.append(record.first_audio_ms - slept)
        run.slack_ms.append(slept - nominal)


async def fixture_run(n: int, m: int, timing: FixtureTiming, progress: Progress,
                      lockstep: bool = False) -> RunResult:
    """N sessions on the FixedDelay fixtures: what the substrate itself costs.

    Identical fixed delays would keep sessions that start together in lockstep
    for ever, every token of every session landing in the same loop iteration:
    an artificial worst case. Unless ``lockstep``, session starts are spread
    evenly over one reply's duration, as independent users' turns would be.
    """
    config = fixture_config()
    llm, tts, stt = FixedDelayLLM(timing), FixedDelayTTS(timing), FixedDelaySTT()
    personas = make_personas(n, f"f{n}")
    spread_s = 0.0 if lockstep else timing.reply_ms(len(llm.tokens)) / 1000.0 / n
    with tempfile.TemporaryDirectory(prefix="voxgate-stress-") as tmp:
        engines = _engines(llm, tts, stt, ComputeGate(), personas, Path(tmp) / "trace.jsonl")
        clients, materialize_ms = await _materialize(engines, personas, config)
        progress(f"  fixture N={n}: {n} sessions ready in {materialize_ms:.0f} ms; "
                 f"serving {n}x{m} turns")
        try:
            wall_ms, cpu_ms = await _serve(clients, m, lambda _: None, spread_s)
        finally:
            for client in clients:
                await client.close()
    kind = "fixture-lockstep" if lockstep else "fixture"
    run = RunResult(kind, n, m, materialize_ms, wall_ms, cpu_ms, _mean_listen_ms(clients),
                    [r for c in clients for r in c.records],
                    stt_calls=stt.calls)
    _fixture_overheads(run, llm, tts, timing, config.clause_chunking,
                       {p.id: p.voice.name for p in personas})
    return run


@dataclass(slots=True)
class BareTurns:
    """Turns of one session on zero-delay fixtures, one at a time (see ``bare_turns``)."""

    cpu_ms: list[float]  # process CPU per turn
    first_audio_ms: list[float]  # user_text handed over -> first answer audio frame


async def bare_turns(turns: int) -> BareTurns:
    """The substrate alone: one session on zero-delay fixtures, one turn at a time.

    With no fixture sleeping there is no timer wake-up inside a turn, so its CPU
    is the substrate's Python work (plus the fixtures' trivial yields) and its
    time to first audio is the critical path with nothing to wait for. The
    client's playback wait happens between the measured windows.
    """
    timing = FixtureTiming(0.0, 0.0, 0.0)
    personas = make_personas(1, "bare")
    cpu: list[float] = []
    first: list[float] = []
    with tempfile.TemporaryDirectory(prefix="voxgate-stress-") as tmp:
        engines = _engines(FixedDelayLLM(timing), FixedDelayTTS(timing), FixedDelaySTT(),
                           ComputeGate(), personas, Path(tmp) / "trace.jsonl")
        (client,), _ = await _materialize(engines, personas, fixture_config())
        try:
            for turn in range(turns + 1):
                await client.listen()
                started = time.process_time()
                record = await client.turn(user_turn(0, turn))
                if turn and record.first_audio_ms is not None:  # turn 0 pays one-off costs
                    cpu.append((time.process_time() - started) * 1000.0)
                    first.append(record.first_audio_ms)
        finally:
            await client.close()
    return BareTurns(cpu, first)


def timer_wakeup_cpu_us(samples: int = 40) -> float:
    """CPU a process is charged per idle timer wake-up of the event loop (high on some VMs)."""

    async def sleeps() -> float:
        started = time.process_time()
        for _ in range(samples):
            await asyncio.sleep(0.005)
        return (time.process_time() - started) * 1e6 / samples

    return asyncio.run(sleeps())


def _mean_listen_ms(clients: list[PersonaClient]) -> float:
    return 1000.0 * sum(c.listen_wait_s for c in clients) / max(len(clients), 1)


@dataclass(slots=True)
class RealModel:
    """The one real LLM shared by every real run, with the fixture TTS and STT."""

    llm: Any  # LlamaEngine; Any keeps llama_cpp out of the fixture-only import path
    gate: ComputeGate
    timing: FixtureTiming
    load_ms: float
    rss_loaded_mb: float
    trace_dir: Path

    def engines(self, personas: list[Persona]) -> Engines:
        tts, stt = FixedDelayTTS(self.timing), FixedDelaySTT()
        return _engines(self.llm, tts, stt, self.gate, personas, self.trace_dir / "trace.jsonl")


async def load_real_model(timing: FixtureTiming, trace_dir: Path) -> RealModel:
    from voxgate.llm.llama_engine import LlamaEngine
    from voxgate.models.assets import llm_model_path

    gate = ComputeGate()
    llm = LlamaEngine(gate, llm_model_path())
    started = time.perf_counter()
    await llm.warm()
    return RealModel(llm, gate, timing, (time.perf_counter() - started) * 1000.0, rss_mb(),
                     trace_dir)


async def real_run(model: RealModel, n: int, m: int, progress: Progress) -> RunResult:
    """N sessions on the real model: prompt reuse, queueing on one model, memory."""
    model.llm.slots.clear()  # each N starts with only its own personas' slots
    personas = make_personas(n, f"r{n}", max_reply_tokens=REAL_REPLY_TOKENS)
    engines = model.engines(personas)
    started = time.perf_counter()
    await engines.prewarm_personas()  # what the server does at start-up
    prewarm_ms = (time.perf_counter() - started) * 1000.0
    clients, materialize_ms = await _materialize(engines, personas, bench_config())
    progress(f"  real N={n}: {n} slots prewarmed in {prewarm_ms:.0f} ms, sessions ready in "
             f"{materialize_ms:.0f} ms; serving {n}x{m} turns")
    try:
        wall_ms, cpu_ms = await _serve(clients, m, progress)
        rss = rss_mb()  # every persona has done its turns: model + N slots + N sessions
    finally:
        for client in clients:
            await client.close()
    # This run's slots only: the previous run's last persona is saved once more on
    # the first switch after the clear (a few MB, inside the RSS figure).
    slots: KVSlotStore = model.llm.slots
    lru_order = slots.slot_keys()  # a list copy: get() below reorders the store
    own = [slot for key in lru_order if key.startswith(f"r{n}-")
           and (slot := slots.get(key)) is not None]
    return RunResult("real", n, m, materialize_ms, wall_ms, cpu_ms, _mean_listen_ms(clients),
                     [r for c in clients for r in c.records], prewarm_ms=prewarm_ms,
                     rss_mb=rss, slots=len(own), slot_mb=sum(s.nbytes for s in own) / 2**20)


# One persona warms up, then the other; then pairs, so every measured turn is
# either a switch (the other persona ran last) or the same persona again.
SWITCH_SEQUENCE = "AB" + "AABB" * 3


@dataclass(slots=True)
class SwitchTurn:
    persona: str  # "A" | "B"
    kind: str  # "warm-up" | "same" | "switch"
    record: TurnRecord


async def switch_probe(model: RealModel, progress: Progress) -> list[SwitchTurn]:
    """Two personas, one turn at a time (no queueing): TTFT on a switch vs the same persona."""
    personas = make_personas(2, "sw", max_reply_tokens=REAL_REPLY_TOKENS)
    engines = model.engines(personas)
    await engines.prewarm_personas()
    clients, _ = await _materialize(engines, personas, bench_config())
    by_letter = dict(zip("AB", clients, strict=True))
    progress(f"  switch probe: sequence {' '.join(SWITCH_SEQUENCE)}")
    turns: list[SwitchTurn] = []
    seen: set[str] = set()
    previous = None
    try:
        for letter in SWITCH_SEQUENCE:
            client = by_letter[letter]
            record = await client.turn(user_turn(len(turns), len(client.records)))
            kind = ("warm-up" if letter not in seen
                    else "same" if letter == previous else "switch")
            seen.add(letter)
            previous = letter
            turns.append(SwitchTurn(letter, kind, record))
    finally:
        for client in clients:
            await client.close()
    return turns
