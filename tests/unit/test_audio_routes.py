"""Routing the user's audio and the reply's speech by what the model can do: a model
that hears gets each utterance as an ``input_audio`` part and no transcription runs on
the turn's path; a model that speaks is asked for its own audio and nothing is
synthesized; any other model gets the bridges (STT, TTS). The LLM is
voxgate.bench.fake_model_server's recording HTTP server behind the real OpenAICompatEngine;
STT and TTS are fakes that count their calls (tests/fakes.py); the VAD is the real one."""

from __future__ import annotations

import asyncio
import base64
import io
import wave
from typing import Any

from tests.fakes import FakeSTT, FakeTTS, fake_engines, silence, speech
from tests.served_app import serving
from tests.session_harness import EVER_TRIED, Harness
from voxgate.bench.fake_model_server import SPEECH_RATE, FakeModelServer
from voxgate.config import SessionConfig
from voxgate.llm.base import ChatMessage, LLMCapabilities, LLMRequest, LLMUsage, SpeechWanted
from voxgate.llm.openai_compat import OpenAICompatEngine
from voxgate.protocol.frames import FrameType
from voxgate.scheduler import Priority
from voxgate.session import HEARD_NOT_TRANSCRIBED

WORDS = "Ever tried."


class Spoken:
    """One spoken turn against the fake server: what the server got and the client saw."""

    def __init__(self, fake: FakeModelServer, h: Harness, stt: FakeSTT, tts: FakeTTS) -> None:
        self.fake, self.h, self.stt, self.tts = fake, h, stt, tts

    @property
    def user_content(self) -> Any:
        (body,) = self.fake.bodies[-1:]
        user = body["messages"][-1]
        assert user["role"] == "user"
        return user["content"]

    @property
    def metrics(self) -> dict[str, Any]:
        (metrics,) = self.h.events("metrics")
        return metrics


def speak_one_turn(
    fake: FakeModelServer, declared: LLMCapabilities, config: SessionConfig | None = None
) -> Spoken:
    stt = FakeSTT(lambda seconds: WORDS)
    tts = FakeTTS(ms_per_char=40)

    async def scenario() -> Harness:
        async with serving(fake.app) as url:
            llm = OpenAICompatEngine(url, capabilities=declared)
            await llm.read_capabilities()  # as warm() does
            engines = fake_engines(stt, tts=tts)
            engines.llm = llm
            h = Harness(engines, config or SessionConfig(fillers=False, reply_guard=False))
            await h.start()
            await h.feed(speech(start_s=EVER_TRIED[0], end_s=EVER_TRIED[1]))
            await h.feed(silence(2.0))
            await h.wait_for_done(1, timeout_s=20)
            await h.conn.close()
            await llm.close()
            return h

    return Spoken(fake, asyncio.run(scenario()), stt, tts)


def wav_seconds(encoded: str) -> float:
    with wave.open(io.BytesIO(base64.b64decode(encoded)), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 16000)
        return wav.getnframes() / wav.getframerate()


def test_a_model_that_hears_gets_the_utterance_and_no_transcription_runs() -> None:
    fake = FakeModelServer(modalities={"vision": False, "audio": True})
    quiet = SessionConfig(fillers=False, reply_guard=False, interim_stt=False)
    turn = speak_one_turn(fake, LLMCapabilities(), quiet)  # /props says it hears
    (audio,) = turn.user_content  # no words to send: nothing transcribed them
    assert audio["type"] == "input_audio" and audio["input_audio"]["format"] == "wav"
    # All of the speech from the stream's start (the pre-roll reaches back past it) to
    # the pause; not the silence after it, which the stream went on sending.
    speech_end_s = turn.metrics["timestamps"]["speech_end"] / 1000
    assert speech_end_s <= wav_seconds(audio["input_audio"]["data"]) <= speech_end_s + 0.3
    assert turn.stt.calls == []
    assert turn.metrics["stt_calls"] == turn.metrics["stt_final_calls"] == 0
    assert turn.metrics["routes"] == {"hearing": "audio", "speech": "tts"}
    # The turn's end is told (a client records the user's turn), with no words claimed.
    assert turn.h.transcripts(final=True) == [""]
    assert turn.tts.texts == ["Blue."]  # the reply still goes through the TTS bridge
    # The history keeps the user's turn, though no words were written down.
    history = turn.h.session.history
    assert [(m.role, m.content) for m in history] == [
        ("user", HEARD_NOT_TRANSCRIBED),
        ("assistant", "Blue."),
    ]


