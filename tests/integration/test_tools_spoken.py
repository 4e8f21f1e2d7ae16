"""A spoken "What time is it?" to a persona with the built-in clock, through a real server
and the real models: the tool is called and the spoken answer carries the time.

The question is spoken by Piper (no recording of it ships with the tests): the server
still hears it through the VAD, the endpointer and Whisper like any other speech.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.server_process import running_server
from voxgate.audio.pcm import resample
from voxgate.client.converse import RATE, converse

pytestmark = pytest.mark.models

CLOCK_PERSONA = """
name = "Tic"
instructions = "You are Tic, a voice assistant. Reply in one short sentence of plain speech."
tools = ["current_time"]
"""


def spoken(text: str) -> Any:
    from voxgate.personas.persona import VoiceSpec
    from voxgate.scheduler import ComputeGate, Priority
    from voxgate.tts.piper_tts import PiperTTS

    async def synthesize() -> Any:
        tts = PiperTTS(ComputeGate())
        audio = await tts.synthesize(text, VoiceSpec(), Priority.TTS_LIVE)
        rate = tts.sample_rate
        await tts.close()
        return resample(audio.astype("float32") / 32768, rate, RATE)

    return asyncio.run(synthesize())


def test_a_spoken_time_question_calls_the_clock(tmp_path: Path) -> None:
    (tmp_path / "tic.toml").write_text(CLOCK_PERSONA)

    question = np.concatenate([np.zeros(8000, np.float32), spoken("What time is it?")])
    with running_server("--personas-dir", str(tmp_path)) as server:
        results, client = asyncio.run(
            converse(
                server.ws_url, [question], token=server.token, persona="tic", config={"seed": 7}
            )
        )
    (turn,) = results
    assert "time" in turn.transcript.lower(), turn.transcript
    tools = [e for e in client.events if e.get("type") == "tool"]
    # The session calls it on the words; the model may call it again, with a time zone.
    assert tools and {e["name"] for e in tools} == {"current_time"}, tools
    assert {e["outcome"] for e in tools} == {"started", "ok"}, tools
    now = datetime.now().astimezone()
    facts = [now.strftime("%A"), now.strftime("%B"), now.strftime("%H:"), str(now.year)]
    assert any(f.lower() in turn.reply.lower() for f in facts), (turn.reply, facts)
    assert len(turn.reply_audio) > 0
