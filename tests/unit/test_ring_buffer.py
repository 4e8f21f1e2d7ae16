"""The utterance ring: absolute indices, wrap-around, clamped reads, no reallocation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voxgate.audio.pcm import SAMPLE_BUFFER_RATE, SAMPLE_BUFFER_SECONDS, SampleBuffer
from voxgate.audio.ring import AudioRing


def _seq(lo: int, hi: int) -> np.ndarray:
    return np.arange(lo, hi, dtype=np.float32)


def test_append_and_slice_by_absolute_index() -> None:
    ring = AudioRing(10)
    assert (ring.start, ring.end, len(ring)) == (0, 0, 0)
    ring.append(_seq(0, 4))
    ring.append(_seq(4, 7))
    assert (ring.start, ring.end, len(ring)) == (0, 7, 7)
    np.testing.assert_array_equal(ring.slice(2, 5), _seq(2, 5))
    np.testing.assert_array_equal(ring.slice(-5, 100), _seq(0, 7))  # clamped both ways
    assert ring.slice(5, 5).size == 0
    assert ring.slice(6, 2).size == 0
    assert ring.slice(0, 3).dtype == np.float32


def test_wrap_around_overwrites_the_oldest() -> None:
    ring = AudioRing(8)
    ring.append(_seq(0, 5))
    ring.append(_seq(5, 11))  # wraps: 0..2 are overwritten
    assert (ring.start, ring.end, len(ring)) == (3, 11, 8)
    np.testing.assert_array_equal(ring.slice(0, 11), _seq(3, 11))
    np.testing.assert_array_equal(ring.slice(6, 10), _seq(6, 10))  # across the seam
    np.testing.assert_array_equal(ring.slice(0, 4), _seq(3, 4))  # partly overwritten
    assert ring.slice(0, 3).size == 0  # entirely overwritten: nothing, never stale data


def test_an_append_longer_than_the_ring_keeps_the_newest() -> None:
    ring = AudioRing(4)
    ring.append(_seq(0, 3))
    ring.append(_seq(3, 13))
    assert (ring.start, ring.end) == (9, 13)
    np.testing.assert_array_equal(ring.slice(0, 13), _seq(9, 13))


def test_trim_before_is_a_clamped_floor() -> None:
    ring = AudioRing(16)
    ring.append(_seq(0, 10))
    ring.trim_before(4)
    assert (ring.start, ring.end) == (4, 10)
    np.testing.assert_array_equal(ring.slice(0, 6), _seq(4, 6))
    ring.trim_before(2)  # never moves back: trimmed audio does not come back
    assert ring.start == 4
    ring.trim_before(50)  # past the end: clamped, like SampleBuffer
    assert (ring.start, ring.end, len(ring)) == (10, 10, 0)
    ring.append(_seq(10, 12))
    np.testing.assert_array_equal(ring.slice(0, 20), _seq(10, 12))
    ring.clear()
    assert (ring.start, ring.end) == (12, 12)


def test_append_reuses_one_allocation_and_slices_are_copies() -> None:
    ring = AudioRing(320 * 50)
    storage = ring._ring
    address = storage.__array_interface__["data"][0]
    frame = np.ones(320, dtype=np.float32)
    for _ in range(500):  # 10 laps of the ring
        ring.append(frame)
    assert ring._ring is storage
    assert ring._ring.__array_interface__["data"][0] == address
    out = ring.slice(ring.start, ring.end)
    out[:] = 7.0
    assert float(ring.slice(ring.start, ring.start + 1)[0]) == 1.0
    frame[:] = 3.0  # the caller's frame was copied in, not kept
    assert float(ring.slice(ring.end - 1, ring.end)[0]) == 1.0


def test_input_is_converted_and_checked() -> None:
    ring = AudioRing(4)
    ring.append([1, 2])  # ints, a list: stored as float32
    np.testing.assert_array_equal(ring.slice(0, 2), np.array([1.0, 2.0], dtype=np.float32))
    ring.append(np.zeros(0, dtype=np.float32))
    assert ring.end == 2
    with pytest.raises(ValueError, match="1-D"):
        ring.append(np.zeros((2, 2), dtype=np.float32))
    with pytest.raises(ValueError, match="positive"):
        AudioRing(0)


def test_sample_buffer_is_a_40_second_ring() -> None:
    buffer = SampleBuffer()
    assert isinstance(buffer, AudioRing)
    assert buffer.capacity == SAMPLE_BUFFER_SECONDS * SAMPLE_BUFFER_RATE == 640_000
    assert SampleBuffer(100).capacity == 100
    # The session's pattern: append 20 ms frames, trim to the pre-roll, slice an utterance.
    for i in range(100):
        buffer.append(np.full(320, i, dtype=np.float32))
    buffer.trim_before(90 * 320)
    utterance = buffer.slice(95 * 320 - 10, 100 * 320)
    assert utterance.size == 5 * 320 + 10
    assert float(utterance[0]) == 94.0 and float(utterance[-1]) == 99.0


# A list of operations, each checked against a plain list of every sample ever appended.
_op = st.one_of(
    st.tuples(st.just("append"), st.integers(0, 40)),
    st.tuples(st.just("trim"), st.integers(-10, 400)),
    st.tuples(st.just("slice"), st.tuples(st.integers(-10, 400), st.integers(-10, 400))),
)


@settings(max_examples=300, deadline=None)
@given(capacity=st.integers(1, 48), ops=st.lists(_op, max_size=60))
def test_matches_a_reference_list(capacity: int, ops: list[tuple[str, object]]) -> None:
    ring = AudioRing(capacity)
    everything: list[float] = []  # index == absolute sample index
    floor = 0
    for name, arg in ops:
        if name == "append":
            assert isinstance(arg, int)
            chunk = [float(len(everything) + i) for i in range(arg)]
            ring.append(np.array(chunk, dtype=np.float32))
            everything.extend(chunk)
        elif name == "trim":
            assert isinstance(arg, int)
            floor = max(floor, min(arg, len(everything)))
            ring.trim_before(arg)
        else:
            assert isinstance(arg, tuple)
            begin, end = arg
            start = max(floor, len(everything) - capacity)
            expected = everything[max(begin, start) : max(min(end, len(everything)), start)]
            assert ring.slice(begin, end).tolist() == expected
        start = max(floor, len(everything) - capacity)
        held = len(everything) - start
        assert (ring.start, ring.end, len(ring)) == (start, len(everything), held)
        assert ring.slice(ring.start, ring.end).tolist() == everything[start:]


def test_grow_keeps_what_is_held_at_the_same_indices() -> None:
    ring = AudioRing(8)
    ring.append(np.arange(13, dtype=np.float32))  # wrapped: holds 5..12
    ring.trim_before(6)
    ring.grow(20)
    assert ring.capacity == 20
    assert ring.slice(0, 13).tolist() == list(range(6, 13))
    ring.append(np.arange(13, 25, dtype=np.float32))
    assert ring.slice(6, 25).tolist() == list(range(6, 25))
