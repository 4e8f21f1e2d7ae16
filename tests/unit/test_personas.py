"""Persona files: built-ins, validation, overrides, and `voxgate personas list|show|new`."""

from __future__ import annotations

import argparse
import tomllib
from pathlib import Path
from typing import Any

import pytest

from voxgate.config import SessionConfig, config_for
from voxgate.personas.cli import cli_personas, new_persona_file
from voxgate.personas.persona import (
    PersonaError,
    VoiceSpec,
    load_persona_file,
    load_personas,
    parse_blend,
    persona_from_dict,
)

MINIMAL: dict[str, Any] = {"name": "Zed", "instructions": "You are Zed."}


def _with(**changes: Any) -> dict[str, Any]:
    return {**MINIMAL, **changes}


def test_builtins_form_a_room_of_four_distinct_voices() -> None:
    personas = load_personas()
    assert {"ada", "max", "luna", "pip"} <= set(personas)
    voices = [p.voice for p in personas.values()]
    assert len(set(voices)) == len(voices)
    names = [n.lower() for p in personas.values() for n in p.names]
    assert len(set(names)) == len(names), "a name or alias answers for two personas"
    assert personas["pip"].voice.pitch > 1.0 > personas["max"].voice.pitch
    assert personas["luna"].voice.engine == "kokoro"


def test_ada_keeps_its_fields() -> None:
    ada = load_personas()["ada"]
    assert ada.name == "Ada"
    assert ada.voice == VoiceSpec("piper", "en_US-joe-medium", 1.0)
    assert (ada.endpoint_min_ms, ada.endpoint_max_ms, ada.max_reply_tokens) == (400, 1500, 60)
    assert ada.fillers == ("Mm-hmm.", "Let me see.")


def test_minimal_persona_gets_defaults() -> None:
    persona = persona_from_dict("zed", MINIMAL)
    assert persona.voice == VoiceSpec()
    assert persona.endpoint_min_ms is None and persona.interrupt_min_ms is None
    assert persona.names == ("Zed",)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (_with(instruction="typo"), "unknown key"),
        ({"name": "Zed"}, "'instructions' is required"),
        (_with(name="  "), "'name' is required"),
        (_with(voice={"engine": "espeak"}), "voice.engine 'espeak'"),
        (_with(voice={"engine": "kokoro"}), "voice.name is required"),
        (_with(voice={"engine": "kokoro", "name": "a:0.5,,b"}), "empty part"),
        (_with(voice={"engine": "kokoro", "name": "a:-1"}), "must be > 0"),
        (_with(voice={"engine": "kokoro", "name": "a:x"}), "not a number"),
        (_with(voice={"rate": 3.0}), "outside"),
        (_with(voice={"rate": "fast"}), "must be a number"),
        (_with(voice={"pitch": 2}), "voice.pitch 2 is outside"),
        (_with(voice={"tone": 2}), "unknown key(s) in [voice]"),
        (_with(turns={"endpoint_min_ms": 900, "endpoint_max_ms": 300}), ">= turns.endpoint_min"),
        (_with(turns={"endpoint_min_ms": "200"}), "integer number of ms"),
        (_with(facts="one fact"), "facts must be a list"),
        (_with(max_reply_tokens=0), "max_reply_tokens"),
    ],
)
def test_bad_fields_are_named(data: dict[str, Any], message: str) -> None:
    with pytest.raises(PersonaError, match="persona 'zed'") as excinfo:
        persona_from_dict("zed", data)
    assert message in str(excinfo.value)


def test_bad_id_is_rejected() -> None:
    with pytest.raises(PersonaError, match="persona id"):
        persona_from_dict("Zed Two", MINIMAL)


def test_blend_weights_are_normalised() -> None:
    assert parse_blend("jm_kumo") == (("jm_kumo", 1.0),)
    assert parse_blend(" a:3 , b:1 ") == (("a", 0.75), ("b", 0.25))
    assert parse_blend("a,b") == (("a", 0.5), ("b", 0.5))
    with pytest.raises(PersonaError, match="appears twice"):
        parse_blend("a:0.5,a:0.5")


