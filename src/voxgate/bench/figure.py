"""Per-turn waterfall of stages, one panel per mode, as a PNG (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from voxgate.bench.latency import TurnRow

COLOURS = {"endpointing": "#c7c7c7", "stt_final": "#4e79a7", "llm": "#f28e2b", "tts": "#59a14f"}


def waterfall(rows: list[TurnRow], modes: list[str], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.patches import Rectangle
    except ImportError as exc:
        raise SystemExit("the figure needs matplotlib: pip install 'voxgate[bench]'") from exc
    fig, axes = plt.subplots(
        len(modes), 1, figsize=(11, 2.2 + 0.55 * len(rows) / len(modes)), sharex=True, squeeze=False
    )
    for ax, mode in zip(axes[:, 0], modes, strict=True):
        turns = [r for r in rows if r.mode == mode]
        for y, row in enumerate(turns):
            origin = row.timestamps.get("speech_end", 0.0)
            committed = row.timestamps.get("committed")
            if committed is not None:
                ax.barh(y, committed - origin, left=0, height=0.8, color=COLOURS["endpointing"])
            for span in row.spans:
                if span.get("end_ms") is None or span["attrs"].get("discarded"):
                    continue
                lane = {"stt_final": -0.25, "llm": 0.0, "tts": 0.25}.get(span["stage"], 0.0)
                ax.barh(
                    y + lane,
                    span["end_ms"] - span["start_ms"],
                    left=span["start_ms"] - origin,
                    height=0.25,
                    color=COLOURS.get(span["stage"], "#999999"),
                )
            if row.client_v2v_ms is not None:
                ax.plot([row.client_v2v_ms], [y], marker="|", markersize=16, color="#e15759")
        ax.set_yticks(range(len(turns)), [f"{r.turn}: {r.label}" for r in turns], fontsize=8)
        ax.invert_yaxis()
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_title(
            f"{mode}: ms after the user stopped speaking "
            "(red tick = first answer audio at the client)",
            fontsize=9,
        )
    handles = [Rectangle((0, 0), 1, 1, color=c) for c in COLOURS.values()]
    axes[0, 0].legend(
        handles, ["endpointing wait", "STT", "LLM", "TTS"], fontsize=8, loc="lower right"
    )
    axes[-1, 0].set_xlabel("ms relative to user speech end")
    axes[-1, 0].set_xlim(left=-300)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
