"""Input limits: the audio rate limiter (clock passed in) and the EVENT size/depth limits."""

from __future__ import annotations

import itertools
import json
import re

import pytest

from voxgate.protocol.frames import (
    MAX_EVENT_BYTES,
    MAX_FRAME_BYTES,
    MAX_JSON_DEPTH,
    FrameType,
    ProtocolError,
    decode,
    encode,
    json_depth,
)
from voxgate.transport.limits import Admission, AudioRateLimiter, audio_samples

RATE = 16000
CHUNK = 320  # 20 ms
ACCEPTED = (Admission.ACCEPT, Admission.ACCEPT_REPORT)
REPORTED = (Admission.DROP_REPORT, Admission.ACCEPT_REPORT)


def stream(
    limiter: AudioRateLimiter, speed: float, seconds: float, start: float = 0.0
) -> list[Admission]:
    """20 ms chunks sent at ``speed`` x real time for ``seconds`` of wall time; each report
    is taken, as the server does."""
    interval = 0.02 / speed
    results = []
    for i in range(round(seconds / interval)):
        results.append(limiter.admit(CHUNK, start + i * interval))
        if results[-1] in REPORTED:
            limiter.report()
    return results


def test_real_time_audio_is_never_limited() -> None:
    limiter = AudioRateLimiter(RATE)
    assert set(stream(limiter, 1.0, 60.0)) == {Admission.ACCEPT}
    assert limiter.dropped_total == 0


def test_bursts_within_the_window_allowance_pass() -> None:
    # A connection that stalled for 3 s then delivers the backlog at once.
    limiter = AudioRateLimiter(RATE)
    results = [limiter.admit(CHUNK, 10.0) for _ in range(150)]  # 3 s of audio, same instant
    results += stream(limiter, 1.0, 10.0, start=10.02)
    assert set(results) == {Admission.ACCEPT}


def test_sustained_flood_is_cut_within_the_window_and_reported_once_per_second() -> None:
    limiter = AudioRateLimiter(RATE, max_speed=3.0, window_s=2.0, report_every_s=1.0)
    interval = 0.02 / 10.0  # 10x real time for 20 s
    times = [i * interval for i in range(round(20.0 / interval))]
    results = [limiter.admit(CHUNK, t) for t in times]
    first_refused = next(i for i, r in enumerate(results) if r is not Admission.ACCEPT)
    assert results[first_refused] is Admission.DROP_REPORT  # the first refusal is reported
    # 6 s of audio (3x over the 2 s window) pass at once, then the excess is refused,
    # within a second of wall time.
    assert first_refused * CHUNK == 6 * RATE
    assert times[first_refused] < 1.0
    # Sustained, the accepted audio is 3x the wall time; the rest was dropped and counted.
    accepted = sum(r in ACCEPTED for r in results)
    assert accepted * CHUNK / RATE == pytest.approx(3.0 * 20.0, rel=0.05)
    assert limiter.dropped_total == (len(results) - accepted) * CHUNK
    # At most one report per wall second while dropping goes on; dropping is reported
    # again and again, not only once.
    reported = [t for t, r in zip(times, results, strict=True) if r in REPORTED]
    assert all(b - a >= 1.0 for a, b in itertools.pairwise(reported))
    assert len(reported) >= 10


def reported_ms(message: str) -> float:
    match = re.search(r"dropped (\d+) ms of audio since the last report", message)
    assert match, message
    return float(match.group(1))


def test_the_reports_add_up_to_all_the_audio_dropped() -> None:
    """Probe case: an 8 s burst then paced audio; the one report said "dropped 20 ms"
    while 2.2 s had been dropped."""
    limiter = AudioRateLimiter(RATE)
    reports, kinds = [], []
    burst = [limiter.admit(CHUNK, 5.0) for _ in range(400)]  # 8 s of audio at once
    for r in burst:
        if r in REPORTED:
            reports.append(limiter.report())
            kinds.append(r)
    for i in range(250):  # then 5 s in real time
        r = limiter.admit(CHUNK, 5.02 + i * 0.02)
        if r in REPORTED:
            reports.append(limiter.report())
            kinds.append(r)
    assert limiter.dropped_total > 100 * CHUNK  # at least the 2 s over the 6 s allowance
    assert kinds[0] is Admission.DROP_REPORT and kinds[-1] is Admission.ACCEPT_REPORT
    total_ms = limiter.dropped_total * 1000 / RATE
    assert sum(reported_ms(m) for m in reports) == pytest.approx(total_ms, abs=len(reports))
    assert f"({total_ms:.0f} ms in this session)" in reports[-1]
    assert limiter.dropped_samples == 0  # nothing left unreported


