"""Nothing lost: a server killed with SIGKILL mid-conversation keeps every completed turn."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import aiohttp
import pytest

from tests.server_process import ServerProcess, running_server
from voxgate.client.converse import VoiceClient, with_token
from voxgate.personas.memory import MemoryStore
from voxgate.protocol.frames import encode_event

pytestmark = pytest.mark.models

QUESTIONS = ["My name is Robin.", "What is two plus two?", "I live in Lyon."]


async def _typed_turns(server: ServerProcess, texts: list[str], then_start: str) -> list[str]:
    """Complete one typed turn per text, then start one more and return without waiting."""
    replies: list[str] = []
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(with_token(server.ws_url, server.token))
        client = VoiceClient(ws)
        await client.handshake(config={"fillers": False})
        for text in texts:
            turn = client._current()
            turn.done.clear()
            await ws.send_bytes(encode_event({"type": "user_text", "text": text}))
            await asyncio.wait_for(turn.done.wait(), timeout=120)
            replies.append(turn.reply)
            # Let the reply play out: a new turn during playback would interrupt it.
            await asyncio.sleep(len(turn.reply_audio) / 2 / client.output_rate + 0.3)
            turn.reply = ""
            turn.reply_audio.clear()
        await ws.send_bytes(encode_event({"type": "user_text", "text": then_start}))
        await asyncio.sleep(0.3)  # the last turn is in flight when the server dies
    return replies


def test_sigkill_mid_conversation_loses_no_completed_turn(tmp_path: Path) -> None:
    with running_server(workdir=tmp_path) as server:
        replies = asyncio.run(_typed_turns(server, QUESTIONS, "Tell me a long story."))
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(timeout=10)
    assert all(r.strip() for r in replies), replies

    store = MemoryStore(tmp_path / "memory.sqlite3")
    turns = store.turns()
    assert [t.user_text for t in turns][: len(QUESTIONS)] == QUESTIONS
    assert [t.reply_text.strip() for t in turns][: len(QUESTIONS)] == [r.strip() for r in replies]
    # What the persona learned survived too, and the trace has one intact line per turn.
    assert any("Robin" in fact for fact in store.facts("ada"))
    records = [json.loads(line) for line in (tmp_path / "trace.jsonl").read_text().splitlines()]
    assert [r["transcript"] for r in records][: len(QUESTIONS)] == QUESTIONS
    store.close()

    # After a restart the persona still knows the user.
    with running_server(workdir=tmp_path) as server:
        del server
    assert "Robin" in MemoryStore(tmp_path / "memory.sqlite3").summary("ada")
