"""``voxgate bench routes``: what each route by model capability costs, in one run.

No pip package ships a model that hears or speaks, so the LLM here is a fake of such a
server (voxgate.bench.fake_model_server, named so) that answers every request at once
with one sentence, and with a tone as its speech when asked for audio. What differs
between the runs is therefore only what voxgate does around the model: the real VAD,
Whisper tiny.en and Piper on this CPU for the bridges, none of them on the direct
routes. Per route: transcriptions and syntheses per turn, which way each turn went, and
voice-to-voice (the end of the user's speech to the first answer audio at the client)
on the latency bench's real speech.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from aiohttp import web

from voxgate.bench.conversation import build_conversation
from voxgate.bench.fake_model_server import FakeModelServer
from voxgate.bench.harness import serve_engines
from voxgate.bench.latency import median_p95_cell
from voxgate.client.converse import TurnResult, converse
from voxgate.engines import load_default_engines
from voxgate.llm.base import LLMCapabilities
from voxgate.llm.openai_compat import OpenAICompatEngine

REPLY = "That is a good question, and here is a short answer to it."
HEARS, SPEAKS = LLMCapabilities(audio_in=True), LLMCapabilities(audio_out=True)
# (what the model does, session settings over the bench's own)
ROUTES: dict[str, tuple[LLMCapabilities, dict[str, Any]]] = {
    "bridges (STT, TTS)": (LLMCapabilities(), {}),
    "audio_in (no STT on the turn)": (HEARS, {}),
    # The ablation of the captions' words judging the pause: the audio alone decides.
    "audio_in, captions off": (HEARS, {"interim_stt": False}),
    "audio_out (no TTS)": (SPEAKS, {}),
    "audio_in + audio_out": (LLMCapabilities(audio_in=True, audio_out=True), {}),
}


async def run_routes(args: argparse.Namespace) -> dict[str, list[TurnResult]]:
    fake = FakeModelServer(modalities=None, reply=REPLY)
    runner = web.AppRunner(fake.app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print("[routes] loading and warming Whisper, Piper and the VAD...", flush=True)
    trace = Path(args.trace) if args.trace else None
    engines = load_default_engines(llm_url=f"http://127.0.0.1:{port}", trace_path=trace)
    await engines.warm()
    server = await serve_engines(engines)
    audio = [u.audio for u in build_conversation(None, args.turns)]
    runs: dict[str, list[TurnResult]] = {}
    try:
        for name, (capabilities, settings) in ROUTES.items():
            # One server for every run: a new session reads the capabilities it starts with.
            assert isinstance(engines.llm, OpenAICompatEngine)
            engines.llm.capabilities = capabilities
            print(f"[routes] {name}: {len(audio)} turns of real speech...", flush=True)
            # The fake says the same sentence every turn: the reply guard's repeat rule
            # would replace it; what this measures is around the model, so it is off.
            config = {"seed": 20261202, "reply_guard": False, **settings}
            results, _ = await converse(server.url, audio, config=config)
            runs[name] = results
            for n, result in enumerate(results, start=1):
                print(f"[routes]   {name} turn {n}: v2v {result.client_voice_to_voice_ms} ms, "
                      f"routes {result.metrics.get('routes')}", flush=True)  # fmt: skip
    finally:
        await server.close()
        await runner.cleanup()
    return runs


def routes_table(runs: dict[str, list[TurnResult]]) -> str:
    lines = [
        "| route | turns | transcriptions per turn (final ones) | syntheses per turn "
        "| ways taken | client v2v median / p95 | no answer |",
        "| --- | ---: | ---: | ---: | --- | ---: | ---: |",
    ]
    for name, results in runs.items():
        stt = [r.metrics.get("stt_calls", 0) for r in results]
        finals = [r.metrics.get("stt_final_calls", 0) for r in results]
        tts = [r.metrics.get("tts_calls", 0) for r in results]
        ways = Counter(
            ", ".join(f"{k} {v}" for k, v in sorted((r.metrics.get("routes") or {}).items()))
            for r in results
        )
        v2v = [r.client_voice_to_voice_ms for r in results if r.client_voice_to_voice_ms]
        lines.append(
            f"| {name} | {len(results)} | {_mean(stt)} ({_mean(finals)}) | {_mean(tts)} "
            f"| {'; '.join(f'{k}: {v}' for k, v in ways.items())} | {median_p95_cell(v2v)} "
            f"| {sum(r.client_voice_to_voice_ms is None for r in results)} |"
        )
    return "\n".join(lines)


def _mean(values: list[Any]) -> str:
    return f"{statistics.mean(values or [0]):.2f}"


def cli_routes(args: argparse.Namespace) -> int:
    runs = asyncio.run(run_routes(args))
    print()
    print(routes_table(runs))
    silent = sum(r.client_voice_to_voice_ms is None for results in runs.values() for r in results)
    if silent:
        print(f"[routes] {silent} turn(s) produced no answer audio", file=sys.stderr)
        return 1
    return 0
