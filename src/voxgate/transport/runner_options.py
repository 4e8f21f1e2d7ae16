"""What every aiohttp runner of the gateway is started with."""

from __future__ import annotations

from typing import Any

from voxgate.transport.access_log import RedactingAccessLogger

# A connection must deliver a complete request line and headers within this many
# seconds of opening (or of the previous response): a client trickling header bytes
# (slowloris) cannot hold a socket longer. aiohttp closes a connection whose next
# request's headers are still incomplete at its keep-alive deadline (incoming bytes do
# not reset it); a running handler or an upgraded WebSocket is never cut by it. Our
# routes take no request bodies.
DEFAULT_HEADER_TIMEOUT_S = 10.0


def runner_options(header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S) -> dict[str, Any]:
    """No log line holds a token; no half-sent request holds a socket."""
    return {
        "access_log_class": RedactingAccessLogger,
        "keepalive_timeout": header_timeout_s,
    }
