"""``voxgate bench barge-in``: does the server itself stop talking when the user talks over it?

A client that ignores ``interrupted`` (a phone bridge, a simple SDK) plays
whatever it receives. This benchmark plays such a client: each next
utterance starts ``--after-ms`` after the reply's first audio, over the
reply, and the client keeps collecting audio after ``interrupted``. The
figure is the last reply audio frame's arrival after the user's speech
started: what that client would keep playing comes on top of it only by the
output lead.

Three settings run in one process, on the same speech, one lever off at a
time: the defaults (paced output, held at speech start), no hold (the audio
stops only at the interruption, ``interrupt_min_ms`` of speech later), and
no pacing either (a lead of 60 s: the whole reply is sent as soon as it is
synthesized, as before turn engine v2).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
from pathlib import Path

from voxgate.bench.conversation import build_conversation
from voxgate.bench.harness import start_bench_server
from voxgate.bench.latency import percentile
from voxgate.client.converse import TurnResult, converse
from voxgate.config import SessionConfig

SETTINGS: list[tuple[str, SessionConfig]] = [
    ("paced + hold (default)", SessionConfig(fillers=False)),
    ("paced, no hold", SessionConfig(fillers=False, hold_on_speech=False)),
    ("no pacing, no hold", SessionConfig(fillers=False, hold_on_speech=False,
                                         output_lead_ms=60000)),
]  # fmt: skip


async def run(args: argparse.Namespace) -> dict[str, list[TurnResult]]:
    server = await start_bench_server("barge-in", args.trace)
    conversation = build_conversation(
        Path(args.speech_dir) if args.speech_dir else None, args.turns + 1
    )
    results: dict[str, list[TurnResult]] = {}
    try:
        for name, config in SETTINGS:
            print(f"[bench] {name}: {args.turns} barge-ins, real speech in real time", flush=True)
            turns, _ = await converse(
                server.url,
                [u.audio for u in conversation],
                config=config.model_dump(),
                barge_in_after_s=args.after_ms / 1000,
                ignore_interrupted=True,
            )
            results[name] = turns
            for t in turns[:-1]:
                print(
                    f"[bench]   turn {t.index}: spoken over {t.spoke_over}, interrupted "
                    f"{t.interrupted}, last audio {t.last_audio_after_barge_in_ms} ms after "
                    f"the user started, reply audio {len(t.reply_audio) / 2 / 22.05:.0f} ms",
                    flush=True,
                )
    finally:
        await server.close()
    return results


def cli_bargein(args: argparse.Namespace) -> int:
    results = asyncio.run(run(args))
    print()
    print("| setting | barged-in turns | last audio after speech start: median | p95 | max |")
    print("| --- | ---: | ---: | ---: | ---: |")
    unanswered = 0
    for name, turns in results.items():
        unanswered += sum(t.first_audio_wall is None for t in turns)
        lags = [
            t.last_audio_after_barge_in_ms
            for t in turns
            if t.last_audio_after_barge_in_ms is not None
        ]
        if not lags:
            print(f"| {name} | 0 | - | - | - |")
            continue
        p95 = f"{percentile(lags, 95):.0f}" if len(lags) >= 20 else "(n<20)"
        print(
            f"| {name} | {len(lags)} | {statistics.median(lags):.0f} ms | {p95} | "
            f"{max(lags):.0f} ms |"
        )
    if unanswered:
        print(f"[bench] {unanswered} turn(s) produced no answer audio", file=sys.stderr)
        return 1
    return 0
