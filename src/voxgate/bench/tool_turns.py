"""``voxgate bench latency --tools``: voice-to-voice of tool turns, beside plain turns of the
same run.

Ada gets two tools: the built-in clock (instant) and a weather lookup that answers after
800 ms, a stand-in for a web API (there is no network here); both are called on the
user's words. Three kinds of spoken question take turns in one session: plain (no tool),
clock and lookup. The questions are spoken by Piper (no recordings of them ship), and the
server hears them through the VAD, the endpointer and Whisper like any speech.

Per kind: speech end -> the holding line's first audio (said when a tool runs past
300 ms), and speech end -> the answer's first audio, both on the client's clock (the
holding line and fillers are flagged on the wire, so they never count as the answer).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import re
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from voxgate.audio.pcm import FloatArray, resample
from voxgate.bench.harness import start_bench_server
from voxgate.bench.latency import P95_MIN_TURNS, median_p95_cell
from voxgate.client.converse import RATE, TurnResult, converse
from voxgate.engines import Engines
from voxgate.tools.registry import tool_from_function

LOOKUP_DELAY_S = 0.8
QUESTIONS: dict[str, tuple[str, ...]] = {
    "plain": (
        "Tell me something interesting about the moon.",
        "How do bees make honey?",
        "What is a good name for a cat?",
    ),
    "clock": (
        "What time is it?",
        "What day of the week is it today?",
        "Can you tell me the date?",
    ),
    "lookup": (
        "What's the weather like in Paris?",
        "How is the weather in Oslo today?",
        "Tell me the weather in Rome.",
    ),
}
TOOL_OF = {"plain": None, "clock": "current_time", "lookup": "weather"}


async def weather(city: str) -> str:
    """The current weather in a city.

    Args:
        city: the city's name.
    """
    await asyncio.sleep(LOOKUP_DELAY_S)  # a web API's round trip, simulated
    return f"Cloudy and 12 degrees Celsius in {city}."


def _city(asked: str) -> dict[str, Any] | None:
    match = re.search(r"\bin ([A-Z][a-z]+)", asked)
    return {"city": match.group(1) if match else "here"}


def give_ada_tools(engines: Engines) -> None:
    ada = engines.personas["ada"]
    engines.personas["ada"] = dataclasses.replace(ada, tools=("current_time",))
    lookup = dataclasses.replace(
        tool_from_function(weather),
        intent=re.compile(r"\bweather\b", re.IGNORECASE),
        intent_arguments=_city,
    )
    engines.add_tools("ada", lookup)


async def spoken_questions(engines: Engines) -> dict[str, list[FloatArray]]:
    """Each question spoken by the server's own Piper voice, at 16 kHz, after 300 ms of quiet."""
    from voxgate.personas.persona import VoiceSpec
    from voxgate.scheduler import Priority

    lead = np.zeros(RATE * 3 // 10, dtype=np.float32)
    spoken: dict[str, list[FloatArray]] = {}
    for kind, questions in QUESTIONS.items():
        spoken[kind] = []
        for text in questions:
            audio = await engines.tts.synthesize(text, VoiceSpec(), Priority.SPECULATIVE)
            voice = resample(audio.astype(np.float32) / 32768.0, engines.tts.sample_rate, RATE)
            spoken[kind].append(np.concatenate([lead, voice]))
    return spoken


@dataclass
class ToolTurn:
    kind: str
    question: str
    transcript: str
    reply: str
    called: list[str]  # tools called in the turn
    first_sound_ms: float | None  # client: speech end -> any first audio (filler, holding)
    holding_ms: float | None  # server: speech end -> the holding line's first audio sent
    answer_ms: float | None  # client: speech end -> first answer audio
    server_answer_ms: float | None


def _turn_row(
    kind: str, question: str, result: TurnResult, events: list[dict[str, Any]]
) -> ToolTurn:
    turns = set(result.server_turns)
    called = [
        str(e.get("name"))
        for e in events
        if e.get("type") == "tool" and e.get("outcome") == "started" and e.get("turn") in turns
    ]
    durations = result.metrics.get("durations", {})
    first = result.first_audio_wall
    return ToolTurn(
        kind=kind,
        question=question,
        transcript=result.transcript,
        reply=result.reply.strip(),
        called=called,
        first_sound_ms=None if first is None else (first - result.speech_end_wall) * 1000.0,
        holding_ms=durations.get("holding_line"),
        answer_ms=result.client_voice_to_voice_ms,
        server_answer_ms=durations.get("voice_to_voice"),
    )


async def run(args: argparse.Namespace) -> list[ToolTurn]:
    server = await start_bench_server("tools", args.trace, model=args.model, prepare=give_ada_tools)
    try:
        spoken = await spoken_questions(server.engines)
        kinds = list(QUESTIONS)
        plan = [(kinds[i % 3], (i // 3) % len(QUESTIONS[kinds[i % 3]])) for i in range(args.turns)]
        audio = [spoken[kind][n] for kind, n in plan]
        print(f"[bench] tool turns: {len(plan)} spoken questions in one session...", flush=True)
        results, client = await converse(server.url, audio, config={"seed": 20261201})
    finally:
        await server.close()
    rows = []
    for (kind, n), result in zip(plan, results, strict=True):
        row = _turn_row(kind, QUESTIONS[kind][n], result, client.events)
        rows.append(row)
        print(f"[bench]   {kind:<6} heard {row.transcript!r}: tools {row.called or '-'}, "
              f"holding {row.holding_ms} ms, answer {row.answer_ms} ms -> {row.reply[:50]!r}",
              flush=True)  # fmt: skip
    return rows


def table(rows: list[ToolTurn]) -> str:
    lines = [
        "| kind | turns | its tool called | holding line said | speech end → first sound "
        "| → holding line (server) | → answer audio | → answer (server) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for kind, tool in TOOL_OF.items():
        turns = [r for r in rows if r.kind == kind]
        if not turns:
            continue
        called = "—" if tool is None else f"{sum(tool in r.called for r in turns)}/{len(turns)}"
        if tool is None:
            called = f"none {sum(not r.called for r in turns)}/{len(turns)}"
        said = sum(r.holding_ms is not None for r in turns)
        lines.append(
            f"| {kind} | {len(turns)} | {called} | {said}/{len(turns)} "
            f"| {median_p95_cell([r.first_sound_ms for r in turns])} "
            f"| {median_p95_cell([r.holding_ms for r in turns])} "
            f"| {median_p95_cell([r.answer_ms for r in turns])} "
            f"| {median_p95_cell([r.server_answer_ms for r in turns])} |"
        )
    lines.append("")
    lines.append(
        f"ms, median (and p95 from {P95_MIN_TURNS} turns of a kind), on the client's clock "
        "unless marked server (the server's audio clock). First sound: a filler, the holding "
        f"line or the answer. The lookup is a stand-in that answers after "
        f"{LOOKUP_DELAY_S * 1000:.0f} ms."
    )
    return "\n".join(lines)


def cli_tool_turns(args: argparse.Namespace) -> int:
    rows = asyncio.run(run(args))
    print()
    print(table(rows))
    silent = [r for r in rows if r.answer_ms is None]
    if silent:
        print(f"[bench] {len(silent)} turn(s) produced no answer audio", file=sys.stderr)
        return 1
    return 0
