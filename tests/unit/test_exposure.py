"""Issue 11, item 6: a server reachable from the network is announced; an open one refused."""

from __future__ import annotations

import pytest

from voxgate.transport.exposure import FORCE_FLAG, exposure_warnings, is_loopback


def test_loopback_names() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")
    assert not is_loopback("myhost.example")


def test_loopback_with_a_token_is_silent() -> None:
    assert exposure_warnings("127.0.0.1", no_token=False, forced=False) == []


def test_a_wide_address_warns() -> None:
    (warning,) = exposure_warnings("0.0.0.0", no_token=False, forced=False)
    assert "other machines can reach" in warning


def test_no_token_on_the_network_is_refused_unless_forced() -> None:
    with pytest.raises(ValueError, match=FORCE_FLAG):
        exposure_warnings("0.0.0.0", no_token=True, forced=False)
    warnings = exposure_warnings("0.0.0.0", no_token=True, forced=True)
    assert len(warnings) == 2 and "--no-token" in warnings[1]


def test_no_token_on_loopback_warns() -> None:
    (warning,) = exposure_warnings("127.0.0.1", no_token=True, forced=False)
    assert "no session token" in warning
