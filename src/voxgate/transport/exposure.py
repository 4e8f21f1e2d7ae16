"""Who can reach the server: warn about a wide listen address, refuse an open one."""

from __future__ import annotations

import ipaddress

FORCE_FLAG = "--no-token-on-network"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def exposure_warnings(host: str, no_token: bool, forced: bool) -> list[str]:
    """Warnings to print before serving; ValueError when the set-up must not start."""
    warnings = []
    if not is_loopback(host):
        warnings.append(
            f"listening on {host}: other machines can reach this server; anyone with the "
            "session token can talk to its personas and read their replies"
        )
        if no_token and not forced:
            raise ValueError(
                f"refusing --no-token on {host}: anyone on the network could use the "
                f"server. Listen on 127.0.0.1, keep the token, or add {FORCE_FLAG} if that "
                "network is trusted"
            )
    if no_token:
        warnings.append(
            "no session token (--no-token): any client that can reach the port gets a session"
        )
    return warnings
