"""OpenAICompatEngine against a real server: llama-cpp-python's own, started here.

Needs the server extras (uvicorn, fastapi, sse-starlette, starlette-context,
pydantic-settings; see pyproject's dev extras).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.server_process import free_port, stop_process
from voxgate.llm.base import ChatMessage, LLMError, LLMRequest, LLMUsage
from voxgate.llm.openai_compat import OpenAICompatEngine

pytestmark = pytest.mark.models

# The server loads the model with llama.cpp's extra buffer types off, as
# LlamaEngine does (the AMX kernels crash in VMs that advertise AMX).
_SERVER = """
import sys
import llama_cpp.llama_cpp as low
original = low.llama_model_default_params
def params():
    p = original()
    p.use_extra_bufts = False
    return p
low.llama_model_default_params = params
from llama_cpp.server.__main__ import main
sys.argv = ["llama_cpp.server", *sys.argv[1:]]
main()
"""


def _model_path() -> Path:
    override = os.environ.get("VOXGATE_LLM_MODEL")
    if override:
        return Path(override)
    from voxgate.models.assets import llm_model_path

    return Path(llm_model_path())


@contextlib.contextmanager
def _server() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    pytest.importorskip("uvicorn")
    pytest.importorskip("sse_starlette")
    port = free_port()
    args = ["--model", str(_model_path()), "--host", "127.0.0.1", "--port", str(port)]
    args += ["--n_ctx", "1024", "--n_threads", "2", "--n_threads_batch", "2", "--verbose", "False"]
    proc = subprocess.Popen(
        [sys.executable, "-c", _SERVER, *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                pytest.fail(f"llama_cpp.server exited with {proc.returncode}: {err[-2000:]}")
            try:
                with urllib.request.urlopen(f"{base}/v1/models", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("llama_cpp.server did not come up within 90 s")
                time.sleep(0.3)
        yield base, proc
    finally:
        stop_process(proc, timeout=10)
        if proc.stderr:
            proc.stderr.close()


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with _server() as (base, _):
        yield base


@pytest.fixture
async def engine(server: str) -> AsyncIterator[OpenAICompatEngine]:
    eng = OpenAICompatEngine(server, n_slots=2)
    yield eng
    await eng.close()


def _request(text: str, max_tokens: int = 8) -> LLMRequest:
    messages = [ChatMessage("system", "Answer in one short sentence."), ChatMessage("user", text)]
    return LLMRequest("ada", messages, max_tokens=max_tokens, temperature=0.0)


async def test_streams_a_reply_from_a_real_server(engine: OpenAICompatEngine) -> None:
    usage = LLMUsage()
    async with contextlib.aclosing(engine.stream(_request("Say hello."), usage)) as deltas:
        parts = [d async for d in deltas]
    assert len(parts) > 1  # streamed, not one blob
    assert "".join(parts).strip()
    # llama-cpp-python's server streams no usage: counts and clocks come from the client.
    assert 0 < usage.generated_tokens <= 8
    assert usage.prefill_ms > 0


async def test_closing_early_leaves_the_server_usable(engine: OpenAICompatEngine) -> None:
    usage = LLMUsage()
    request = _request("Count from one to fifty.", max_tokens=30)
    async with contextlib.aclosing(engine.stream(request, usage)) as deltas:
        async for _ in deltas:
            break
    again = LLMUsage()
    async with contextlib.aclosing(engine.stream(_request("Say hi."), again)) as deltas:
        assert "".join([d async for d in deltas]).strip()


async def test_http_error_names_the_url(server: str) -> None:
    engine = OpenAICompatEngine(f"{server}/no-such-prefix")
    try:
        with pytest.raises(LLMError, match=r"no-such-prefix/v1/chat/completions.*HTTP 404"):
            async for _ in engine.stream(_request("hi"), LLMUsage()):
                pass
    finally:
        await engine.close()


async def test_connection_refused_names_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    engine = OpenAICompatEngine(url)
    try:
        with pytest.raises(LLMError, match=f"cannot connect.*{url}"):
            await engine.warm()
    finally:
        await engine.close()


async def test_server_dying_mid_stream_is_an_llm_error() -> None:
    with _server() as (base, proc):
        engine = OpenAICompatEngine(base)
        try:
            request = _request("Count slowly from one to two hundred.", max_tokens=300)
            with pytest.raises(LLMError, match=base):
                async for _ in engine.stream(request, LLMUsage()):
                    proc.kill()
        finally:
            await engine.close()
