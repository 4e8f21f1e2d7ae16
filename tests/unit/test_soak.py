"""The soak benchmark's bookkeeping: RSS parsing and growth, the real-time verdict, find-max."""

from __future__ import annotations

import pytest

from voxgate.bench.soak import (
    SoakResult,
    SoakTurn,
    max_realtime_sessions,
    parse_vmrss_kib,
    report,
    rss_growth,
    rss_mib,
)

STATUS = "Name:\tpython\nVmPeak:\t 2000000 kB\nVmRSS:\t  1843200 kB\nThreads:\t12\n"


def test_vmrss_is_read_from_proc_status() -> None:
    assert parse_vmrss_kib(STATUS) == 1843200
    with pytest.raises(ValueError):
        parse_vmrss_kib("Name:\tpython\n")
    assert rss_mib() > 1  # this very process


def test_growth_is_measured_from_the_end_of_warm_up() -> None:
    samples = [(0.0, 500.0), (10.0, 1800.0), (30.0, 2000.0), (60.0, 2050.0), (90.0, 2040.0)]
    start, end, rel = rss_growth(samples, warmup_s=30.0)  # type: ignore[misc]
    assert (start, end) == (2000.0, 2040.0)
    assert rel == pytest.approx(0.02)
    assert rss_growth(samples, warmup_s=95.0) is None  # nothing after warm-up


def turn(v2v: float | None, errors: list[str] | None = None) -> SoakTurn:
    return SoakTurn(0, "x", 0.0, v2v, errors or [])


def run_of(sessions: int, v2v: list[float | None], errors: int = 0) -> SoakResult:
    result = SoakResult(sessions, 1.0)
    result.turns = [turn(v) for v in v2v] + [turn(900.0, ["llm_failed: x"])] * errors
    return result


def test_real_time_means_p95_within_3_s_and_no_failed_turn() -> None:
    assert run_of(1, [800.0] * 19 + [2900.0]).realtime()
    assert not run_of(1, [800.0] * 10 + [3500.0] * 10).realtime()
    assert not run_of(1, [800.0] * 20, errors=1).realtime()
    assert not run_of(1, [800.0] * 20 + [None]).realtime()  # no answer audio: failed
    assert not run_of(1, []).realtime()  # nothing completed is not real time


def test_find_max_is_the_last_consecutive_real_time_k() -> None:
    ok, slow = [900.0] * 10, [4000.0] * 10
    assert max_realtime_sessions([run_of(1, ok), run_of(2, ok), run_of(3, slow)]) == 2
    assert max_realtime_sessions([run_of(1, slow)]) == 0
    assert max_realtime_sessions([run_of(1, ok), run_of(2, slow), run_of(3, ok)]) == 1


def test_report_states_growth_against_the_target() -> None:
    result = run_of(2, [1000.0] * 10)
    result.warmup_s = 30.0
    result.rss_mib = [(0.0, 1000.0), (30.0, 2000.0), (60.0, 2200.0)]
    text = report(result)
    assert "2000 -> 2200 MiB (+10.0%" in text and "OVER TARGET" in text
    result.rss_mib[-1] = (60.0, 2010.0)
    assert "target < 5%: ok" in report(result)
