"""The HTTP access log, without secrets: session tokens never reach a log line.

Browsers open ``/?token=…`` and ``/ws?token=…``, and a page's own asset requests
would carry that URL as their Referer. aiohttp's default access log writes both,
so anyone who can read the server's log could join its sessions.
"""

from __future__ import annotations

import re

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

_TOKEN = re.compile(r"(?i)(token=)[^&\s#]*")
REDACTED = "[redacted]"


def redact(text: str) -> str:
    """``text`` with the value of every ``token=`` query parameter replaced."""
    return _TOKEN.sub(lambda m: m.group(1) + REDACTED, text)


class RedactingAccessLogger(AbstractAccessLogger):
    """One line per request: client, request line, status, size, time, Referer, agent."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        referer = redact(request.headers.get("Referer", "-"))
        self.logger.info(
            '%s "%s %s HTTP/%d.%d" %d %s %.3fs "%s" "%s"',
            request.remote or "-",
            request.method,
            redact(request.path_qs),
            request.version.major,
            request.version.minor,
            response.status,
            response.body_length,
            time,
            referer,
            request.headers.get("User-Agent", "-"),
        )


async def no_referrer(request: web.Request, response: web.StreamResponse) -> None:
    """The page's URL holds the token: the browser must not send it on as a Referer."""
    response.headers.setdefault("Referrer-Policy", "no-referrer")
