"""``voxgate bench tools``: does the model call its tools when it should, and only then?

Each prompt goes to a persona with the built-in ``current_time`` tool, through the
same prompt assembly and reply code as a session's committed turn (text only). A
tool is called either by the session, when the user's words match the tool's
intent, or by the model, in its tool-call markup. ``--no-intents`` leaves only the
model's own calls: the ablation that says what the intents are worth.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from voxgate.llm.base import LLMRequest
from voxgate.metrics.turn import SessionClock, TurnMetrics
from voxgate.personas.persona import load_personas
from voxgate.prompt.assembler import PromptAssembler
from voxgate.reply import ReplyEnd, ReplyRun
from voxgate.tools.persona_tools import resolve_tools, tools_prompt
from voxgate.tts.base import TTSEngine

# (prompt, the tool it needs or None). Phrasings differ from the tool's own example.
PROMPTS: tuple[tuple[str, str | None], ...] = (
    ("What time is it?", "current_time"),
    ("What's the date today?", "current_time"),
    ("What day of the week is it?", "current_time"),
    ("Is it morning or afternoon right now?", "current_time"),
    ("How late is it?", "current_time"),
    ("What year is it?", "current_time"),
    ("Which month are we in?", "current_time"),
    ("Can you tell me the time, please?", "current_time"),
    ("What time is it in Tokyo?", "current_time"),
    ("Is today a weekend day?", "current_time"),
    ("Tell me a joke.", None),
    ("What's the capital of France?", None),
    ("How are you doing?", None),
    ("What is two plus two?", None),
    ("Who wrote Hamlet?", None),
    ("Can you recommend a good book?", None),
    ("What's your name?", None),
    ("How many days are there in a week?", None),
    ("I had a long day at work.", None),
    ("What do people usually eat for breakfast?", None),
    ("Thanks, that was helpful.", None),
    ("What time do shops usually open?", None),
)


@dataclass
class Outcome:
    prompt: str
    needs: str | None
    called: str | None  # the first tool called, by either route
    route: str  # "intent" (the session called it), "model" (the model did) or ""
    reply: str
    uses_result: bool  # the reply names today's day, month, year or hour
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
    persona = dataclasses.replace(load_personas()["ada"], tools=("current_time",))
    tools = resolve_tools(persona.tools)
    if not intents:
        tools = [dataclasses.replace(t, intent=None) for t in tools]
    outcomes = []
    try:
        for n, (prompt, needs) in enumerate(PROMPTS):
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
            intent = any(t.intent is not None and t.intent.search(prompt) for t in tools)
            route = ("intent" if intent else "model") if called else ""
            facts = _facts_now()
            reply = run.generated
            outcome = Outcome(
                prompt,
                needs,
                called,
                route,
                reply,
                any(f.lower() in reply.lower() for f in facts),
                time.perf_counter() - started,
            )
            mark = "ok  " if outcome.right else "MISS"
            print(f"[bench] {mark} {prompt!r}: called {called} ({route or '-'}), "
                  f"said {reply[:60]!r}", flush=True)  # fmt: skip
            outcomes.append(outcome)
    finally:
        await llm.close()
    return outcomes


def table(outcomes: list[Outcome]) -> str:
    rows = [
        ("needs the tool: called it", [o for o in outcomes if o.needs]),
        ("needs none: answered without a call", [o for o in outcomes if not o.needs]),
        ("all prompts", outcomes),
    ]
    lines = ["| prompts | right | of | accuracy |", "| --- | ---: | ---: | ---: |"]
    for name, group in rows:
        right = sum(o.right for o in group)
        lines.append(f"| {name} | {right} | {len(group)} | {right / max(len(group), 1):.0%} |")
    needed = [o for o in outcomes if o.needs and o.called]
    by_model = sum(o.route == "model" for o in outcomes)
    lines.append("")
    lines.append(
        f"calls made by the model itself: {by_model}; by the session on the user's words: "
        f"{sum(o.route == 'intent' for o in outcomes)}; replies after a call that name "
        f"today's day, month, year or time: {sum(o.uses_result for o in needed)} of "
        f"{len(needed)}"
    )
    return "\n".join(lines)


def cli_tools(args: argparse.Namespace) -> int:
    outcomes = asyncio.run(measure(args.model, intents=not args.no_intents))
    print()
    print(table(outcomes))
    return 0
