"""Run scenarios through a real session: typed turns (text mode) or spoken ones (audio mode).

Text mode drives ``Session`` in-process, with the real LLM, guard and TTS; the
eval port plays the reply audio back at once (it reports the reply as heard
when the turn ends), so a conversation takes generation time, not speech time.

Audio mode speaks each user line with the project's TTS and streams it in
real time over a real WebSocket to an in-process server, as ``bench latency``
does: speech recognition and endpointing are part of what is judged.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from voxgate.config import SessionConfig
from voxgate.engines import Engines
from voxgate.eval.judge import TurnOutcome, score
from voxgate.eval.scenarios import EvalTurn, Scenario
from voxgate.personas.persona import Persona, VoiceSpec
from voxgate.ports import AudioOut, OutputMessage, TurnReport
from voxgate.session import Session, session_setup

TURN_TIMEOUT_S = 120.0


@dataclass
class EvalPort:
    """Collects a session's output; every reply counts as heard in full once its turn ends."""

    rate: int
    audio_ms: dict[int, float] = field(default_factory=dict)
    reports: asyncio.Queue[TurnReport] = field(default_factory=asyncio.Queue)
    # Wall time of each turn's first answer audio: a typed turn has no speech end to
    # measure from, so the eval measures from the moment the line was sent.
    first_answer: dict[int, float] = field(default_factory=dict)

    def emit(self, message: OutputMessage) -> None:
        if isinstance(message, AudioOut):
            self.audio_ms[message.turn] = (
                self.audio_ms.get(message.turn, 0.0) + len(message.pcm) * 1000 / self.rate
            )
            if not message.filler:
                self.first_answer.setdefault(message.turn, time.perf_counter())
        elif isinstance(message, TurnReport):
            self.reports.put_nowait(message)

    def drop_audio(self, turn: int) -> None:
        pass

    def backlog(self) -> int:
        return 0  # written at once: nothing waits


@dataclass
class Conversation:
    """What one scenario run has seen so far, for scoring the next reply."""

    persona: Persona
    others: list[str]
    replies: list[str] = field(default_factory=list)
    user_lines: list[str] = field(default_factory=list)

    def judge(self, scenario: Scenario, index: int, turn: EvalTurn,
              payload: dict[str, Any]) -> TurnOutcome:
        reply = str(payload.get("reply") or "")
        self.user_lines.append(turn.user)
        violations, known, forbidden = score(
            turn, reply, self.persona, self.replies, self.user_lines, self.others
        )
        self.replies.append(reply)
        durations = payload.get("durations") or {}
        return TurnOutcome(
            scenario=scenario.id,
            kind=scenario.kind,
            index=index,
            user=turn.user,
            reply=reply,
            violations=violations,
            known=known,
            forbidden=forbidden,
            guard=list(payload.get("guard") or []),
            latency_ms=durations.get("answer_after_commit"),
            error=payload.get("error"),
        )


Progress = Callable[[TurnOutcome], None]


def _conversation(engines: Engines, scenario: Scenario, persona_id: str) -> Conversation:
    persona = engines.persona(scenario.persona or persona_id)
    others = [p.name for p in engines.personas.values() if p.id != persona.id]
    return Conversation(persona, others)


async def run_text(
    engines: Engines,
    scenario: Scenario,
    persona_id: str,
    config: SessionConfig,
    user: str,
    progress: Progress | None = None,
) -> list[TurnOutcome]:
    """One scenario as typed turns through a real ``Session``."""
    conversation = _conversation(engines, scenario, persona_id)
    persona = conversation.persona
    port = EvalPort(engines.tts.sample_rate)
    session: Session | None = None
    outcomes = []
    try:
        for index, turn in enumerate(scenario.turns, start=1):
            if session is None or turn.new_session:
                if session is not None:
                    await session.close()
                    if engines.memory_writer is not None:  # what it learned is stored
                        await asyncio.to_thread(engines.memory_writer.flush, 30.0)
                    # A new connection: the history starts again, only memory carries over.
                    conversation.replies.clear()
                setup = session_setup(engines, config, persona=persona.id, user=user)
                session = Session(engines, port, setup)
                await session.start()
            sent = time.perf_counter()
            session.push_text(turn.user)
            report = await asyncio.wait_for(port.reports.get(), TURN_TIMEOUT_S)
            # The reply has been heard out: the next typed turn does not interrupt it.
            session.playback(report.turn, port.audio_ms.get(report.turn, 0.0))
            outcome = conversation.judge(scenario, index, turn, report.payload)
            answered = port.first_answer.get(report.turn)
            outcome.latency_ms = None if answered is None else round((answered - sent) * 1000)
            outcomes.append(outcome)
            if progress is not None:
                progress(outcome)
    finally:
        if session is not None:
            await session.close()
    return outcomes


async def run_audio(
    engines: Engines,
    url: str,
    scenario: Scenario,
    persona_id: str,
    config: SessionConfig,
    progress: Progress | None = None,
) -> list[TurnOutcome]:
    """One scenario spoken: each user line synthesized, streamed in real time over a
    WebSocket, heard by the server's VAD and Whisper. A new session starts a new
    connection."""
    from voxgate.audio.pcm import resample
    from voxgate.client.converse import converse
    from voxgate.scheduler import Priority

    conversation = _conversation(engines, scenario, persona_id)
    persona = conversation.persona
    # The user speaks with a voice no built-in persona uses: the bundled one, lower.
    user_voice = VoiceSpec(engine="piper", name="en_US-joe-medium", rate=0.95, pitch=0.9)
    sessions: list[list[tuple[int, EvalTurn]]] = []
    for index, turn in enumerate(scenario.turns, start=1):
        if not sessions or turn.new_session:
            sessions.append([])
        sessions[-1].append((index, turn))
    outcomes = []
    for part in sessions:
        conversation.replies.clear()
        audios = []
        for _, turn in part:
            pcm = await engines.tts.synthesize(turn.user, user_voice, Priority.SPECULATIVE)
            audio = (pcm / 32768.0).astype(np.float32)
            audios.append(resample(audio, engines.tts.sample_rate, 16000))
        results, _ = await converse(url, audios, persona=persona.id, config=config.model_dump())
        for (index, turn), result in zip(part, results, strict=True):
            payload = dict(result.metrics)
            payload["reply"] = result.reply.strip()
            if not result.metrics:
                payload["error"] = "no reply (timeout)"
            outcome = conversation.judge(scenario, index, turn, payload)
            outcome.user = f"{turn.user} [heard: {result.transcript}]"
            outcomes.append(outcome)
            if progress is not None:
                progress(outcome)
        if engines.memory_writer is not None:
            await asyncio.to_thread(engines.memory_writer.flush, 30.0)
    return outcomes


def eval_user() -> str:
    """A fresh user id per run: memory from earlier runs must not change the result."""
    return f"eval-{time.strftime('%Y%m%d-%H%M%S')}"
