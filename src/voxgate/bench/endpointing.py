"""``voxgate bench endpointing``: the text heuristic vs Smart Turn v3.2 on labelled pauses.

Every pause is a cut in an utterance at a word boundary, followed by
``trail_ms`` of pause (real room noise where the speaker really paused,
else the recording's own noise floor): the audio the endpointer has when
it must choose between the minimum and the maximum delay.

How pauses are labelled. Each utterance has a reference text with
punctuation. Candidate cuts are every end of speech the VAD hears (followed
by >= 96 ms of silence) and every local minimum of the 20 ms energy inside
speech. For each candidate, Whisper transcribes the audio AFTER the cut with
the whole rest of the utterance as context; the cut lies before reference
word j when that transcript starts with word j and matches the rest of the
reference. A candidate whose remainder starts with a fragment is not at a
word boundary and is dropped; so is one before any speech. Of the candidates
for the same boundary, a VAD silence wins, else the quietest. The end of the
utterance is where the VAD hears its speech end, with nothing of the
reference after it. A cut after a word that ends a sentence in the reference
(``.``, ``?``, ``!``) or after the last word is a finished turn; any other
boundary is a pause inside the utterance. (Whisper's word timestamps were
tried first: with tiny.en most boundaries inside speech came out a word off.)

The references of the real speech are the published text (Beckett) and
Whisper's full-context transcript checked by hand (clone-test); the
synthetic utterances (Piper, voice joe, sentences joined by 300 ms) are
spoken from their reference. Piper samples noise, so the synthetic audio
and its rows differ a little from run to run.

Per pause the benchmark runs what voxgate would: Whisper tiny.en (beam 1,
English, ``WhisperSTT``'s settings) on the turn so far, then
``looks_complete`` on that transcript; and Smart Turn on the same audio.
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from voxgate.audio.pcm import FloatArray, resample
from voxgate.audio.wav import read_wav
from voxgate.bench.conversation import default_speech_dir, speech_segments
from voxgate.turns.endpointing import PAUSE_MS, looks_complete

if TYPE_CHECKING:
    from voxgate.turns.smart_turn import SmartTurn

RATE = 16000
TRAIL_MS = 200  # silence after the cut that both verdicts hear
FRAME = RATE // 50  # 20 ms

# References of the real speech in tests/data. beckett.wav reads Beckett's "Worstward Ho"
# (1983): the published punctuation, six two-word sentences (Whisper hears two of the
# periods as commas). clone-test.wav: Whisper's full-context transcript, checked by hand.
# The file goes on after the sentence with the onset of an "um" (3.45 s to its end,
# cut off there); the benchmark takes the sentence without it.
BECKETT_REFERENCE = "Ever tried. Ever failed. No matter. Try again. Fail again. Fail better."
CLONE_REFERENCE = "I do. I think that America do it very well."
CLONE_END_S = 3.45

# Synthetic user turns, spoken by Piper: sentence ends, clauses, dangling words.
SYNTHETIC_TEXTS = (
    "Can you book a table for two at seven tonight? We would like to sit by the window.",
    "I was thinking about the trip to Lisbon, and maybe we should take the train instead.",
    "My sister is coming to visit next week. She wants to see the old harbor.",
    "What is the weather going to be like tomorrow morning?",
    "Remind me to call the dentist when I get home from work.",
    "I finished the report. Could you send it to the whole team before lunch?",
    "The meeting moved to Thursday because half of the people were traveling.",
    "Tell me a short story about a fox who learns to fly.",
    "Thanks, that was helpful. What time does the museum open on Sunday?",
    "Okay. Let's do it.",
    "Play some jazz. Not too loud, please.",
    "I'm not sure. Maybe tomorrow.",
)
_SENTENCE_GAP_S = 0.3  # pause Piper's sentences are joined with


@dataclass(frozen=True, slots=True)
class Cut:
    words: int  # reference words before the cut
    sample: int  # where speech stops, in the source audio
    finished: bool  # the label
    prefix: str  # the reference text up to the cut
    gap_ms: float  # silence the VAD hears at the cut in the source (to the file's end: last word)


@dataclass(frozen=True, slots=True)
class Source:
    name: str
    audio: FloatArray  # 16 kHz mono
    reference: str
    synthetic: bool


@dataclass(frozen=True, slots=True)
class Pause:
    source: str
    synthetic: bool
    cut: Cut
    audio: FloatArray  # the turn so far: speech up to the cut, then trail_ms of pause


@dataclass(slots=True)
class Row:
    source: str
    synthetic: bool
    words: int
    prefix: str
    finished: bool
    gap_ms: float
    audio_s: float
    transcript: str
    text_complete: bool
    smart_prob: float
    whisper_ms: float
    smart_ms: float


# --------------------------------------------------------------------------- labelling


def _norm(word: str) -> str:
    return re.sub(r"[^a-z0-9']", "", word.lower())


def ends_sentence(word: str) -> bool:
    return word.rstrip("\"')”’").endswith((".", "?", "!"))


def speech_gaps(segments: Sequence[tuple[int, int]], total: int) -> list[tuple[int, int]]:
    """(start, end) samples of every silence between and after the VAD's speech segments."""
    ends = [nxt for nxt, _ in segments[1:]] + [total]
    return [(end, nxt) for (_, end), nxt in zip(segments, ends, strict=True)]


