"""The whole voice loop against a real server, real models and a real WebSocket client."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import numpy as np
import pytest

from tests.server_process import ServerProcess, running_server
from voxgate.audio.wav import read_wav
from voxgate.client.converse import RATE, TurnResult, VoiceClient, converse, with_token
from voxgate.metrics.wer import wer
from voxgate.protocol.frames import FrameType, decode, encode, encode_event

pytestmark = pytest.mark.models

DATA = Path(__file__).resolve().parents[1] / "data"
BECKETT_TEXT = "Ever tried. Ever failed. No matter. Try again. Fail again. Fail better."
# Beckett reads with ~0.7 s pauses between sentences; a longer endpointing
# delay keeps the passage one turn so its transcript can be scored whole.
ONE_TURN = {"endpoint_min_ms": 1200, "endpoint_max_ms": 1500}


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    with running_server() as srv:
        yield srv


@pytest.fixture(scope="module")
def beckett_turn(server: ServerProcess) -> TurnResult:
    audio = read_wav(DATA / "beckett.wav", RATE)[0]
    results, client = asyncio.run(
        converse(server.ws_url, [audio], token=server.token, config=ONE_TURN)
    )
    assert not client.errors, client.errors
    return results[0]


def test_transcript_of_real_speech(beckett_turn: TurnResult) -> None:
    assert wer(BECKETT_TEXT, beckett_turn.transcript) <= 0.15, beckett_turn.transcript


def test_reply_text_and_audio_agree(beckett_turn: TurnResult) -> None:
    from faster_whisper import WhisperModel

    from voxgate.audio.pcm import pcm16_to_float, resample
    from voxgate.models.assets import whisper_model_dir

    assert beckett_turn.reply.strip(), "no reply text"
    assert len(beckett_turn.reply_audio) > 0.5 * 22050 * 2, "less than 0.5 s of reply audio"
    audio = resample(pcm16_to_float(bytes(beckett_turn.reply_audio)), 22050, RATE)
    model = WhisperModel(str(whisper_model_dir()), device="cpu", compute_type="int8")
    segments, _ = model.transcribe(audio, language="en", beam_size=1)
    heard = " ".join(s.text for s in segments)
    assert wer(beckett_turn.reply, heard) <= 0.25, (beckett_turn.reply, heard)


def test_turn_metrics_are_reported(beckett_turn: TurnResult, server: ServerProcess) -> None:
    metrics = beckett_turn.metrics
    assert metrics["type"] == "metrics"
    stamps = metrics["timestamps"]
    for name in (
        "speech_end",
        "final_transcript",
        "llm_first_token",
        "first_tts_audio",
        "first_audio_sent",
        "reply_end",
    ):
        assert name in stamps, name
    assert stamps["speech_end"] <= stamps["final_transcript"] <= stamps["reply_end"]
    durations = metrics["durations"]
    for name in ("endpointing", "stt", "llm_ttft", "tts_first_byte", "voice_to_voice"):
        assert durations[name] is not None and durations[name] >= 0, name
    # The client measured voice-to-voice on its own clock; it agrees with the server's
    # within network + frame pacing slack.
    client_v2v = beckett_turn.client_voice_to_voice_ms
    assert client_v2v is not None
    assert abs(client_v2v - durations["voice_to_voice"]) < 250
    records = [json.loads(line) for line in server.trace_path.read_text().splitlines()]
    assert any(r["transcript"] == beckett_turn.transcript and r["spans"] for r in records)


async def _connect(server: ServerProcess, http: aiohttp.ClientSession) -> VoiceClient:
    ws = await http.ws_connect(with_token(server.ws_url, server.token))
    client = VoiceClient(ws)
    await client.handshake()
    return client


async def _next_error(client: VoiceClient, before: int) -> str:
    for _ in range(100):
        if len(client.errors) > before:
            return client.errors[before]
        await asyncio.sleep(0.05)
    raise AssertionError("no ERROR frame came back")


def test_malformed_frames_get_errors_and_session_survives(server: ServerProcess) -> None:
    async def scenario() -> None:
        async with aiohttp.ClientSession() as http:
            client = await _connect(server, http)
            bad = {
                b"\x01": "truncated",
                b"\x7f\x00abc": "unknown_type",
                encode(FrameType.AUDIO_CHUNK, b"\x00\x01\x02"): "odd_pcm",
                bytes([FrameType.EVENT, 0]) + b"{nope": "bad_json",
                bytes([FrameType.EVENT, 0]) + b"\xff\xfe": "bad_utf8",
                encode(FrameType.AUDIO_CHUNK, bytes(2 * (1 << 20))): "oversized",
                encode_event({"type": "config", "endpoint_min_ms": -5}): "bad_event",
            }
            for data, code in bad.items():
                before = len(client.errors)
                await client.ws.send_bytes(data)
                assert (await _next_error(client, before)).startswith(code)
            before = len(client.errors)
            await client.ws.send_str("hello")
            assert (await _next_error(client, before)).startswith("text_message")
            # Still alive: a real turn goes through on the same socket.
            audio = read_wav(DATA / "clone-test.wav", RATE)[0]
            result = await client.turn(audio, timeout=90)
            assert result.transcript and result.reply.strip()
            await client.close()

    asyncio.run(scenario())


def test_handshake_rejects_wrong_sample_rate(server: ServerProcess) -> None:
    async def scenario() -> tuple[list[bytes], int | None]:
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(with_token(server.ws_url, server.token)) as ws,
        ):
            await ws.send_bytes(
                encode_event({"type": "hello", "protocol": 1, "sample_rate": 44100})
            )
            frames = [msg.data async for msg in ws if msg.type is aiohttp.WSMsgType.BINARY]
            return frames, ws.close_code

    frames, close_code = asyncio.run(scenario())
    errors = [decode(f).text for f in frames if decode(f).type is FrameType.ERROR]
    assert errors and errors[0].startswith("bad_sample_rate") and "16000" in errors[0]
    assert close_code == 1002


def test_token_is_required(server: ServerProcess) -> None:
    async def scenario() -> int:
        async with aiohttp.ClientSession() as http:
            try:
                await http.ws_connect(server.ws_url)
            except aiohttp.WSServerHandshakeError as exc:
                return exc.status
            return 101

    assert asyncio.run(scenario()) == 401


def test_silence_is_not_a_turn(server: ServerProcess) -> None:
    async def scenario() -> VoiceClient:
        async with aiohttp.ClientSession() as http:
            client = await _connect(server, http)
            await client.stream(np.zeros(RATE * 2, dtype=np.float32))
            await client.close()
            return client

    client = asyncio.run(scenario())
    assert not client.errors
    assert not any(e.get("type") == "turn_start" for e in client.events)
