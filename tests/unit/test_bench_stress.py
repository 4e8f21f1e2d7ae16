"""``voxgate bench stress``, fixture phase only: the table's rows and that every turn answered.

No timing is asserted: this machine is shared and the numbers are the benchmark's job.
"""

from __future__ import annotations

from voxgate.bench.fixtures import (
    FIXTURE_REPLY,
    FixtureTiming,
    chunk_ends,
    reply_tokens,
    tokens_to_first_chunk,
)
from voxgate.bench.stress_personas import make_personas
from voxgate.bench.stress_report import FIXTURE_HEADERS, fixture_table, targets
from voxgate.bench.stress_runs import bare_turns, fixture_run

# Short delays keep the test quick; the code path is the benchmark's.
FAST = FixtureTiming(ttft_ms=5.0, per_token_ms=1.0, tts_ms=5.0, tts_audio_ms=20)


def test_the_fixture_reply_has_a_first_clause_before_its_end() -> None:
    tokens = reply_tokens(FIXTURE_REPLY)
    assert "".join(tokens) == FIXTURE_REPLY
    assert 1 < tokens_to_first_chunk(tokens, clauses=True) < len(tokens)
    assert chunk_ends(tokens, clauses=True)[-1] == len(tokens)


def test_generated_personas_are_distinct() -> None:
    personas = make_personas(14, "t")
    assert len({p.id for p in personas}) == 14
    assert len({p.name for p in personas}) == 14
    assert len({p.voice for p in personas}) == 14
    assert all(500 < len(p.instructions) < 900 for p in personas)  # ~100-150 tokens


async def test_fixture_phase_two_personas_two_turns() -> None:
    progress: list[str] = []
    run = await fixture_run(2, 2, FAST, progress.append)

    assert (run.n, run.m, len(run.records)) == (2, 2, 4)
    assert sorted((r.persona, r.turn) for r in run.records) == [
        ("f2-01", 1), ("f2-01", 2), ("f2-02", 1), ("f2-02", 2)]
    for record in run.records:
        assert record.reply == FIXTURE_REPLY, record.errors
        assert record.first_audio is not None and record.done is not None
        assert not record.errors and not record.interrupted
        assert record.metrics["persona"] == record.persona
    assert len(run.overhead_ms) == len(run.slack_ms) == 4
    assert run.stt_calls == 0  # turns are typed: the STT fixture is never asked

    text = fixture_table([run], FAST, tokens_to_first_chunk(reply_tokens(FIXTURE_REPLY), True))
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:3] == ["N", "M", "turns"])
    assert all(name.split()[0] in lines[header] for name in FIXTURE_HEADERS)
    row = lines[header + 2].split()
    assert row[:3] == ["2", "2", "4"]
    assert row[-1] == "4/4"  # replies

    (target,) = targets([run], [], [])
    assert target.name.startswith("substrate overhead median per turn at N=2")


async def test_bare_turns_measure_every_turn_but_the_first() -> None:
    bare = await bare_turns(2)
    assert len(bare.cpu_ms) == len(bare.first_audio_ms) == 2
