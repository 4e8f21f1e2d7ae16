"""`voxgate eval` end to end on the default model: real session, real guard, real scores.

The subset holds questions with known answers, a novel read aloud (the case
that once got "Yes, you run offline." ten times) and "say that again".
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.models


def test_eval_meets_its_thresholds_on_the_default_model(tmp_path: Path) -> None:
    out = tmp_path / "eval.json"
    proc = subprocess.run(
        [sys.executable, "-m", "voxgate", "eval", "--only",
         "known-answers,reading-aloud,say-again", "--json", str(out)],
        capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "known" in proc.stdout and "parrot" in proc.stdout  # the table
    turns = next(iter(json.loads(out.read_text()).values()))
    assert len(turns) == 21
    assert all(t["reply"].strip() for t in turns)
    for turn in turns:  # what the guard enforces, it enforces on every reply
        rules = {v["rule"] for v in turn["violations"]}
        assert not rules & {"parrot", "repeat", "identity", "empty"}, turn
    reading = [t["reply"] for t in turns if t["scenario"] == "reading-aloud"]
    assert len(set(reading)) == len(reading), reading  # no loop over the novel
