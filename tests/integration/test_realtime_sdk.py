"""The OpenAI Realtime endpoint driven by the official ``openai`` SDK (pinned in
pyproject.toml), against a real ``voxgate serve`` with the real models."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
from openai import AsyncOpenAI

from tests.server_process import ServerProcess, running_server
from voxgate.audio.pcm import resample
from voxgate.audio.wav import read_wav
from voxgate.metrics.wer import wer
from voxgate.realtime.audio_formats import MULAW_TO_PCM

pytestmark = pytest.mark.models

DATA = Path(__file__).resolve().parents[1] / "data"
CLONE_TEXT = "I do. I think that America do it very well."
TURN_TIMEOUT_S = 120
CHUNK_MS = 20


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    with running_server() as srv:
        yield srv


def sdk(server: ServerProcess) -> AsyncOpenAI:
    # The beta client always dials wss:// from base_url; websocket_base_url says ws://.
    return AsyncOpenAI(
        api_key=server.token,
        base_url=f"{server.http_url}/v1",
        websocket_base_url=f"{server.http_url.replace('http', 'ws')}/v1",
    )


def speech_24k(name: str = "clone-test.wav", silence_s: float = 2.0) -> bytes:
    """Real speech resampled to the Realtime API's 24 kHz PCM16, with trailing silence."""
    audio = resample(read_wav(DATA / name, 16000)[0], 16000, 24000)
    audio = np.concatenate([audio, np.zeros(int(24000 * silence_s), np.float32)])
    return bytes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())


async def stream_real_time(conn: Any, pcm: bytes) -> None:
    step = 24000 * 2 * CHUNK_MS // 1000
    start = time.monotonic()
    for n, i in enumerate(range(0, len(pcm), step)):
        await conn.input_audio_buffer.append(audio=base64.b64encode(pcm[i : i + step]).decode())
        await asyncio.sleep(max(start + (n + 1) * CHUNK_MS / 1000 - time.monotonic(), 0))


async def events_until(conn: Any, last: str, timeout: float = TURN_TIMEOUT_S) -> list[Any]:
    """Every event up to and including the first of type ``last``."""
    seen: list[Any] = []
    async with asyncio.timeout(timeout):
        async for event in conn:
            seen.append(event)
            if event.type == last:
                return seen
    raise AssertionError(f"the connection closed before {last}: {[e.type for e in seen]}")


def types_of(events: list[Any]) -> list[str]:
    return [e.type for e in events]


def audio_of(events: list[Any], kind: str = "response.output_audio.delta") -> bytes:
    return b"".join(base64.b64decode(e.delta) for e in events if e.type == kind)


@asynccontextmanager
async def connected(server: ServerProcess, **options: Any) -> AsyncIterator[Any]:
    async with sdk(server).realtime.connect(model="gpt-realtime", **options) as conn:
        created = await conn.recv()
        assert created.type == "session.created", created
        yield conn


def user_item(text: str, *parts: dict[str, Any]) -> dict[str, Any]:
    """A user message item: its words, then any other content parts."""
    content = [{"type": "input_text", "text": text}, *parts]
    return {"type": "message", "role": "user", "content": content}


async def say(conn: Any, text: str, **response: Any) -> list[Any]:
    await conn.conversation.item.create(item=user_item(text))
    await conn.response.create(**({"response": response} if response else {}))
    return await events_until(conn, "response.done")


def transcribe_24k(pcm: bytes) -> str:
    from faster_whisper import WhisperModel

    from voxgate.models.assets import whisper_model_dir

    audio = resample(np.frombuffer(pcm, "<i2").astype(np.float32) / 32768, 24000, 16000)
    model = WhisperModel(str(whisper_model_dir()), device="cpu", compute_type="int8")
    segments, _ = model.transcribe(audio, language="en", beam_size=1)
    return " ".join(s.text for s in segments)


