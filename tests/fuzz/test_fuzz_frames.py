"""Run the atheris fuzzer (tests/fuzz/fuzz_frames.py) for a bounded number of inputs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip(
    "atheris",
    reason="atheris is not installed: pip install atheris==3.0.0 "
    "(a binary wheel for CPython 3.11 on x86-64 Linux; no compiler needed)",
)

FUZZER = Path(__file__).with_name("fuzz_frames.py")
RUNS = 20000
# A fixed seed makes a failure reproducible with the same command.
SEED = 1


def test_fuzzer_finds_no_crash(tmp_path: Path) -> None:
    from tests.fuzz.fuzz_frames import seed_inputs

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i, data in enumerate(seed_inputs()):
        (corpus / f"seed-{i}").write_bytes(data)
    command = [
        sys.executable,
        str(FUZZER),
        f"-runs={RUNS}",
        f"-seed={SEED}",
        "-max_len=2048",
        "-timeout=30",
        f"-artifact_prefix={tmp_path}/",
        str(corpus),
    ]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=900, cwd=tmp_path, check=False
    )
    output = result.stdout + result.stderr
    crashes = sorted(
        p.name for p in tmp_path.iterdir() if p.name.startswith(("crash-", "timeout-", "oom-"))
    )
    assert result.returncode == 0 and not crashes, (
        f"the fuzzer found a failing input {crashes} (reproduce: python {FUZZER} "
        f"{tmp_path}/<file>):\n{output[-4000:]}"
    )
    assert f"Done {RUNS} runs" in output, output[-2000:]
    # Coverage guidance worked: the seeds grew into a corpus of new behaviours.
    assert len(list(corpus.iterdir())) > len(seed_inputs())
