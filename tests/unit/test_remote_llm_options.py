"""--llm-api-key and --llm-slots reach the request (issue 11, item 10): a recording
HTTP server (a fake of an OpenAI-compatible one, named so) sees what is sent."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp import web

from tests.served_app import serving
from voxgate.cli import build_parser
from voxgate.llm.base import ChatMessage, LLMRequest, LLMUsage
from voxgate.llm.openai_compat import OpenAICompatEngine


class RecordingOpenAIFake:
    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], dict[str, Any]]] = []
        self.app = web.Application()
        self.app.router.add_post("/v1/chat/completions", self._chat)

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((dict(request.headers), await request.json()))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for chunk in (
            {"choices": [{"delta": {"content": "Hi"}, "finish_reason": None}]},
            {"choices": [{"delta": {}, "finish_reason": "stop"}]},
            # As llama-server and OpenAI's include_usage send it: after the finishing chunk.
            {
                "choices": [],
                "usage": {"prompt_tokens": 31, "completion_tokens": 1},
                "timings": {"cache_n": 24, "prompt_n": 7, "prompt_ms": 50.0},
            },
        ):
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        return response


def test_serve_takes_an_api_key_and_a_slot_count() -> None:
    args = build_parser().parse_args(
        ["serve", "--llm-url", "http://h:8080", "--llm-api-key", "k", "--llm-slots", "4"]
    )
    assert (args.llm_api_key, args.llm_slots) == ("k", 4)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--llm-slots", "0"])


async def test_the_key_and_the_persona_slot_are_sent() -> None:
    fake = RecordingOpenAIFake()
    async with serving(fake.app) as url:
        pinned = OpenAICompatEngine(url, api_key="sekret", n_slots=2)
        plain = OpenAICompatEngine(url)
        try:
            for engine, persona in ((pinned, "ada"), (pinned, "luna"), (plain, "ada")):
                request = LLMRequest(persona, [ChatMessage("user", "hi")], max_tokens=4)
                usage = LLMUsage()
                assert [d async for d in engine.stream(request, usage)] == ["Hi"]
                # The usage chunk after the finishing one is read (it was skipped).
                assert (usage.prompt_tokens, usage.reused_tokens, usage.evaluated_tokens) == (
                    31, 24, 7,
                )  # fmt: skip
        finally:
            await pinned.close()
            await plain.close()
    (h1, b1), (_, b2), (h3, b3) = fake.requests
    assert h1["Authorization"] == "Bearer sekret"
    assert (b1["id_slot"], b2["id_slot"]) == (0, 1) and b1["cache_prompt"] is True
    # Without a slot count the body is plain OpenAI: strict servers refuse unknown fields.
    assert "Authorization" not in h3
    assert "id_slot" not in b3 and "cache_prompt" not in b3