def _energy(audio: FloatArray, centres: Sequence[int]) -> FloatArray:
    half = FRAME // 2
    padded = np.pad(audio, half)
    return np.array([float(np.mean(np.square(padded[c : c + FRAME]))) for c in centres])


def candidates(
    audio: FloatArray, segments: Sequence[tuple[int, int]]
) -> list[tuple[int, float, bool]]:
    """(sample, energy, followed by a VAD silence) for every place a cut may go."""
    out = [(start, 0.0, True) for start, _ in speech_gaps(segments, len(audio))]
    hop = FRAME // 2
    for start, end in segments:
        centres = range(start + 4 * hop, end - 2 * hop, hop)
        if len(centres) < 3:
            continue
        energy = _energy(audio, centres)
        for k in range(1, len(centres) - 1):
            window = energy[max(0, k - 6) : k + 7]  # a minimum over +-60 ms
            if energy[k] == window.min():
                out.append((centres[k], float(energy[k]), False))
    return sorted(out)


def locate(reference: Sequence[str], heard_after: Sequence[str]) -> int | None:
    """How many reference words come before a cut, judged by what Whisper hears after it.

    None when the first word heard is not a reference word (the cut splits a
    word) or the rest does not match the reference's tail.
    """
    ref = [_norm(w) for w in reference]
    heard = [w for w in (_norm(x) for x in heard_after) if w]
    if not heard:
        return len(ref)
    blocks = [
        b
        for b in difflib.SequenceMatcher(a=ref, b=heard, autojunk=False).get_matching_blocks()
        if b.size
    ]
    if not blocks or blocks[0].b != 0:
        return None
    j = blocks[0].a
    tail = len(ref) - j
    if sum(b.size for b in blocks) < 0.75 * tail or len(heard) > tail + 1:
        return None
    return j


def label_cuts(
    reference: str,
    audio: FloatArray,
    segments: Sequence[tuple[int, int]],
    heard_after: Callable[[int], Sequence[str]],
) -> list[Cut]:
    """One cut per reference word boundary found, labelled by the reference's punctuation.

    ``heard_after(sample)`` are the words Whisper hears from ``sample`` to the end.
    """
    words = reference.split()
    gaps = dict(speech_gaps(segments, len(audio)))
    best: dict[int, tuple[int, float, bool]] = {}
    for sample, energy, is_gap in candidates(audio, segments):
        j = locate(words, heard_after(sample))
        if j is None or j == 0 or (j == len(words) and not is_gap):
            continue
        kept = best.get(j)
        # The end of the utterance: its first speech end. Elsewhere a silence, else the quietest.
        if kept is None or (j < len(words) and (is_gap, -energy) > (kept[2], -kept[1])):
            best[j] = (sample, energy, is_gap)
    cuts = []
    for j in sorted(best):
        sample, _, is_gap = best[j]
        gap_ms = (gaps[sample] - sample) * 1000 / RATE if is_gap else 0.0
        finished = j == len(words) or ends_sentence(words[j - 1])
        cuts.append(Cut(j, sample, finished, " ".join(words[:j]), round(gap_ms, 1)))
    return cuts


def noise_floor(audio: FloatArray, samples: int) -> FloatArray:
    """The quietest stretch of ``samples`` in the recording: its own room noise."""
    if len(audio) <= samples:
        return np.zeros(samples, dtype=np.float32)
    hop = FRAME
    starts = range(0, len(audio) - samples, hop)
    best = min(starts, key=lambda s: float(np.mean(np.square(audio[s : s + samples]))))
    return np.asarray(audio[best : best + samples], dtype=np.float32)


def pause_audio(audio: FloatArray, cut: Cut, trail_ms: int, filler: FloatArray) -> FloatArray:
    """Speech up to the cut, then ``trail_ms`` of pause: the real one as far as it goes."""
    trail = RATE * trail_ms // 1000
    real = min(trail, int(cut.gap_ms * RATE / 1000), len(audio) - cut.sample)
    parts = [audio[: cut.sample + real], filler[: trail - real]]
    return np.concatenate(parts).astype(np.float32)


