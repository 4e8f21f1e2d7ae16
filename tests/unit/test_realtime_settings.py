"""session.update: GA and beta shapes, the endpointing it maps to, all-or-nothing errors,
and session objects the official SDK's own types accept."""

from __future__ import annotations

import pytest
from openai.types.beta.realtime.session import Session as BetaSession
from openai.types.realtime.realtime_session_create_request import RealtimeSessionCreateRequest

from voxgate.realtime.audio_formats import PCMA, PCMU
from voxgate.realtime.settings import RealtimeSettings, session_object, updated_settings

START = RealtimeSettings(voice="piper:en_US-joe-medium")


def test_ga_update_maps_onto_voxgate() -> None:
    settings = updated_settings(
        START,
        {
            "type": "realtime",
            "instructions": "Speak like a pirate.",
            "output_modalities": ["text"],
            "max_output_tokens": 50,
            "audio": {
                "input": {
                    "format": {"type": "audio/pcmu"},
                    "turn_detection": {
                        "type": "server_vad",
                        "silence_duration_ms": 700,
                        "threshold": 0.6,
                        "prefix_padding_ms": 200,
                    },
                },
                "output": {"format": {"type": "audio/pcma"}, "voice": "alloy"},
            },
        },
    )
    assert settings.instructions == "Speak like a pirate."
    assert not settings.speak and settings.max_output_tokens == 50
    assert settings.input_format.kind == PCMU and settings.output_format.kind == PCMA
    assert settings.voice == "alloy"
    assert settings.config_update() == {
        "endpoint_min_ms": 700,
        "endpoint_max_ms": 1500,
        "vad_threshold": 0.6,
    }


def test_beta_update_and_semantic_eagerness() -> None:
    settings = updated_settings(
        START,
        {
            "modalities": ["text", "audio"],
            "input_audio_format": "g711_ulaw",
            "turn_detection": {"type": "semantic_vad", "eagerness": "high"},
            "max_response_output_tokens": "inf",
        },
    )
    assert settings.speak and settings.max_output_tokens is None
    assert settings.input_format.kind == PCMU
    assert settings.config_update()["endpoint_min_ms"] == 200
    low = updated_settings(START, {"turn_detection": {"type": "semantic_vad", "eagerness": "low"}})
    assert low.config_update()["endpoint_max_ms"] > settings.config_update()["endpoint_max_ms"]
    manual = updated_settings(START, {"turn_detection": None})
    assert manual.turn_detection is None and manual.config_update() == {}


@pytest.mark.parametrize(
    ("session", "problem"),
    [
        ({"instructions": "x", "bogus": 1}, "unknown session field"),
        ({"instructions": "x", "turn_detection": {"create_response": False}}, "not supported"),
        ({"instructions": "x", "tools": [{"type": "function", "name": "f"}]}, "tools"),
        ({"instructions": "x", "output_modalities": ["video"]}, "output_modalities"),
        ({"instructions": "x", "turn_detection": {"threshold": 2}}, "threshold"),
        ({"instructions": "x", "max_output_tokens": 0}, "max_output_tokens"),
        ({"instructions": "x", "audio": {"input": {"format": "mp3"}}}, "audio format"),
        ("not an object", "'session' object"),
    ],
)
def test_a_bad_update_changes_nothing(session: object, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        updated_settings(START, session)


def test_session_objects_validate_against_the_sdk_types() -> None:
    settings = updated_settings(START, {"instructions": "Hi.", "turn_detection": None})
    ga = session_object(settings, session_id="sess_1", model="ada", beta=False)
    parsed = RealtimeSessionCreateRequest.model_validate(ga)
    assert parsed.audio is not None and parsed.audio.input is not None
    assert parsed.audio.input.turn_detection is None
    beta = session_object(START, session_id="sess_1", model="ada", beta=True)
    parsed_beta = BetaSession.model_validate({**beta, "model": None})  # a persona, not an enum
    assert parsed_beta.input_audio_format == "pcm16"
    assert parsed_beta.turn_detection is not None
    assert parsed_beta.turn_detection.type == "server_vad"
