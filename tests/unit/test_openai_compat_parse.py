"""OpenAICompatEngine's request body and stream-chunk accounting (no server needed)."""

from __future__ import annotations

from voxgate.llm.base import ChatMessage, LLMRequest, LLMUsage
from voxgate.llm.openai_compat import WARMUP, OpenAICompatEngine, apply_stream_chunk


def test_personas_are_pinned_to_stable_slots() -> None:
    engine = OpenAICompatEngine("http://127.0.0.1:1/", n_slots=2)
    first = [engine.slot_for(p) for p in ("ada", "bob", "cy", "ada", "bob", "cy")]
    assert first[:2] == [0, 1]
    assert first[3:] == first[:3]  # the same persona always lands on the same slot
    assert all(s in (0, 1) for s in first)
    body = engine.request_body(LLMRequest("bob", [ChatMessage("user", "hi")], max_tokens=5))
    assert body["id_slot"] == 1
    assert body["cache_prompt"] is True
    assert body["stream"] is True
    assert engine.url == "http://127.0.0.1:1/v1/chat/completions"


def test_the_warm_up_request_takes_no_persona_slot() -> None:
    engine = OpenAICompatEngine("http://127.0.0.1:1", n_slots=2)
    warm = engine.request_body(LLMRequest(WARMUP, [ChatMessage("user", "Hi")], max_tokens=1))
    assert "id_slot" not in warm
    assert [engine.slot_for(p) for p in ("ada", "luna")] == [0, 1]


def test_no_slot_pinning_without_n_slots() -> None:
    engine = OpenAICompatEngine("http://127.0.0.1:1")
    body = engine.request_body(LLMRequest("ada", [ChatMessage("user", "hi")]))
    assert "id_slot" not in body
    assert "cache_prompt" not in body  # a llama.cpp field: strict servers refuse it


def test_llama_server_timings_fill_reuse_counts() -> None:
    usage = LLMUsage()
    delta = {"choices": [{"delta": {"content": "Hi"}, "finish_reason": None}]}
    assert apply_stream_chunk(delta, usage) is False
    final = {
        "choices": [{"delta": {}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 120, "completion_tokens": 7},
        "timings": {"cache_n": 100, "prompt_n": 20, "prompt_ms": 150.5, "predicted_ms": 300.0},
    }
    assert apply_stream_chunk(final, usage) is True
    assert (usage.prompt_tokens, usage.reused_tokens, usage.evaluated_tokens) == (120, 100, 20)
    assert usage.generated_tokens == 7
    assert (usage.prefill_ms, usage.decode_ms) == (150.5, 300.0)


def test_openai_cached_tokens_fill_reuse_counts() -> None:
    usage = LLMUsage()
    chunk = {
        "choices": [],
        "usage": {
            "prompt_tokens": 50,
            "completion_tokens": 3,
            "prompt_tokens_details": {"cached_tokens": 32},
        },
    }
    apply_stream_chunk(chunk, usage)
    assert (usage.prompt_tokens, usage.reused_tokens, usage.evaluated_tokens) == (50, 32, 18)
