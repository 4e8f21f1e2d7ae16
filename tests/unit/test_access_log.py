"""No log line holds the session token (issue 11, item 1): a real server, real requests."""

from __future__ import annotations

import logging

import aiohttp
import pytest

from tests.fakes import FakeSTT, fake_engines
from tests.served_app import serving
from voxgate.transport.access_log import redact
from voxgate.transport.server import GatewaySettings, create_app

SECRET = "s3cr3t-T0ken_value"


def test_redact_replaces_every_token_value() -> None:
    assert redact(f"/ws?token={SECRET}") == "/ws?token=[redacted]"
    assert redact(f"http://h/?a=1&token={SECRET}&b=2") == "http://h/?a=1&token=[redacted]&b=2"
    assert redact("/app.js") == "/app.js"


async def test_no_access_log_line_holds_the_token(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="aiohttp.access")
    app = create_app(fake_engines(FakeSTT(lambda s: "")), GatewaySettings(token=SECRET))
    async with serving(app) as base, aiohttp.ClientSession() as http:
        async with http.get(f"{base}/?token={SECRET}") as page:
            assert page.status == 200
            # The page's own asset loads must not carry its URL (and the token) along.
            assert page.headers["Referrer-Policy"] == "no-referrer"
        referer = {"Referer": f"{base}/?token={SECRET}"}
        async with http.get(f"{base}/app.js", headers=referer) as asset:
            assert asset.status == 200
        async with http.get(f"{base}/ws?token={SECRET}") as not_upgraded:
            assert not_upgraded.status >= 400
    lines = [r.getMessage() for r in caplog.records if r.name == "aiohttp.access"]
    assert len(lines) == 3
    assert not [line for line in lines if SECRET in line]
    assert all("token=[redacted]" in line for line in lines if "token=" in line)
