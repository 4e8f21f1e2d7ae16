"""An LLM served elsewhere: any OpenAI-compatible ``/v1/chat/completions`` (llama.cpp
server, vLLM, SGLang, llama-cpp-python's server), streamed over SSE.

For llama.cpp's server, given its slot count (``n_slots``), each persona is pinned
to one server slot (``id_slot``) with ``cache_prompt`` on, so the server keeps that
persona's prefix in its KV cache across turns the way the embedded engine's
persona slots do. Without ``n_slots`` the body is plain OpenAI (strict servers
such as OpenAI's own refuse unknown fields); vLLM and SGLang cache prefixes by
content and need no slot. Reused-prefix counts are read from llama.cpp's
``timings.cache_n`` or the OpenAI ``usage.prompt_tokens_details``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import Any

import aiohttp

from voxgate.llm.base import ChatMessage, LLMCapabilities, LLMError, LLMRequest, LLMUsage, MediaPart
from voxgate.tools.persona_tools import tool_call_text

log = logging.getLogger("voxgate.llm")

POOL_IDLE_S = 4.0
_MAX_ERROR_BODY = 300  # characters of an error response worth showing


WARMUP = "__warmup__"  # the start-up request's persona id: it owns no slot
# The API's "pcm16" audio: 16-bit mono at 24 kHz, in both directions.
MODEL_SPEECH_RATE = 24000


class OpenAICompatEngine:
    name = "openai-compat"
    # Tools go as the API's ``tools``; the server's own template shows them to its model.
    takes_tool_definitions = True

    def __init__(
        self,
        base_url: str,
        model: str = "default",
        *,
        api_key: str | None = None,
        n_slots: int | None = None,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 60.0,
        extra_body: Mapping[str, Any] | None = None,
        capabilities: LLMCapabilities | None = None,
    ) -> None:
        """``n_slots``: the server's parallel slots (llama-server ``--parallel``); when
        given, each persona is pinned to one of them with ``id_slot``. ``capabilities``:
        what the model takes besides text, as declared; ``warm`` adds what the server
        itself reports (llama.cpp's ``/props`` modalities)."""
        self.capabilities = capabilities or LLMCapabilities()
        self.base_url = base_url.rstrip("/")
        self.url = f"{self.base_url}/v1/chat/completions"
        self.model = model
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._n_slots = n_slots
        self._timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=connect_timeout_s, sock_read=read_timeout_s
        )
        self._extra_body = dict(extra_body or {})
        self._slot_of: dict[str, int] = {}
        self._session: aiohttp.ClientSession | None = None
        self._fresh: aiohttp.ClientSession | None = None  # retries, one connection each

    def slot_for(self, persona_id: str) -> int | None:
        """Stable persona -> server slot: first come, first own slot; the rest by hash."""
        if not self._n_slots:
            return None
        slot = self._slot_of.get(persona_id)
        if slot is None:
            if len(self._slot_of) < self._n_slots:
                slot = len(self._slot_of)
            else:
                digest = hashlib.sha256(persona_id.encode("utf-8")).digest()
                slot = int.from_bytes(digest[:4], "big") % self._n_slots
            self._slot_of[persona_id] = slot
        return slot

    def request_body(self, request: LLMRequest) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [_message(m) for m in request.messages],
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "seed": request.seed,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        slot = None if request.persona_id == WARMUP else self.slot_for(request.persona_id)
        if request.tools:
            body["tools"] = list(request.tools)
        if request.speech is not None:  # the audio_out route: the model speaks
            body["modalities"] = ["text", "audio"]
            body["audio"] = {"voice": request.speech.voice, "format": "pcm16"}
        if slot is not None:  # llama.cpp's llama-server: this persona's own slot
            body["id_slot"] = slot
            body["cache_prompt"] = True
        body.update(self._extra_body)
        return body

    async def read_capabilities(self) -> LLMCapabilities:
        """What the server says its model takes (llama.cpp's ``/props`` ``modalities``),
        added to what was declared; a server that says nothing leaves the declaration."""
        try:
            async with (
                aiohttp.ClientSession(timeout=self._timeout) as http,
                http.get(f"{self.base_url}/props", headers=self._headers) as resp,
            ):
                props = await resp.json(content_type=None) if resp.status == 200 else {}
        except (aiohttp.ClientError, TimeoutError, ValueError):
            props = {}
        modalities = props.get("modalities") if isinstance(props, dict) else None
        if isinstance(modalities, dict):
            declared = self.capabilities
            self.capabilities = LLMCapabilities(
                vision=declared.vision or modalities.get("vision") is True,
                audio_in=declared.audio_in or modalities.get("audio") is True,
                audio_out=declared.audio_out,
                voice=declared.voice,
            )
        return self.capabilities

    async def warm(self) -> None:
        await self.read_capabilities()
        request = LLMRequest(WARMUP, [ChatMessage("user", "Hi")], max_tokens=1)
        async for _ in self._stream(request, LLMUsage()):
            pass

    def stream(self, request: LLMRequest, usage: LLMUsage) -> AsyncIterator[str]:
        """Reply text deltas. Closing the stream closes the HTTP connection, which makes
        the server stop generating."""
        return self._stream(request, usage)

    async def close(self) -> None:
        for session in (self._session, self._fresh):
            if session is not None:
                await session.close()
        self._session = self._fresh = None

    async def _stream(self, request: LLMRequest, usage: LLMUsage) -> AsyncGenerator[str, None]:
        if self._session is None or self._session.closed:
            # Idle connections are let go before llama-server's (cpp-httplib's 5 s) would.
            connector = aiohttp.TCPConnector(keepalive_timeout=POOL_IDLE_S)
            self._session = aiohttp.ClientSession(
                timeout=self._timeout, headers=self._headers, connector=connector
            )
        started = time.perf_counter()
        first_at = 0.0
        try:
            async with await self._post(self.request_body(request)) as resp:
                if resp.status >= 400:
                    text = (await resp.text(errors="replace"))[:_MAX_ERROR_BODY]
                    raise LLMError(f"LLM server {self.url} answered HTTP {resp.status}: {text}")
                finished = False
                calls = StreamedToolCalls()
                odd = b""  # the model's speech: a byte of a sample still to come
                async for raw in resp.content:
                    data = _sse_data(raw)
                    if data is None:
                        continue
                    if data == "[DONE]":
                        finished = True
                        break
                    chunk = self._parse(data)
                    # Always applied: usage and timings come in a chunk of their own after
                    # the one that finishes the reply (llama-server, OpenAI include_usage).
                    ends = apply_stream_chunk(chunk, usage)
                    finished = finished or ends
                    calls.add(chunk)
                    if request.speech is not None and (pcm := _delta_audio(chunk, self.url)):
                        if not first_at:
                            first_at = time.perf_counter()
                        # Whole samples only: a chunk may end mid-sample, the next goes on.
                        pcm, odd = odd + pcm, b""
                        if len(pcm) % 2:
                            pcm, odd = pcm[:-1], pcm[-1:]
                        request.speech.sink(pcm, MODEL_SPEECH_RATE)
                    delta = _delta_text(chunk)
                    if delta:
                        if not first_at:
                            first_at = time.perf_counter()
                        yield delta
                if not finished:
                    raise LLMError(f"LLM server {self.url} ended the stream before finishing")
                if markup := calls.markup():  # read by the reply like the embedded engine's
                    yield markup
        except aiohttp.ClientConnectorError as exc:
            raise LLMError(f"cannot connect to the LLM server at {self.url}: {exc}") from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise LLMError(f"LLM server {self.url} failed mid-stream: {exc!r}") from exc
        finally:
            # Client-side clocks when the server reports no timings.
            if first_at and not usage.prefill_ms:
                usage.prefill_ms = (first_at - started) * 1000.0
            if first_at and not usage.decode_ms:
                usage.decode_ms = (time.perf_counter() - first_at) * 1000.0

    async def _post(self, body: dict[str, Any]) -> aiohttp.ClientResponse:
        """POST on a pooled connection, or on a new one if the pooled one turns out dead.

        After a stream is cancelled (a barge-in closes it mid-reply), llama-server may
        close its other keep-alive connections too; the next request then fails before
        the server has read it ("Can not write request body"). Sending it again on a
        connection of its own is safe for a write failure; a disconnect before any
        answer may, rarely, repeat a prefill the server had started.
        """
        assert self._session is not None
        try:
            return await self._session.post(self.url, json=body)
        except aiohttp.ClientConnectorError:
            raise  # nothing listens: a retry would not help
        except (
            aiohttp.ServerDisconnectedError,
            aiohttp.ClientOSError,
            aiohttp.ClientConnectionResetError,
        ) as exc:
            log.info("LLM server %s dropped a pooled connection (%r); sending again", self.url, exc)
            if self._fresh is None or self._fresh.closed:
                # Not the pool: it may hold more connections the server has dropped.
                self._fresh = aiohttp.ClientSession(
                    timeout=self._timeout,
                    headers=self._headers,
                    connector=aiohttp.TCPConnector(force_close=True),
                )
            return await self._fresh.post(self.url, json=body)

    def _parse(self, data: str) -> dict[str, Any]:
        try:
            chunk = json.loads(data)
        except json.JSONDecodeError as exc:
            raise LLMError(f"LLM server {self.url} sent a malformed event: {data[:120]!r}") from exc
        if not isinstance(chunk, dict):
            raise LLMError(f"LLM server {self.url} sent a malformed event: {data[:120]!r}")
        if "error" in chunk:
            raise LLMError(f"LLM server {self.url} reported an error: {chunk['error']}")
        return chunk


