"""``voxgate bench tools``: does the model call its tools when it should, and only then?

Each prompt goes to Ada with four tools: the built-ins ``current_time``, ``remember`` and
``recall`` (notes in a fresh persona memory) and ``convert_units`` from the repository's
example MCP server (started over stdio), through the same prompt assembly and reply code
as a session's committed turn (text only). A tool is called either by the session, when
the user's words match a built-in's intent, or by the model, in its tool-call markup.
``--no-intents`` leaves only the model's own calls: the ablation that says what the
intents are worth. The MCP tool has no intent: only the model calls it.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, cast

from voxgate.llm.base import LLMRequest
from voxgate.metrics.turn import SessionClock, TurnMetrics
from voxgate.personas.memory import MemoryStore
from voxgate.personas.memory_writer import MemoryWriter
from voxgate.personas.persona import Persona, load_personas
from voxgate.prompt.assembler import PromptAssembler
from voxgate.quality.checks import reply_context
from voxgate.quality.guard import ReplyGuard
from voxgate.reply import ReplyEnd, ReplyRun
from voxgate.tools.mcp_client import McpServers
from voxgate.tools.mcp_spec import McpServerSpec
from voxgate.tools.persona_tools import resolve_tools, tools_prompt
from voxgate.tools.registry import Tool, ToolContext
from voxgate.tts.base import TTSEngine

# (prompt, the tool it needs or None, words one of which a reply using the result says;
# "" for the clock: today's facts are checked). In order: recall prompts come after the
# remember prompts that gave the notes. Phrasings differ from the tools' own examples.
PROMPTS: tuple[tuple[str, str | None, tuple[str, ...]], ...] = (
    ("What time is it?", "current_time", ()),
    ("What's the date today?", "current_time", ()),
    ("What day of the week is it?", "current_time", ()),
    ("Is it morning or afternoon right now?", "current_time", ()),
    ("How late is it?", "current_time", ()),
    ("What year is it?", "current_time", ()),
    ("Which month are we in?", "current_time", ()),
    ("Can you tell me the time, please?", "current_time", ()),
    ("What time is it in Tokyo?", "current_time", ()),
    ("Is today a weekend day?", "current_time", ()),
    ("Remember that my locker number is 42.", "remember", ()),
    ("Please remember my daughter's birthday is March the third.", "remember", ()),
    ("Don't forget that I'm allergic to peanuts.", "remember", ()),
    ("Make a note that the plumber comes on Tuesday.", "remember", ()),
    ("What's my locker number?", "recall", ("42", "forty-two", "forty two")),
    ("Do you remember my daughter's birthday?", "recall", ("march",)),
    ("What did I tell you about the plumber?", "recall", ("tuesday",)),
    ("Can you recall what I'm allergic to?", "recall", ("peanut",)),
    ("How many kilometres is 10 miles?", "convert_units", ("16",)),
    ("Convert 70 degrees Fahrenheit to Celsius.", "convert_units", ("21",)),
    ("How many pounds is 5 kilograms?", "convert_units", ("11",)),
    ("What is 2 litres in cups?", "convert_units", ("8.4", "8.5", "eight")),
    ("Tell me a joke.", None, ()),
    ("What's the capital of France?", None, ()),
    ("How are you doing?", None, ()),
    ("What is two plus two?", None, ()),
    ("Who wrote Hamlet?", None, ()),
    ("Can you recommend a good book?", None, ()),
    ("What's your name?", None, ()),
    ("How many days are there in a week?", None, ()),
    ("I had a long day at work.", None, ()),
    ("What do people usually eat for breakfast?", None, ()),
    ("Thanks, that was helpful.", None, ()),
    ("What time do shops usually open?", None, ()),
    ("I remember my first bike was red.", None, ()),
    ("Is a mile longer than a kilometre?", None, ()),
)
TOOLS = ("current_time", "remember", "recall")  # built-ins; convert_units is MCP's
EXAMPLE_SERVER = McpServerSpec(
    "examples",
    command=("python", "-m", "voxgate.tools.example_mcp_server"),
    tools=("convert_units",),
)


@dataclass
class Outcome:
    prompt: str
    needs: str | None
    called: str | None  # the first tool called, by either route
    route: str  # "intent" (the session called it), "model" (the model did) or ""
    reply: str
    # The reply says what the result said (the clock: today's day, month, year or hour).
    uses_result: bool
    seconds: float

    @property
    def right(self) -> bool:
        return self.called == self.needs


def _facts_now() -> list[str]:
    now = datetime.now().astimezone()
    return [now.strftime("%A"), now.strftime("%B"), str(now.year), now.strftime("%H:%M")]


async def measure(model: str | None, intents: bool = True) -> list[Outcome]:
    """Each prompt through a real ``ReplyRun`` (text only: no synthesis), as a session
    runs it for a committed turn; ``intents`` off: only the model may call."""
    from voxgate.llm.llama_engine import LlamaEngine
    from voxgate.models.assets import llm_model_path
    from voxgate.scheduler import ComputeGate

    llm = LlamaEngine(ComputeGate(), llm_model_path(model=model))
    persona = dataclasses.replace(load_personas()["ada"], tools=TOOLS)
    servers = McpServers()
    memory = MemoryStore(Path(tempfile.mkdtemp(prefix="voxgate-tools-")) / "memory.sqlite3")
    writer = MemoryWriter(memory)
    context = ToolContext("bench-tools", persona.id, "bench-user", memory, writer)
    outcomes = []
    try:
        await servers.connect([EXAMPLE_SERVER])
        tools = resolve_tools(persona.tools, servers.tools(EXAMPLE_SERVER))
        if not intents:
            tools = [dataclasses.replace(t, intent=None) for t in tools]
        for n, (prompt, needs, expected) in enumerate(PROMPTS):
            writer.flush(5.0)  # a note from the prompt before is readable now
            outcome = await _one(llm, persona, tools, context, n, prompt, needs, expected)
            mark = "ok  " if outcome.right else "MISS"
            print(f"[bench] {mark} {prompt!r}: called {outcome.called} ({outcome.route or '-'}), "
                  f"said {outcome.reply[:60]!r}", flush=True)  # fmt: skip
            outcomes.append(outcome)
    finally:
        await servers.close()
        await llm.close()
        writer.close()
        memory.close()
    return outcomes


async def _one(
    llm: Any,
    persona: Persona,
    tools: list[Tool],
    context: ToolContext,
    n: int,
    prompt: str,
    needs: str | None,
    expected: tuple[str, ...],
) -> Outcome:
    assembled = PromptAssembler(f"tools-{n}").assemble(
        persona, [], prompt, tools_text=tools_prompt(tools)
    )
    request = LLMRequest(persona.id, assembled.messages, max_tokens=60, seed=n)
    run = ReplyRun(
        llm=llm,
        tts=cast(TTSEngine, None),  # text only: never synthesizes
        request=request,
        voice=persona.voice,
        clock=SessionClock(16000),
        clauses=True,
        answering=prompt,
        history_len=0,
        mode="bench",
        tools=tools,
        speak=False,
        tool_context=context,
        # The reply guard, as a session has it on: a reply it fails is generated again.
        guard=ReplyGuard(reply_context(persona.name, persona.instructions, persona.facts, prompt)),
    )
    events: list[dict[str, Any]] = []
    run.open_events(events.append)
    started = time.perf_counter()
    run.promote(TurnMetrics(n + 1, persona.id, "bench"))
    while not isinstance(await run.next_item(), ReplyEnd):
        pass
    await run.close()
    calls = [e for e in events if e.get("outcome") == "started"]
    called = calls[0]["name"] if calls else None
    by_intent = [c.name for c in run.intent_calls(prompt)]
    route = ("intent" if called in by_intent else "model") if called else ""
    reply = run.generated.lower()
    words = expected if expected or needs != "current_time" else tuple(_facts_now())
    uses = bool(words) and any(w.lower() in reply for w in words)
    return Outcome(prompt, needs, called, route, run.generated, uses, time.perf_counter() - started)


def table(outcomes: list[Outcome]) -> str:
    needs = sorted({o.needs for o in outcomes if o.needs})
    rows = [
        (f"needs {name}: called it", [o for o in outcomes if o.needs == name]) for name in needs
    ]
    rows += [
        ("needs none: answered without a call", [o for o in outcomes if not o.needs]),
        ("all prompts", outcomes),
    ]
    lines = ["| prompts | right | of | accuracy |", "| --- | ---: | ---: | ---: |"]
    for name, group in rows:
        right = sum(o.right for o in group)
        lines.append(f"| {name} | {right} | {len(group)} | {right / max(len(group), 1):.0%} |")
    checked = [o for o in outcomes if o.right and o.needs and o.needs != "remember"]
    by_model = sum(o.route == "model" for o in outcomes)
    wrong_tool = sum(bool(o.needs and o.called and o.called != o.needs) for o in outcomes)
    lines.append("")
    lines.append(
        f"calls made by the model itself: {by_model}; by the session on the user's words: "
        f"{sum(o.route == 'intent' for o in outcomes)}; a wrong tool called: {wrong_tool}; "
        f"replies after a right call that say what the result said: "
        f"{sum(o.uses_result for o in checked)} of {len(checked)}"
    )
    return "\n".join(lines)


def cli_tools(args: argparse.Namespace) -> int:
    outcomes = asyncio.run(measure(args.model, intents=not args.no_intents))
    print()
    print(table(outcomes))
    return 0