def test_spoken_turn_in_real_time(server: ServerProcess) -> None:
    async def scenario() -> list[Any]:
        async with connected(server) as conn:
            sender = asyncio.create_task(stream_real_time(conn, speech_24k()))
            events = await events_until(conn, "response.done")
            await sender
            events += await events_until(conn, "voxgate.turn.metrics", timeout=10)
            return events

    events = asyncio.run(scenario())
    kinds = types_of(events)
    # The documented order, stage by stage.
    order = [
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.input_audio_transcription.completed",
        "response.created",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_audio.delta",
        "response.output_audio.done",
        "response.output_audio_transcript.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.done",
        "voxgate.turn.metrics",
    ]
    positions = [kinds.index(kind) for kind in order]
    assert positions == sorted(positions), kinds
    completed = next(
        e for e in events if e.type == "conversation.item.input_audio_transcription.completed"
    )
    assert wer(CLONE_TEXT, completed.transcript) <= 0.3, completed.transcript
    committed = next(e for e in events if e.type == "input_audio_buffer.committed")
    assert completed.item_id == committed.item_id
    done = next(e for e in events if e.type == "response.done").response
    assert done.status == "completed"
    assert done.usage is not None and done.usage.output_tokens > 0
    transcript = next(e for e in events if e.type == "response.output_audio_transcript.done")
    deltas = "".join(e.delta for e in events if e.type == "response.output_audio_transcript.delta")
    assert transcript.transcript.strip() and transcript.transcript == deltas.strip()
    pcm = audio_of(events)
    assert len(pcm) > 0.5 * 24000 * 2, "less than 0.5 s of reply audio"
    # The audio really is 24 kHz speech of the transcript (a wrong rate garbles it).
    heard = transcribe_24k(pcm)
    assert wer(transcript.transcript, heard) <= 0.35, (transcript.transcript, heard)
    metrics = next(e for e in events if e.type == "voxgate.turn.metrics")
    assert metrics.response_id == done.id  # type: ignore[attr-defined]


def test_text_turn_and_text_only_reply(server: ServerProcess) -> None:
    async def scenario() -> tuple[list[Any], list[Any]]:
        async with connected(server) as conn:
            spoken = await say(conn, "What is the capital of France? Answer in one sentence.")
            written = await say(
                conn,
                "And of Italy? One sentence.",
                output_modalities=["text"],
                max_output_tokens=40,
            )
            return spoken, written

    spoken, written = asyncio.run(scenario())
    kinds = types_of(spoken)
    assert kinds[:2] == ["conversation.item.added", "conversation.item.done"]
    assert "response.output_audio.delta" in kinds
    spoken_text = next(e for e in spoken if e.type == "response.output_audio_transcript.done")
    assert "paris" in spoken_text.transcript.lower()
    assert "response.output_audio.delta" not in types_of(written)
    text = next(e for e in written if e.type == "response.output_text.done").text
    assert "rome" in text.lower(), text
    assert next(e for e in written if e.type == "response.done").response.status == "completed"


def test_truncate_keeps_only_what_was_heard(server: ServerProcess) -> None:
    async def scenario() -> tuple[list[Any], list[Any], Any]:
        async with connected(server) as conn:
            story = await say(conn, "Tell me a short story about a lighthouse keeper.")
            item_id = next(e for e in story if e.type == "response.output_item.done").item.id
            await conn.conversation.item.truncate(
                item_id=item_id, content_index=0, audio_end_ms=1500
            )
            truncated = await events_until(conn, "conversation.item.truncated", timeout=10)
            await conn.send({"type": "conversation.item.retrieve", "item_id": item_id})
            retrieved = (await events_until(conn, "conversation.item.retrieved", timeout=10))[-1]
            return story, truncated, retrieved

    story, truncated, retrieved = asyncio.run(scenario())
    full = next(e for e in story if e.type == "response.output_audio_transcript.done").transcript
    assert truncated[-1].audio_end_ms == 1500
    heard = retrieved.item.content[0].transcript
    assert retrieved.item.status == "incomplete"
    # 1.5 s of speech is a few words: a strict prefix of the full reply.
    assert 0 < len(heard.split()) < len(full.split()), (heard, full)
    assert full.startswith(heard.split()[0])
    # The next turn's context holds the cut reply: the server logged the correction.
    records = [json.loads(line) for line in server.trace_path.read_text().splitlines()]
    assert any(r.get("type") == "turn_cut" and r.get("heard") == heard for r in records)