def test_with_interim_captions_only_interim_decodes_run() -> None:
    """Captions while the user speaks are interim decodes; none is the turn's final."""
    fake = FakeModelServer(modalities={"audio": True})
    turn = speak_one_turn(fake, LLMCapabilities())
    assert turn.stt.calls, "the interim captions ran"
    assert all(priority is not Priority.STT_FINAL for _, priority in turn.stt.calls)
    assert turn.metrics["stt_final_calls"] == 0
    # The fake STT answers at once, so an interim covered the speech before the commit:
    # its words go along with the audio, and are the turn's transcript.
    text, audio = turn.user_content
    assert text == {"type": "text", "text": WORDS} and audio["type"] == "input_audio"
    assert turn.h.transcripts(final=True) == [WORDS]


def test_a_model_that_speaks_is_asked_for_audio_and_nothing_is_synthesized() -> None:
    fake = FakeModelServer(modalities=None)
    turn = speak_one_turn(fake, LLMCapabilities(audio_out=True, voice="verse"))
    body = fake.bodies[-1]
    assert body["modalities"] == ["text", "audio"]
    assert body["audio"] == {"voice": "verse", "format": "pcm16"}
    assert turn.tts.texts == []
    assert turn.metrics["tts_calls"] == 0
    assert turn.metrics["routes"] == {"speech": "model"}
    # All of the model's speech reached the client, at the session's output rate.
    sent = sum(len(f.payload) // 2 for f in turn.h.frames if f.type is FrameType.TTS_AUDIO)
    model_samples = len(fake.speech) // 2
    assert abs(sent - model_samples * 16000 / SPEECH_RATE) <= 16
    said = [f.text for f in turn.h.frames if f.type is FrameType.LLM_CHUNK]
    assert "".join(said).strip() == "Blue."  # the model's transcript of its speech
    # The user's words came through the STT bridge: this model does not hear.
    assert turn.user_content == WORDS
    assert any(priority is Priority.STT_FINAL for _, priority in turn.stt.calls)


def test_any_other_model_gets_the_bridges() -> None:
    fake = FakeModelServer(modalities={"vision": False, "audio": False})
    turn = speak_one_turn(fake, LLMCapabilities())
    body = fake.bodies[-1]
    assert "modalities" not in body and "audio" not in body
    assert turn.user_content == WORDS  # plain text, no parts
    assert turn.metrics["stt_calls"] >= 1 and turn.metrics["tts_calls"] == 1
    assert turn.metrics["routes"] == {"speech": "tts"}
    assert turn.h.transcripts(final=True) == [WORDS]


def test_speech_of_a_reply_the_guard_fails_is_never_played() -> None:
    """The model answers in markdown (a guard rule: it cannot be said) on every attempt:
    none of its speech goes out; the guard's fallback line is synthesized instead."""
    bad = "**Sure**, here is a list of things to try today."
    fake = FakeModelServer(modalities=None, reply=bad)
    guarded = SessionConfig(fillers=False, reply_guard=True)
    turn = speak_one_turn(fake, LLMCapabilities(audio_out=True), guarded)
    assert len(fake.bodies) >= 2  # regenerated, then the fallback
    assert all(body.get("modalities") == ["text", "audio"] for body in fake.bodies)
    (fallback,) = turn.tts.texts
    said = "".join(f.text for f in turn.h.frames if f.type is FrameType.LLM_CHUNK)
    assert said.strip() == fallback and "Sure" not in said
    sent = sum(len(f.payload) // 2 for f in turn.h.frames if f.type is FrameType.TTS_AUDIO)
    assert sent == len(fallback) * 40 * 16  # the fake TTS's audio only: 40 ms a character
    assert turn.metrics["tts_calls"] == 1
    assert [g["action"] for g in turn.metrics["guard"]][-1] == "fallback"


def test_the_engine_hands_on_the_speech_whole_even_when_chunks_split_samples() -> None:
    fake = FakeModelServer(modalities=None)
    heard: list[tuple[bytes, int]] = []

    async def scenario() -> str:
        async with serving(fake.app) as url:
            llm = OpenAICompatEngine(url)
            wanted = SpeechWanted("verse", lambda pcm, rate: heard.append((pcm, rate)))
            request = LLMRequest("ada", [ChatMessage("user", "Hi")], speech=wanted)
            text = "".join([delta async for delta in llm.stream(request, LLMUsage())])
            await llm.close()
            return text

    assert asyncio.run(scenario()) == "Blue."  # the speech's transcript is the text
    assert all(len(pcm) % 2 == 0 and rate == SPEECH_RATE for pcm, rate in heard)
    assert b"".join(pcm for pcm, _ in heard) == fake.speech