def test_file_in_extra_dir_overrides_builtin(tmp_path: Path) -> None:
    (tmp_path / "ada.toml").write_text('name = "Ada Two"\ninstructions = "You are Ada Two."\n')
    personas = load_personas(tmp_path)
    assert personas["ada"].name == "Ada Two"
    assert "max" in personas


def test_broken_file_names_its_path(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('name = "Bad"\ninstructions = "x"\n[voice]\nrate = 9\n')
    with pytest.raises(PersonaError, match=str(path)):
        load_persona_file(path)


def test_persona_interrupt_preference_reaches_the_session_config() -> None:
    luna = load_personas()["luna"]
    assert luna.interrupt_min_ms == 500
    assert config_for(luna, SessionConfig(), None).interrupt_min_ms == 500
    assert config_for(luna, SessionConfig(), {"interrupt_min_ms": 200}).interrupt_min_ms == 200


# --------------------------------------------------------------------------- cli


def _args(action: str, name: str | None = None,
          directory: Path | None = None) -> argparse.Namespace:
    return argparse.Namespace(action=action, name=name, dir=str(directory) if directory else None)


def test_new_writes_a_template_that_loads(tmp_path: Path) -> None:
    path = new_persona_file(tmp_path / "personas", "night_owl")
    text = path.read_text()
    assert text.count("#") > 10, "the template explains its fields"
    persona = load_persona_file(path)
    assert (persona.id, persona.name) == ("night_owl", "Night Owl")
    assert tomllib.loads(text)["voice"]["engine"] == "piper"


def test_new_refuses_to_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bob.toml"
    path.write_text("mine")
    assert cli_personas(_args("new", "bob", tmp_path)) == 1
    assert path.read_text() == "mine"
    assert "already exists" in capsys.readouterr().err


def test_new_then_list_and_show(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_personas(_args("new", "bob", tmp_path)) == 0
    capsys.readouterr()
    assert cli_personas(_args("list", directory=tmp_path)) == 0
    listing = capsys.readouterr().out
    for persona_id in ("ada", "bob", "luna", "max", "pip"):
        assert f"\n{persona_id} " in f"\n{listing}"
    assert "kokoro:jf_gongitsune" in listing
    assert "pitch 1.35" in listing
    assert cli_personas(_args("show", "bob", tmp_path)) == 0
    assert 'name = "Bob"' in capsys.readouterr().out


def test_show_unknown_and_missing_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_personas(_args("show", "nobody", tmp_path)) == 1
    assert "no persona 'nobody'" in capsys.readouterr().err
    assert cli_personas(_args("new", None, tmp_path)) == 2
    assert cli_personas(_args("new", "Not-An-Id", tmp_path)) == 1
    assert not list(tmp_path.iterdir())


def test_list_flags_a_broken_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "oops.toml").write_text("name = ")
    assert cli_personas(_args("list", directory=tmp_path)) == 1
    assert "oops" in capsys.readouterr().out


def test_example_exchanges_are_validated_and_follow_the_system_message() -> None:
    from voxgate.personas.persona import PersonaError, persona_from_dict
    from voxgate.prompt.assembler import PromptAssembler

    data = {
        "name": "Ada",
        "instructions": "You are Ada.",
        "examples": [{"user": "Capital of Japan?", "reply": "Tokyo."}],
    }
    persona = persona_from_dict("ada", data)
    assert persona.examples == (("Capital of Japan?", "Tokyo."),)
    prompt = PromptAssembler("c").assemble(persona, [], "Hello.")
    assert [m.role for m in prompt.messages] == ["system", "user", "assistant", "user"]
    assert prompt.messages[2].content == "Tokyo."
    assert prompt.stable_messages == 3  # primed once, reused by every turn

    for bad in ([{"user": "Hi"}], [{"user": "Hi", "reply": ""}], "Hi", [{"user": "a", "reply": "b",
                                                                         "extra": "c"}]):
        with pytest.raises(PersonaError, match="examples"):
            persona_from_dict("ada", {**data, "examples": bad})