def test_response_cancel_mid_reply(server: ServerProcess) -> None:
    async def scenario() -> tuple[list[Any], list[Any]]:
        async with connected(server) as conn:
            await conn.conversation.item.create(item=user_item("Tell me a long story about a cat."))
            await conn.response.create()
            before = await events_until(conn, "response.output_audio.delta")
            await conn.response.cancel()
            after = await events_until(conn, "response.done")
            again = await say(conn, "Say hello in three words.")
            return before + after, again

    cancelled, again = asyncio.run(scenario())
    done = next(e for e in cancelled if e.type == "response.done").response
    assert done.status == "cancelled"
    assert done.status_details.reason == "client_cancelled"
    assert done.output[0].status == "incomplete"
    # The session goes on: the next response completes.
    assert next(e for e in again if e.type == "response.done").response.status == "completed"


def test_manual_commit_without_turn_detection(server: ServerProcess) -> None:
    async def scenario() -> tuple[list[Any], list[Any], list[Any]]:
        async with connected(server) as conn:
            await conn.session.update(
                session={"type": "realtime", "audio": {"input": {"turn_detection": None}}}
            )
            updated = await events_until(conn, "session.updated", timeout=10)
            pcm = speech_24k(silence_s=0.2)
            step = 24000 * 2 // 10  # 100 ms pieces, twice real time
            for i in range(0, len(pcm), step):
                await conn.input_audio_buffer.append(
                    audio=base64.b64encode(pcm[i : i + step]).decode()
                )
                await asyncio.sleep(0.05)
            # Without turn detection nothing is committed or answered on its own.
            with pytest.raises(TimeoutError):
                await events_until(conn, "input_audio_buffer.committed", timeout=1.5)
            await conn.input_audio_buffer.commit()
            committed = await events_until(
                conn, "conversation.item.input_audio_transcription.completed", timeout=60
            )
            await conn.response.create()
            answered = await events_until(conn, "response.done")
            return updated, committed, answered

    updated, committed, answered = asyncio.run(scenario())
    assert updated[-1].session.audio.input.turn_detection is None
    kinds = types_of(committed)
    assert "input_audio_buffer.speech_started" not in kinds
    assert kinds.index("input_audio_buffer.committed") < kinds.index("conversation.item.added")
    assert wer(CLONE_TEXT, committed[-1].transcript) <= 0.3, committed[-1].transcript
    assert next(e for e in answered if e.type == "response.done").response.status == "completed"
    assert audio_of(answered)


def test_bad_events_get_errors_and_the_session_goes_on(server: ServerProcess) -> None:
    async def scenario() -> list[tuple[str, Any]]:
        async with connected(server) as conn:
            ws = conn._connection  # the SDK's socket, to send what the SDK would not build
            cases: list[tuple[str, str | dict[str, Any]]] = [
                ("invalid_json", "{nope"),
                ("invalid_event_type", {"type": "nonsense.event"}),
                (
                    "item_not_found",
                    {
                        "type": "conversation.item.truncate",
                        "item_id": "x",
                        "content_index": 0,
                        "audio_end_ms": 5,
                    },
                ),
                (
                    "invalid_value",
                    {
                        "type": "session.update",
                        "session": {"audio": {"input": {"format": {"type": "audio/flac"}}}},
                    },
                ),
                ("invalid_value", {"type": "input_audio_buffer.append", "audio": "%%%"}),
                (
                    "audio_too_large",
                    {"type": "input_audio_buffer.append", "audio": "A" * (1 << 20 | 4)},
                ),
                ("missing_required_parameter", {"type": "conversation.item.create"}),
                ("response_cancel_not_active", {"type": "response.cancel"}),
            ]
            answers = []
            for n, (code, event) in enumerate(cases):
                if isinstance(event, dict):
                    event = json.dumps({**event, "event_id": f"evt_{n}"})
                await ws.send(event)
                error = (await events_until(conn, "error", timeout=10))[-1]
                answers.append((code, error))
            await conn.session.update(session={"type": "realtime", "instructions": "Be brief."})
            answers.append(("ok", (await events_until(conn, "session.updated", timeout=10))[-1]))
            return answers

    answers = asyncio.run(scenario())
    for n, (code, event) in enumerate(answers[:-1]):
        assert event.error.type == "invalid_request_error", event
        assert event.error.code == code, (code, event)
        assert event.error.message
        if n > 0:
            assert event.error.event_id == f"evt_{n}"
    assert answers[-1][1].session.instructions == "Be brief."


