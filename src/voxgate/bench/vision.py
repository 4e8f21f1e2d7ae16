"""``voxgate bench vision``: what the camera costs.

1. Frame -> description, per part of the offline bridge (decode and shrink, colours and
   brightness, object names by the ImageNet classifier, text recognition), on frames
   made here: signs with a word on a coloured board, at 640x480, each with its own seed.
   Median and p95, and how many words OCR read.
2. Voice-to-voice with the camera on and off, in one run on one server: the latency
   bench's real speech with no camera, with a frame a second of one unchanging view, and
   with a frame a second of a new view each time (the frames above, in turn: every frame
   is described and its text read again). Also per turn: transcriptions and syntheses,
   and which route the camera took.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import random
import statistics
import sys
import time
from collections import Counter
from typing import Any

from voxgate.bench.conversation import build_conversation
from voxgate.bench.harness import start_bench_server
from voxgate.bench.latency import median_p95_cell
from voxgate.client.converse import converse
from voxgate.vision import classifier, ocr
from voxgate.vision.scene import describe_scene, load_frame

WORDS = ("EXIT", "PLATFORM 4", "OPEN", "COFFEE", "NO PARKING", "GATE B12", "PHARMACY",
         "STOP", "LIBRARY", "SALE 50%", "TICKETS", "ROOM 101")  # fmt: skip


def frames(count: int, seed: int = 20261202) -> list[tuple[str, bytes]]:
    """(the word on it, a 640x480 JPEG): a sign on a coloured board, with some noise."""
    from PIL import Image, ImageDraw, ImageFilter, ImageFont

    rng = random.Random(seed)
    made = []
    for n in range(count):
        word = WORDS[n % len(WORDS)]
        board = tuple(rng.randrange(40, 256) for _ in range(3))
        image = Image.new("RGB", (640, 480), board)  # type: ignore[arg-type]
        draw = ImageDraw.Draw(image)
        for _ in range(12):  # clutter: shapes of other colours
            x, y = rng.randrange(640), rng.randrange(480)
            colour = tuple(rng.randrange(256) for _ in range(3))
            draw.ellipse((x, y, x + rng.randrange(20, 120), y + rng.randrange(20, 120)),
                         fill=colour)  # type: ignore[arg-type]  # fmt: skip
        draw.rectangle((60, 170, 580, 310), fill="white")
        font = ImageFont.load_default(size=rng.randrange(48, 72))
        draw.text((90, 200), word, fill="black", font=font)
        image = image.filter(ImageFilter.GaussianBlur(0.8))  # a camera is never sharp
        out = io.BytesIO()
        image.save(out, "JPEG", quality=80)
        made.append((word, out.getvalue()))
    return made


def bridge_parts(made: list[tuple[str, bytes]]) -> tuple[dict[str, list[float]], int]:
    """Per part, ms per frame; and how many frames' words OCR read back."""
    parts: dict[str, list[float]] = {"decode": [], "scene": [], "classify": [], "ocr": []}
    read = 0
    if ocr.available():
        ocr.read_text(load_frame(made[0][1]))  # load the models before timing
    classifier.warm()
    for word, data in made:
        started = time.perf_counter()
        image = load_frame(data)
        parts["decode"].append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        describe_scene(image)
        parts["scene"].append((time.perf_counter() - started) * 1000)
        if classifier.available():
            started = time.perf_counter()
            classifier.classify(image)  # type: ignore[arg-type]  # a PIL image
            parts["classify"].append((time.perf_counter() - started) * 1000)
        if ocr.available():
            started = time.perf_counter()
            lines = ocr.read_text(image)
            parts["ocr"].append((time.perf_counter() - started) * 1000)
            squeezed = " ".join(lines).upper().replace(" ", "")
            read += word.replace(" ", "") in squeezed
    return parts, read


async def camera_on_off(args: argparse.Namespace, jpegs: list[bytes]) -> dict[str, Any]:
    conversation = build_conversation(None, args.turns)
    audio = [u.audio for u in conversation]
    server = await start_bench_server("vision", args.trace, model=args.model)
    runs: dict[str, Any] = {}
    try:
        for name, camera in (
            ("camera off", ()),
            ("camera on, one view", jpegs[:1]),  # a camera on a desk: the same scene
            ("camera on, a new view every second", jpegs),  # the worst case
        ):
            print(f"[bench] {name}: {len(audio)} turns of real speech...", flush=True)
            results, client = await converse(
                server.url, audio, config={"seed": 20261201}, camera=camera
            )
            runs[name] = (results, client)
            for n, result in enumerate(results, start=1):
                print(f"[bench]   {name} turn {n}: v2v {result.client_voice_to_voice_ms} ms, "
                      f"routes {result.metrics.get('routes')}", flush=True)  # fmt: skip
    finally:
        await server.close()
    return runs


def on_off_table(runs: dict[str, Any]) -> str:
    lines = [
        "| run | turns | client v2v median / p95 | transcriptions per turn | syntheses per turn "
        "| camera route | frames described | no answer |",
        "| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: |",
    ]
    for name, (results, client) in runs.items():
        v2v = [r.client_voice_to_voice_ms for r in results if r.client_voice_to_voice_ms]
        stt = [r.metrics.get("stt_calls", 0) for r in results]
        tts = [r.metrics.get("tts_calls", 0) for r in results]
        routes = Counter(
            str((r.metrics.get("routes") or {}).get("camera", "none")) for r in results
        )
        described = sum(1 for e in client.events if e.get("type") == "camera")
        lines.append(
            f"| {name} | {len(results)} | {median_p95_cell(v2v)} "
            f"| {statistics.mean(stt or [0]):.2f} "
            f"| {statistics.mean(tts or [0]):.2f} "
            f"| {', '.join(f'{k} {v}' for k, v in sorted(routes.items()))} | {described} "
            f"| {sum(r.client_voice_to_voice_ms is None for r in results)} |"
        )
    return "\n".join(lines)


def cli_vision(args: argparse.Namespace) -> int:
    made = frames(args.frames)
    parts, read = bridge_parts(made)
    print()
    print("| bridge part | ms per frame, median / p95 |")
    print("| --- | ---: |")
    for part, values in parts.items():
        print(f"| {part} | {median_p95_cell(values, digits=1)} |")
    quick = [p for name, p in parts.items() if p and name != "ocr"]
    path = [sum(v) for v in zip(*quick, strict=True)]
    print(f"| frame → description, the classifier path (no OCR) | "
          f"{median_p95_cell(path, digits=1)} |")  # fmt: skip
    total = [sum(v) for v in zip(*(p for p in parts.values() if p), strict=True)]
    print(f"| frame → description, all parts | {median_p95_cell(total, digits=1)} |")
    if ocr.available():
        print(f"\nOCR read the sign's word on {read} of {len(made)} frames.")
    else:
        print("\nOCR is not installed (pip install 'voxgate[vision]'): no text is read.")
    if args.frames_only:
        return 0
    runs = asyncio.run(camera_on_off(args, [data for _, data in made]))
    print()
    print(on_off_table(runs))
    silent = sum(
        r.client_voice_to_voice_ms is None for results, _ in runs.values() for r in results
    )
    if silent:
        print(f"[bench] {silent} turn(s) produced no answer audio", file=sys.stderr)
        return 1
    return 0