def test_slightly_above_the_limit_drops_only_the_excess() -> None:
    limiter = AudioRateLimiter(RATE)
    results = stream(limiter, 4.0, 20.0)
    accepted_s = sum(r in ACCEPTED for r in results) * CHUNK / RATE
    assert accepted_s == pytest.approx(3.0 * 20.0, rel=0.05)


def test_flow_recovers_after_the_client_slows_down() -> None:
    limiter = AudioRateLimiter(RATE)
    stream(limiter, 20.0, 3.0)
    assert limiter.dropped_total > 0
    # After a full window at real time everything passes again (the drops not reported
    # yet are reported by the first chunk accepted a second after the last report).
    results = stream(limiter, 1.0, 10.0, start=3.0)
    assert set(results[150:]) <= set(ACCEPTED)
    assert results[150:].count(Admission.ACCEPT_REPORT) <= 1


def test_one_chunk_longer_than_the_allowance_is_refused() -> None:
    limiter = AudioRateLimiter(RATE)
    assert limiter.admit(7 * RATE, 0.0) is Admission.DROP_REPORT
    assert limiter.admit(CHUNK, 0.0) is Admission.ACCEPT  # nothing was counted for it


def test_report_says_what_was_dropped_and_resets() -> None:
    limiter = AudioRateLimiter(RATE)
    limiter.admit(7 * RATE, 0.0)
    message = limiter.report()
    assert "3x real time" in message and "dropped 7000 ms" in message
    assert "dropped 0 ms" in limiter.report()


def test_messages_without_audio_are_free() -> None:
    limiter = AudioRateLimiter(RATE)
    limiter.admit(6 * RATE, 0.0)  # window full
    assert limiter.admit(audio_samples(encode(FrameType.AUDIO_END)), 0.1) is Admission.ACCEPT
    assert limiter.admit(CHUNK, 0.1) is Admission.DROP_REPORT


def test_audio_samples_reads_only_audio_chunks() -> None:
    assert audio_samples(encode(FrameType.AUDIO_CHUNK, bytes(640))) == 320
    assert audio_samples(encode(FrameType.TTS_AUDIO, bytes(640))) == 0
    assert audio_samples(encode(FrameType.EVENT, b"{}")) == 0
    assert audio_samples(b"\x02") == 0
    # Chunks the decoder refuses are its business (oversized, odd_pcm), not the limiter's.
    assert audio_samples(encode(FrameType.AUDIO_CHUNK, bytes(MAX_FRAME_BYTES))) == 0
    assert audio_samples(encode(FrameType.AUDIO_CHUNK, bytes(641))) == 0
    assert audio_samples(encode(FrameType.AUDIO_CHUNK, bytes(MAX_FRAME_BYTES - 2))) > 6 * RATE


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        AudioRateLimiter(RATE, max_speed=0)
    with pytest.raises(ValueError):
        AudioRateLimiter(RATE, window_s=0.01)


# -- EVENT limits (protocol/frames.py) -----------------------------------------


def event(payload: bytes) -> bytes:
    return bytes([FrameType.EVENT, 0]) + payload


def test_event_at_the_size_limit_passes_and_above_is_oversized() -> None:
    filler = "x" * (MAX_EVENT_BYTES - len('{"type":"config","pad":""}'))
    at_limit = json.dumps({"type": "config", "pad": filler}, separators=(",", ":")).encode()
    assert len(at_limit) == MAX_EVENT_BYTES
    assert decode(event(at_limit)).json()["type"] == "config"
    over = json.dumps({"type": "config", "pad": filler + "x"}, separators=(",", ":")).encode()
    with pytest.raises(ProtocolError) as info:
        decode(event(over))
    assert info.value.code == "oversized"


def nested(depth: int) -> bytes:
    return ('{"type":"config","a":' + "[" * (depth - 1) + "]" * (depth - 1) + "}").encode()


def test_nesting_at_the_limit_passes_and_deeper_is_too_deep() -> None:
    assert json_depth(json.loads(nested(MAX_JSON_DEPTH))) == MAX_JSON_DEPTH
    decode(event(nested(MAX_JSON_DEPTH)))
    with pytest.raises(ProtocolError) as info:
        decode(event(nested(MAX_JSON_DEPTH + 1)))
    assert info.value.code == "too_deep"


def test_nesting_past_the_parser_recursion_limit_is_too_deep() -> None:
    with pytest.raises(ProtocolError) as info:
        decode(event(b"[" * 30000))
    assert info.value.code == "too_deep"


def test_json_depth_of_scalars_and_flat_values() -> None:
    assert json_depth(5) == 0
    assert json_depth({}) == 1
    assert json_depth({"a": [1, {"b": []}]}) == 4
