"""A small Prometheus text-format registry (counters, gauges, histograms)."""

from __future__ import annotations

import bisect
import threading
from collections import defaultdict

LATENCY_BUCKETS_MS = (50, 100, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 5000, 10000)


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return "{" + inner + "}"


class Registry:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[str, dict[str, float]] = defaultdict(dict)
        self._gauges: dict[str, dict[str, float]] = defaultdict(dict)
        self._hist: defaultdict[str, dict[str, list[float]]] = defaultdict(dict)
        self._help: dict[str, str] = {}

    def inc(self, name: str, value: float = 1.0, help_text: str = "", **labels: str) -> None:
        key = _labels(labels)
        with self._lock:
            self._help.setdefault(name, help_text)
            self._counters[name][key] = self._counters[name].get(key, 0.0) + value

    def set(self, name: str, value: float, help_text: str = "", **labels: str) -> None:
        with self._lock:
            self._help.setdefault(name, help_text)
            self._gauges[name][_labels(labels)] = value

    def observe(self, name: str, value: float, help_text: str = "", **labels: str) -> None:
        key = _labels(labels)
        with self._lock:
            self._help.setdefault(name, help_text)
            counts = self._hist[name].setdefault(key, [0.0] * (len(LATENCY_BUCKETS_MS) + 2))
            counts[bisect.bisect_left(LATENCY_BUCKETS_MS, value)] += 1
            counts[-1] += value  # running sum in the last cell

    def render(self) -> str:
        lines: list[str] = []
        with self._lock:
            for kind, table in (("counter", self._counters), ("gauge", self._gauges)):
                for name, series in sorted(table.items()):
                    lines += [f"# HELP {name} {self._help.get(name, '')}", f"# TYPE {name} {kind}"]
                    lines += [f"{name}{key} {value:g}" for key, value in sorted(series.items())]
            for name, histograms in sorted(self._hist.items()):
                lines += [f"# HELP {name} {self._help.get(name, '')}", f"# TYPE {name} histogram"]
                for key, counts in sorted(histograms.items()):
                    base = key[1:-1] + "," if key else ""
                    running = 0.0
                    for bound, count in zip(LATENCY_BUCKETS_MS, counts, strict=False):
                        running += count
                        lines.append(f'{name}_bucket{{{base}le="{bound}"}} {running:g}')
                    total = running + counts[len(LATENCY_BUCKETS_MS)]
                    lines.append(f'{name}_bucket{{{base}le="+Inf"}} {total:g}')
                    lines.append(f"{name}_sum{key} {counts[-1]:g}")
                    lines.append(f"{name}_count{key} {total:g}")
        return "\n".join(lines) + "\n"
