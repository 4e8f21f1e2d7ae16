"""The process-wide model engines: loaded once, warmed at start-up, shared by every session."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from voxgate.audio.pcm import Int16Array
from voxgate.llm.base import LLMCapabilities, LLMEngine
from voxgate.metrics.prometheus import Registry
from voxgate.metrics.trace import JsonlTrace
from voxgate.personas.memory import MemoryStore
from voxgate.personas.memory_writer import MemoryWriter
from voxgate.personas.persona import Persona, VoiceSpec, load_personas
from voxgate.prompt.assembler import AssembledPrompt
from voxgate.prompt.cache import CompositionCache
from voxgate.scheduler import ComputeGate, Priority
from voxgate.stt.base import STTEngine
from voxgate.tools.mcp_client import McpServers
from voxgate.tools.persona_tools import resolve_tools, tools_prompt
from voxgate.tools.registry import Tool, tool_from_function
from voxgate.tts.base import TTSEngine
from voxgate.tts.router import build_tts, voice_problem
from voxgate.turns.smart_turn import SmartTurnScorer, load_scorer

log = logging.getLogger("voxgate.engines")


@dataclass
class Engines:
    gate: ComputeGate
    stt: STTEngine
    llm: LLMEngine
    tts: TTSEngine
    personas: dict[str, Persona]
    default_persona: str
    trace: JsonlTrace = field(default_factory=lambda: JsonlTrace(None))
    registry: Registry = field(default_factory=Registry)
    fillers: dict[tuple[VoiceSpec, str], Int16Array] = field(default_factory=dict)
    memory: MemoryStore | None = None
    # One cache for the process: keys carry the conversation id, and /metrics reports it.
    prompt_cache: CompositionCache[AssembledPrompt] = field(default_factory=CompositionCache)
    # The learned end-of-turn model, when set-up fetched it (sessions opt in: smart_turn).
    turn_scorer: SmartTurnScorer | None = None
    # Write every turn machine event to the trace, so a session can be replayed in tests.
    record_turn_events: bool = False
    # Every memory write goes through this one thread: a turn never waits on SQLite.
    memory_writer: MemoryWriter | None = field(init=False, default=None)
    # Each persona's tools, resolved once (voxgate.tools.persona_tools).
    _tools: dict[str, list[Tool]] = field(init=False, default_factory=dict)
    _tools_text: dict[str, str] = field(init=False, default_factory=dict)
    _added_tools: dict[str, list[Tool]] = field(init=False, default_factory=dict)
    # The personas' MCP servers, connected by connect_tools (warm does it).
    mcp: McpServers = field(init=False, default_factory=McpServers)

    def __post_init__(self) -> None:
        if self.memory is not None:
            self.memory_writer = MemoryWriter(self.memory)

    def persona(self, persona_id: str | None) -> Persona:
        key = persona_id or self.default_persona
        if key not in self.personas:
            known = ", ".join(sorted(self.personas))
            raise KeyError(f"unknown persona {key!r}; known: {known}")
        return self.personas[key]

    def add_tools(self, persona_id: str, *tools: Tool | Callable[..., Any]) -> None:
        """Give a persona tools from Python code (functions or ``Tool``s), besides those of
        its file. Before sessions start: the tools are part of its cached prompt prefix."""
        self.persona(persona_id)  # KeyError: no such persona
        made = [t if isinstance(t, Tool) else tool_from_function(t) for t in tools]
        self._added_tools.setdefault(persona_id, []).extend(made)
        self._tools.pop(persona_id, None)
        self._tools_text.pop(persona_id, None)

    async def connect_tools(self) -> None:
        """Start (or dial) every MCP server a persona declares and list its tools; also
        resolves every persona's tools, so a bad one fails the start, not a session."""
        for persona in self.personas.values():
            await self.mcp.connect(persona.mcp_servers)
            self.tools_for(persona)

    def _has_tools(self, persona: Persona) -> bool:
        return bool(persona.tools or persona.mcp_servers or self._added_tools.get(persona.id))

    def tools_for(self, persona: Persona) -> list[Tool]:
        """The persona's tools; ValueError says which one cannot be loaded, and why."""
        if persona.id not in self._tools:
            try:
                unconnected = [s for s in persona.mcp_servers if not self.mcp.connected(s)]
                if unconnected:
                    raise ValueError(
                        f"{unconnected[0].label()} is not connected: await "
                        "Engines.connect_tools() at start-up (voxgate serve does)"
                    )
                extra = [t for s in persona.mcp_servers for t in self.mcp.tools(s)]
                extra += self._added_tools.get(persona.id, [])
                self._tools[persona.id] = resolve_tools(persona.tools, extra)
            except ValueError as exc:
                raise ValueError(f"persona {persona.id!r}: {exc}") from None
        return self._tools[persona.id]

    @property
    def llm_capabilities(self) -> LLMCapabilities:
        """What the LLM backend's model takes besides text (the embedded one: nothing)."""
        capabilities = getattr(self.llm, "capabilities", None)
        return capabilities if isinstance(capabilities, LLMCapabilities) else LLMCapabilities()

    @property
    def llm_takes_tools(self) -> bool:
        """A server given the API's ``tools`` (it applies its model's own template)."""
        return bool(getattr(self.llm, "takes_tool_definitions", False))

    def tools_text(self, persona: Persona) -> str:
        """The tool section of the persona's system message (embedded engine only); built
        once, as every prompt of the persona (each interim prefill too) asks for it."""
        if persona.id not in self._tools_text:
            tools = [] if self.llm_takes_tools else self.tools_for(persona)
            self._tools_text[persona.id] = tools_prompt(tools)
        return self._tools_text[persona.id]

    def tool_definitions(self, persona: Persona) -> tuple[dict[str, Any], ...]:
        """The persona's tools as the API's ``tools``, for a server that takes them."""
        if not self.llm_takes_tools:
            return ()
        return tuple(tool.definition() for tool in self.tools_for(persona))

    async def warm(self) -> None:
        """First calls are slow (allocation, kernels); pay them before any user does."""
        await self.connect_tools()  # the tool list is part of each persona's prefix
        for name, coro in (
            ("stt", self.stt.warm()),
            ("llm", self.llm.warm()),
            ("tts", self.tts.warm()),
        ):
            started = time.perf_counter()
            await coro
            log.info("warmed %s in %.0f ms", name, (time.perf_counter() - started) * 1000)
        if self.turn_scorer is not None:
            await self.turn_scorer.score(np.zeros(16000, dtype=np.float32))
        await self.prewarm_personas()
        for persona in self.personas.values():
            if voice_problem(self.tts, persona.voice):
                continue  # an optional voice engine is missing: that persona is refused later
            # The holding line too: said while a slow tool runs, it must not wait on TTS.
            holding = [persona.holding_line] if self._has_tools(persona) else []
            for text in [*persona.fillers, *holding]:
                key = (persona.voice, text)
                if key not in self.fillers:
                    self.fillers[key] = await self.tts.synthesize(
                        text, persona.voice, Priority.SPECULATIVE
                    )

    async def prewarm_personas(self) -> None:
        """Prefill each persona's stable prompt prefix once, so its KV slot is ready
        and a user's first turn evaluates only its own words."""
        from voxgate.llm.base import LLMRequest, LLMUsage
        from voxgate.prompt.assembler import PromptAssembler
        from voxgate.scheduler import PriorityRef

        for persona in self.personas.values():
            prompt = PromptAssembler("prewarm").assemble(
                persona,
                [],
                "Hello.",
                tools_text=self.tools_text(persona),
            )
            prime = getattr(self.llm, "prime", None)
            if prime is not None:  # the embedded engine: prefill the stable prefix only
                await prime(persona.id, prompt.messages[: prompt.stable_messages])
                continue
            # A remote server: one short request warms its prefix cache.
            request = LLMRequest(
                persona.id,
                prompt.messages,
                max_tokens=1,
                priority=PriorityRef(Priority.SPECULATIVE),
            )
            async for _ in self.llm.stream(request, LLMUsage()):
                pass

    async def close(self) -> None:
        await asyncio.gather(self.stt.close(), self.llm.close(), self.tts.close(), self.mcp.close())
        if self.turn_scorer is not None:
            await self.turn_scorer.close()
        if self.memory_writer is not None:
            await asyncio.to_thread(self.memory_writer.close)
        if self.memory is not None:
            self.memory.close()
        await asyncio.to_thread(self.trace.close)