def test_beta_client_gets_beta_events(server: ServerProcess) -> None:
    async def scenario() -> tuple[Any, list[Any], list[Any]]:
        client = sdk(server)
        async with client.beta.realtime.connect(model="gpt-4o-realtime-preview") as conn:
            created = await conn.recv()
            await conn.session.update(session={"output_audio_format": "g711_ulaw"})
            updated = await events_until(conn, "session.updated", timeout=10)
            await conn.conversation.item.create(
                item={
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": "Say: good morning."}],
                }
            )
            await conn.response.create()
            return created, updated, await events_until(conn, "response.done")

    created, updated, events = asyncio.run(scenario())
    assert created.type == "session.created"
    assert created.session.input_audio_format == "pcm16"
    assert updated[-1].session.output_audio_format == "g711_ulaw"
    kinds = types_of(events)
    assert "conversation.item.created" in kinds and "conversation.item.added" not in kinds
    assert "response.audio.delta" in kinds and "response.output_audio.delta" not in kinds
    assert "response.audio_transcript.done" in kinds
    # G.711 mu-law at 8 kHz: one byte per sample; decoded it is real speech.
    ulaw = audio_of(events, "response.audio.delta")
    assert len(ulaw) > 0.3 * 8000
    pcm8 = MULAW_TO_PCM[np.frombuffer(ulaw, np.uint8)]
    pcm24 = resample(pcm8.astype(np.float32) / 32768, 8000, 24000)
    said = next(e for e in events if e.type == "response.audio_transcript.done").transcript
    heard = transcribe_24k(bytes((pcm24 * 32767).astype("<i2").tobytes()))
    assert wer(said, heard) <= 0.4, (said, heard)


def test_unknown_model_and_missing_token(server: ServerProcess) -> None:
    async def scenario() -> tuple[Any, int]:
        async with sdk(server).realtime.connect(model="no-such-persona") as conn:
            error = await conn.recv()
        async with aiohttp.ClientSession() as http:
            url = server.http_url.replace("http", "ws") + "/v1/realtime"
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await http.ws_connect(url)
        return error, refused.value.status

    error, status = asyncio.run(scenario())
    assert error.type == "error" and error.error.code == "invalid_model"
    assert "ada" in error.error.message and "luna" in error.error.message  # the personas
    assert status == 401


def sign_jpeg(word: str) -> bytes:
    """A white board with ``word`` on it, as a camera might see it."""
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("RGB", (640, 480), (70, 110, 60))
    draw = ImageDraw.Draw(image)
    draw.rectangle((60, 170, 580, 310), fill="white")
    draw.text((110, 200), word, fill="black", font=ImageFont.load_default(size=64))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    return out.getvalue()


def test_a_picture_sent_as_input_image_is_read_for_the_answer(server: ServerProcess) -> None:
    """conversation.item.create with an input_image (the official SDK's own types), then
    response.create at once: the answer knows what the picture says (the offline bridge
    read it: the default model does not see)."""
    url = "data:image/jpeg;base64," + base64.b64encode(sign_jpeg("EXIT")).decode()

    async def scenario() -> list[Any]:
        async with connected(server) as conn:
            picture = {"type": "input_image", "image_url": url}
            question = "What word is on the sign I'm showing?"
            await conn.conversation.item.create(item=user_item(question, picture))
            await conn.response.create()
            return await events_until(conn, "response.done")

    events = asyncio.run(scenario())
    added = next(e for e in events if e.type == "conversation.item.added")
    assert [part.type for part in added.item.content] == ["input_text", "input_image"]
    said = next(e for e in events if e.type == "response.output_audio_transcript.done")
    assert "exit" in said.transcript.lower(), said.transcript
