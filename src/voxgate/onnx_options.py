"""Session options for every ONNX Runtime model voxgate runs (Piper, Kokoro, Smart Turn).

ONNX Runtime's CPU memory arena keeps the largest buffers any run ever needed and never
gives them back: Piper's grew by 390 MB after one six-sentence clause, and the
server's RSS rose with every new longest reply (issue 11, item 2). Without the arena
each run's buffers go back to malloc (and from there to the system, see
native_memory.py); synthesis was no slower without it (median 109 vs 118 ms a clause).
"""

from __future__ import annotations

import os
from typing import Any

# Benchmarks only: "1" turns the arena back on to measure what it costs.
ARENA_ENV = "VOXGATE_ONNX_ARENA"


def session_options(threads: int) -> Any:
    """``onnxruntime.SessionOptions`` with ``threads`` intra-op threads, one inter-op."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.enable_cpu_mem_arena = os.environ.get(ARENA_ENV) == "1"
    return options