def pauses_of(source: Source, whisper: Whisper, trail_ms: int) -> list[Pause]:
    segments = speech_segments(source.audio, min_gap_ms=PAUSE_MS)
    filler = noise_floor(source.audio, RATE * trail_ms // 1000)

    speech_end = segments[-1][1] if segments else 0

    def heard_after(sample: int) -> list[str]:
        if sample >= speech_end:
            return []  # the VAD hears no more speech (Whisper would make some up)
        return whisper.transcribe(source.audio[sample:]).split()

    return [
        Pause(source.name, source.synthetic, cut, pause_audio(source.audio, cut, trail_ms, filler))
        for cut in label_cuts(source.reference, source.audio, segments, heard_after)
    ]


# --------------------------------------------------------------------------- sources


def real_sources(speech_dir: Path | None = None) -> list[Source]:
    directory = speech_dir or default_speech_dir()
    return [
        Source("beckett", read_wav(directory / "beckett.wav", RATE)[0], BECKETT_REFERENCE, False),
        Source(
            "clone-test",
            read_wav(directory / "clone-test.wav", RATE)[0][: int(CLONE_END_S * RATE)],
            CLONE_REFERENCE,
            False,
        ),
    ]


def synthetic_sources(texts: Sequence[str] = SYNTHETIC_TEXTS) -> list[Source]:
    """Each text spoken by Piper (voice joe), sentences joined by a short pause."""
    from piper.voice import PiperVoice

    from voxgate.models.assets import piper_voice_paths

    model, config = piper_voice_paths()
    voice = PiperVoice.load(str(model), config_path=str(config))
    lead = np.zeros(RATE * 3 // 10, dtype=np.float32)
    sources = []
    for n, text in enumerate(texts, start=1):
        parts: list[FloatArray] = [lead]
        for chunk in voice.synthesize(text):
            speech = chunk.audio_int16_array.astype(np.float32) / 32768.0
            parts += [
                resample(speech, chunk.sample_rate, RATE),
                np.zeros(int(RATE * _SENTENCE_GAP_S), dtype=np.float32),
            ]
        sources.append(Source(f"piper-{n}", np.concatenate(parts), text, True))
    return sources


class Whisper:
    """Whisper tiny.en as voxgate runs it, on one thread (the machine is shared)."""

    def __init__(self, threads: int = 1) -> None:
        from faster_whisper import WhisperModel

        from voxgate.models.assets import whisper_model_dir

        self._model = WhisperModel(
            str(whisper_model_dir()), device="cpu", compute_type="int8", cpu_threads=threads
        )

    def transcribe(self, audio: FloatArray) -> str:
        """Exactly WhisperSTT's final decode."""
        segments, _ = self._model.transcribe(
            audio, language="en", beam_size=1, without_timestamps=True,
            condition_on_previous_text=False, vad_filter=False,
        )  # fmt: skip
        return " ".join("".join(s.text for s in segments).split())


def build_pauses(
    whisper: Whisper,
    synthetic: bool = True,
    trail_ms: int = TRAIL_MS,
    speech_dir: Path | None = None,
) -> list[Pause]:
    sources = real_sources(speech_dir) + (synthetic_sources() if synthetic else [])
    return [p for s in sources for p in pauses_of(s, whisper, trail_ms)]


# --------------------------------------------------------------------------- evaluation


def evaluate(pauses: Sequence[Pause], whisper: Whisper, smart: SmartTurn) -> list[Row]:
    rows = []
    for pause in pauses:
        t0 = time.perf_counter()
        transcript = whisper.transcribe(pause.audio)
        complete = looks_complete(transcript)
        t1 = time.perf_counter()
        prob = smart.predict(pause.audio)
        t2 = time.perf_counter()
        rows.append(Row(
            pause.source, pause.synthetic, pause.cut.words, pause.cut.prefix, pause.cut.finished,
            pause.cut.gap_ms, round(len(pause.audio) / RATE, 3), transcript, complete,
            round(prob, 4), round((t1 - t0) * 1000, 1), round((t2 - t1) * 1000, 1),
        ))  # fmt: skip
    return rows


@dataclass(frozen=True, slots=True)
class Method:
    name: str
    complete: Callable[[Row], bool]
    cost_ms: Callable[[Row], float]


def methods(threshold: float = 0.5) -> list[Method]:
    def text(r: Row) -> bool:
        return r.text_complete

    def smart(r: Row) -> bool:
        return r.smart_prob > threshold

    def both_ms(r: Row) -> float:
        return r.whisper_ms + r.smart_ms

    return [
        Method("text heuristic (looks_complete)", text, lambda r: r.whisper_ms),
        Method(f"Smart Turn v3.2 (p > {threshold:g})", smart, lambda r: r.smart_ms),
        Method("either says finished (OR)", lambda r: text(r) or smart(r), both_ms),
        Method("both say finished (AND)", lambda r: text(r) and smart(r), both_ms),
    ]


def _subsets(rows: Sequence[Row]) -> Iterator[tuple[str, list[Row]]]:
    yield "all pauses", list(rows)
    yield "real speech", [r for r in rows if not r.synthetic]
    yield "synthetic (Piper)", [r for r in rows if r.synthetic]
    yield (
        f"pauses the VAD hears (>= {PAUSE_MS} ms silence in the source)",
        [r for r in rows if r.gap_ms >= PAUSE_MS],
    )


def table(rows: Sequence[Row], threshold: float = 0.5) -> str:
    lines = []
    header = (
        f"{'method':<34}{'finished turns recognised':>27}{'false endpoints':>18}"
        f"{'accuracy':>10}{'ms/decision':>13}"
    )
    for title, subset in _subsets(rows):
        pos = [r for r in subset if r.finished]
        neg = [r for r in subset if not r.finished]
        if not subset:
            continue
        lines += ["", f"{title}: {len(pos)} finished turns, {len(neg)} pauses inside", header,
                  "-" * len(header)]  # fmt: skip
        for m in methods(threshold):
            tp = sum(m.complete(r) for r in pos)
            fp = sum(m.complete(r) for r in neg)
            acc = (tp + len(neg) - fp) / len(subset)
            cost = statistics.fmean(m.cost_ms(r) for r in subset)
            lines.append(
                f"{m.name:<34}{_ratio(tp, len(pos)):>27}{_ratio(fp, len(neg)):>18}"
                f"{acc:>10.0%}{cost:>13.0f}"
            )
    return "\n".join(lines[1:])


def sweep(rows: Sequence[Row], thresholds: Sequence[float] = (0.1, 0.3, 0.5, 0.7, 0.9)) -> str:
    """Smart Turn alone and ANDed with the text heuristic, at several thresholds."""
    pos = [r for r in rows if r.finished]
    neg = [r for r in rows if not r.finished]
    lines = [
        "threshold sweep (all pauses): finished recognised / false endpoints",
        f"{'':<12}{'Smart Turn alone':>36}{'text AND Smart Turn':>36}",
    ]
    for t in thresholds:
        cells = []
        for needs_text in (False, True):
            tp = sum(r.smart_prob > t and (r.text_complete or not needs_text) for r in pos)
            fp = sum(r.smart_prob > t and (r.text_complete or not needs_text) for r in neg)
            cells.append(f"{_ratio(tp, len(pos))} / {_ratio(fp, len(neg))}")
        lines.append(f"  p > {t:<5g}{cells[0]:>36}{cells[1]:>36}")
    return "\n".join(lines)


def _ratio(k: int, n: int) -> str:
    return f"{k}/{n} ({k / n:.0%})" if n else "-"


def time_smart_turn(smart: SmartTurn, audio: FloatArray, calls: int = 20) -> float:
    """Median wall time of one ``predict`` in ms (after one warm-up call)."""
    smart.predict(audio)
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        smart.predict(audio)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def cli_endpointing(args: argparse.Namespace) -> int:
    from voxgate.models.assets import MissingModelError
    from voxgate.turns.smart_turn import SmartTurn

    try:
        smart = SmartTurn(threads=1)
        whisper = Whisper(threads=1)
    except MissingModelError as exc:
        print(f"voxgate: {exc}")
        return 1
    speech_dir = Path(args.speech_dir) if args.speech_dir else None
    pauses = build_pauses(whisper, not args.no_synthetic, args.trail_ms, speech_dir)
    print(f"[bench] {len(pauses)} labelled pauses; deciding each ...", flush=True)
    rows = evaluate(pauses, whisper, smart)
    median = time_smart_turn(smart, pauses[0].audio)
    print()
    print(table(rows, args.threshold))
    print()
    print(sweep(rows))
    print(
        f"\nSmart Turn: median {median:.1f} ms per call (20 calls, 1 thread, 8 s window). "
        "ms/decision: the text heuristic's is Whisper's decode of the turn so far, "
        "which voxgate runs at every pause anyway; OR/AND run both one after the other."
    )
    if args.json:
        Path(args.json).write_text(json.dumps([_json_row(r) for r in rows], indent=1))
        print(f"[bench] per-pause rows -> {args.json}")
    return 0


def _json_row(row: Row) -> dict[str, Any]:
    return asdict(row)