def _message(message: ChatMessage) -> dict[str, Any]:
    """A message in the API's form: plain text, or content parts when it carries media."""
    if not message.parts:
        return {"role": message.role, "content": message.content}
    content: list[dict[str, Any]] = []
    if message.content:  # heard, not transcribed: the audio alone says it
        content.append({"type": "text", "text": message.content})
    content += [_part(part) for part in message.parts]
    return {"role": message.role, "content": content}


def _part(part: MediaPart) -> dict[str, Any]:
    encoded = base64.b64encode(part.data).decode("ascii")
    if part.kind == "image":
        return {"type": "image_url", "image_url": {"url": f"data:{part.mime};base64,{encoded}"}}
    if part.kind == "audio":
        audio_format = part.mime.rpartition("/")[2]  # audio/wav -> wav
        return {"type": "input_audio", "input_audio": {"data": encoded, "format": audio_format}}
    raise ValueError(f"no content part for {part.kind!r}")


def _sse_data(raw: bytes) -> str | None:
    line = raw.decode("utf-8", errors="replace").strip()
    if not line.startswith("data:"):
        return None  # blank separator, comment or another field
    return line[len("data:") :].strip()


class StreamedToolCalls:
    """The API's streamed ``tool_calls`` (pieces by index) as the ``<tool_call>`` markup
    the reply parses from any engine."""

    def __init__(self) -> None:
        self._calls: dict[int, list[str]] = {}  # index -> [name, arguments so far]

    def add(self, chunk: Mapping[str, Any]) -> None:
        choices = chunk.get("choices") or []
        delta = (choices[0].get("delta") or {}) if choices else {}
        for piece in delta.get("tool_calls") or []:
            if not isinstance(piece, Mapping):
                continue
            index = piece.get("index", 0)
            entry = self._calls.setdefault(index if isinstance(index, int) else 0, ["", ""])
            function = piece.get("function") or {}
            if isinstance(function.get("name"), str):
                entry[0] += function["name"]
            if isinstance(function.get("arguments"), str):
                entry[1] += function["arguments"]

    def markup(self) -> str:
        out = []
        for name, arguments in (self._calls[i] for i in sorted(self._calls)):
            try:
                parsed = json.loads(arguments) if arguments.strip() else {}
            except ValueError:
                parsed = arguments  # the reply reports it as a bad call
            out.append(tool_call_text(name, parsed))
        return "".join(out)


