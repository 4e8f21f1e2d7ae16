"""A persona: who answers, in which voice, with what turn-taking preferences."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class VoiceSpec:
    engine: str = "piper"  # "piper" | "kokoro"
    name: str = "en_US-joe-medium"  # piper voice, or kokoro style (or "a:0.5,b:0.5" blend)
    rate: float = 1.0  # speaking rate multiplier (>1 is faster)


@dataclass(frozen=True, slots=True)
class Persona:
    id: str
    name: str
    instructions: str
    facts: tuple[str, ...] = ()
    voice: VoiceSpec = field(default_factory=VoiceSpec)
    fillers: tuple[str, ...] = ()
    endpoint_min_ms: int | None = None
    endpoint_max_ms: int | None = None
    max_reply_tokens: int = 80


class PersonaError(ValueError):
    pass


def persona_from_dict(persona_id: str, data: dict[str, Any]) -> Persona:
    try:
        voice = data.get("voice", {})
        turns = data.get("turns", {})
        return Persona(
            id=persona_id,
            name=str(data["name"]),
            instructions=str(data["instructions"]).strip(),
            facts=tuple(str(f) for f in data.get("facts", [])),
            voice=VoiceSpec(
                engine=str(voice.get("engine", "piper")),
                name=str(voice.get("name", "en_US-joe-medium")),
                rate=float(voice.get("rate", 1.0)),
            ),
            fillers=tuple(str(f) for f in data.get("fillers", [])),
            endpoint_min_ms=turns.get("endpoint_min_ms"),
            endpoint_max_ms=turns.get("endpoint_max_ms"),
            max_reply_tokens=int(data.get("max_reply_tokens", 80)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise PersonaError(f"persona {persona_id!r}: missing or bad field: {exc}") from exc


def load_persona_file(path: Path) -> Persona:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise PersonaError(f"cannot read persona file {path}: {exc}") from exc
    return persona_from_dict(path.stem, data)


def builtin_persona_dir() -> Path:
    return Path(str(files("voxgate.personas").joinpath("data")))


def load_personas(extra_dir: Path | None = None) -> dict[str, Persona]:
    """Built-in personas, overridden by files of the same name in ``extra_dir``."""
    personas: dict[str, Persona] = {}
    for directory in (builtin_persona_dir(), extra_dir):
        if directory is None or not directory.is_dir():
            continue
        for path in sorted(directory.glob("*.toml")):
            persona = load_persona_file(path)
            personas[persona.id] = persona
    return personas