def default_memory_path() -> Path:
    base = os.environ.get("VOXGATE_DATA") or os.path.join(
        os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share"), "voxgate"
    )
    return Path(base) / "memory.sqlite3"


def load_default_engines(
    *,
    personas_dir: Path | None = None,
    default_persona: str = "ada",
    llm_url: str | None = None,
    llm_model: str | None = None,
    llm_api_key: str | None = None,
    llm_slots: int | None = None,
    llm_capabilities: LLMCapabilities | None = None,
    trace_path: Path | None = None,
    memory_path: Path | None = None,
    model: str | None = None,
) -> Engines:
    """The offline default stack: faster-whisper tiny.en, llama.cpp Qwen2.5 (``model``:
    "smart" 1.5B or "fast" 0.5B, default $VOXGATE_MODEL or smart), Piper joe (plus Kokoro
    when a persona asks for it and it is installed)."""
    from voxgate.stt.whisper import WhisperSTT

    gate = ComputeGate()
    llm: LLMEngine
    if llm_url:
        from voxgate.llm.openai_compat import OpenAICompatEngine

        llm = OpenAICompatEngine(
            llm_url,
            model=llm_model or "default",
            api_key=llm_api_key,
            n_slots=llm_slots,
            capabilities=llm_capabilities,
        )
    else:
        from voxgate.llm.llama_engine import LlamaEngine
        from voxgate.models.assets import llm_model_path

        llm = LlamaEngine(gate, llm_model_path(model=model))
    personas = load_personas(personas_dir)
    if default_persona not in personas:
        raise SystemExit(
            f"persona {default_persona!r} not found; known: {', '.join(sorted(personas))}"
        )
    return Engines(
        gate=gate,
        stt=WhisperSTT(gate),
        llm=llm,
        tts=build_tts(gate, personas.values()),
        personas=personas,
        default_persona=default_persona,
        trace=JsonlTrace(trace_path),
        memory=MemoryStore(memory_path or default_memory_path()),
        turn_scorer=load_scorer(),
    )