def _delta(chunk: Mapping[str, Any]) -> Mapping[str, Any]:
    choices = chunk.get("choices") or []
    delta = (choices[0].get("delta") or {}) if choices else {}
    return delta if isinstance(delta, Mapping) else {}


def _delta_text(chunk: Mapping[str, Any]) -> str:
    """The reply's words: the text, or what the model says (its speech's transcript)."""
    delta = _delta(chunk)
    content = delta.get("content")
    if isinstance(content, str) and content:
        return content
    audio = delta.get("audio")
    transcript = audio.get("transcript") if isinstance(audio, Mapping) else None
    return transcript if isinstance(transcript, str) else ""


def _delta_audio(chunk: Mapping[str, Any], url: str) -> bytes:
    """The model's speech in this chunk (PCM16), if any."""
    audio = _delta(chunk).get("audio")
    data = audio.get("data") if isinstance(audio, Mapping) else None
    if not isinstance(data, str) or not data:
        return b""
    try:
        return base64.b64decode(data, validate=True)
    except ValueError as exc:
        raise LLMError(f"LLM server {url} sent speech that is not base64: {exc}") from exc


def apply_stream_chunk(chunk: Mapping[str, Any], usage: LLMUsage) -> bool:
    """Copy usage and timings into ``usage``; True when the chunk ends the reply."""
    choices = chunk.get("choices") or []
    finished = bool(choices and choices[0].get("finish_reason"))
    if choices and _delta_text(chunk):
        usage.generated_tokens += 1  # corrected below if the server reports a count
    reported = chunk.get("usage")
    if isinstance(reported, Mapping):
        usage.prompt_tokens = int(reported.get("prompt_tokens") or usage.prompt_tokens)
        usage.generated_tokens = int(reported.get("completion_tokens") or usage.generated_tokens)
        details = reported.get("prompt_tokens_details")
        if isinstance(details, Mapping) and details.get("cached_tokens") is not None:
            usage.reused_tokens = int(details["cached_tokens"])
    timings = chunk.get("timings")  # llama.cpp server
    if isinstance(timings, Mapping):
        if timings.get("cache_n") is not None:
            usage.reused_tokens = int(timings["cache_n"])
        if timings.get("prompt_n") is not None:
            usage.evaluated_tokens = int(timings["prompt_n"])
        usage.prefill_ms = float(timings.get("prompt_ms") or usage.prefill_ms)
        usage.decode_ms = float(timings.get("predicted_ms") or usage.decode_ms)
    if usage.prompt_tokens and not usage.evaluated_tokens:
        usage.evaluated_tokens = max(0, usage.prompt_tokens - usage.reused_tokens)
    return finished
