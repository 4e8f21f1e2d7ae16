"""A persona: who answers, in which voice, with what turn-taking preferences.

Personas are TOML files (see ``data/ada.toml`` and ``voxgate personas new``).
Files are validated when loaded, so a typo fails at start-up with the file
and field named, not in the middle of a conversation.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

from voxgate.tools.mcp_spec import McpServerSpec, parse_mcp_servers

ENGINES = ("piper", "kokoro")
# Kokoro accepts speeds in [0.5, 2.0]; Piper's length scale works in the same
# range, and outside it both sound broken, so one range serves both engines.
MIN_RATE = 0.5
MAX_RATE = 2.0
PERSONA_ID = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")

_TOP_KEYS = frozenset({"name", "instructions", "description", "aliases", "facts", "fillers",
                       "max_reply_tokens", "voice", "turns", "examples", "tools",
                       "holding_line", "mcp_servers"})
MAX_EXAMPLES = 8
# Beyond about ±40 % the resampled voice turns cartoonish.
MIN_PITCH, MAX_PITCH = 0.6, 1.6
_VOICE_KEYS = frozenset({"engine", "name", "rate", "pitch"})
_TURN_KEYS = frozenset({"endpoint_min_ms", "endpoint_max_ms", "interrupt_min_ms"})


@dataclass(frozen=True, slots=True)
class VoiceSpec:
    engine: str = "piper"  # "piper" | "kokoro"
    name: str = "en_US-joe-medium"  # piper voice, or kokoro style (or "a:0.5,b:0.5" blend)
    rate: float = 1.0  # speaking rate multiplier (>1 is faster)
    # Pitch multiplier (>1 is higher), applied to Piper by resampling: one bundled
    # Piper voice becomes several distinct, still real-time voices.
    pitch: float = 1.0

    def blend(self) -> tuple[tuple[str, float], ...]:
        """The style names and their weights (summing to 1) for a Kokoro voice."""
        return parse_blend(self.name)

    def label(self) -> str:
        pitch = f" pitch {self.pitch:g}" if self.pitch != 1.0 else ""
        return f"{self.engine}:{self.name} x{self.rate:g}{pitch}"


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
    # Other names speech recognition may write for this one ("Juneau" for "Juno").
    aliases: tuple[str, ...] = ()
    description: str = ""  # one line for `voxgate personas list`
    interrupt_min_ms: int | None = None  # how long the user must talk over it to cut it off
    # Example exchanges (user line, reply) placed before the conversation: they show a
    # small model how to behave better than instructions do, and sit in the cached prefix.
    examples: tuple[tuple[str, str], ...] = ()
    # Tools it may call: a built-in name ("current_time") or "package.module:function".
    tools: tuple[str, ...] = ()
    holding_line: str = "One moment."  # said when a tool takes a while
    # MCP servers whose tools it may call, connected at start-up (voxgate.tools.mcp_client).
    mcp_servers: tuple[McpServerSpec, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        """Every name the persona answers to."""
        return (self.name, *self.aliases)


class PersonaError(ValueError):
    pass


def parse_blend(spec: str) -> tuple[tuple[str, float], ...]:
    """``"af_x"`` -> ((af_x, 1.0),); ``"af_x:0.6,bf_y:0.4"`` -> weights normalised to sum 1.

    Normalising keeps a blend inside the range of the styles it mixes: weights
    that sum to 2 would double the style vector and the voice falls apart.
    A part without a weight counts 1.
    """
    parts: list[tuple[str, float]] = []
    for raw in spec.split(","):
        item = raw.strip()
        if not item:
            raise PersonaError(f"voice {spec!r}: empty part in the blend")
        name, sep, weight_text = item.partition(":")
        name = name.strip()
        if not name:
            raise PersonaError(f"voice {spec!r}: a blend part has no style name")
        try:
            weight = float(weight_text) if sep else 1.0
        except ValueError as exc:
            raise PersonaError(f"voice {spec!r}: weight {weight_text!r} is not a number") from exc
        if not weight > 0.0:  # also rejects NaN
            raise PersonaError(f"voice {spec!r}: weight of {name!r} must be > 0")
        parts.append((name, weight))
    names = [n for n, _ in parts]
    if len(set(names)) != len(names):
        raise PersonaError(f"voice {spec!r}: a style appears twice")
    total = sum(w for _, w in parts)
    return tuple((n, w / total) for n, w in parts)


def _strings(value: Any, what: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise PersonaError(f"{what} must be a list of strings")
    return tuple(v.strip() for v in value if v.strip())


def _table(data: dict[str, Any], key: str, allowed: frozenset[str]) -> dict[str, Any]:
    table = data.get(key, {})
    if not isinstance(table, dict):
        raise PersonaError(f"[{key}] must be a table")
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise PersonaError(f"unknown key(s) in [{key}]: {', '.join(unknown)} "
                           f"(known: {', '.join(sorted(allowed))})")
    return table


def _examples(value: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, list) or len(value) > MAX_EXAMPLES:
        raise PersonaError(f"examples must be a list of at most {MAX_EXAMPLES} tables")
    out = []
    for index, item in enumerate(value, start=1):
        if (
            not isinstance(item, dict)
            or set(item) != {"user", "reply"}
            or not all(isinstance(v, str) and v.strip() for v in item.values())
        ):
            raise PersonaError(
                f"examples[{index}] must be a table with two non-empty strings, user and reply"
            )
        out.append((item["user"].strip(), item["reply"].strip()))
    return tuple(out)


def _ms(table: dict[str, Any], key: str) -> int | None:
    value = table.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 10_000:
        raise PersonaError(f"turns.{key} must be an integer number of ms in [0, 10000]")
    return value


def _voice(table: dict[str, Any]) -> VoiceSpec:
    engine = str(table.get("engine", "piper"))
    if engine not in ENGINES:
        raise PersonaError(f"voice.engine {engine!r} is not one of {', '.join(ENGINES)}")
    default_name = "en_US-joe-medium" if engine == "piper" else ""
    name = str(table.get("name", default_name)).strip()
    if not name:
        raise PersonaError(f"voice.name is required for engine {engine!r}")
    rate = table.get("rate", 1.0)
    if isinstance(rate, bool) or not isinstance(rate, int | float):
        raise PersonaError("voice.rate must be a number")
    if not MIN_RATE <= float(rate) <= MAX_RATE:
        raise PersonaError(f"voice.rate {rate} is outside [{MIN_RATE}, {MAX_RATE}]")
    pitch = table.get("pitch", 1.0)
    if isinstance(pitch, bool) or not isinstance(pitch, int | float):
        raise PersonaError("voice.pitch must be a number")
    if not MIN_PITCH <= float(pitch) <= MAX_PITCH:
        raise PersonaError(f"voice.pitch {pitch} is outside [{MIN_PITCH}, {MAX_PITCH}]")
    if engine == "kokoro":
        parse_blend(name)  # syntax only: which styles exist is the engine's to say
    return VoiceSpec(engine=engine, name=name, rate=float(rate), pitch=float(pitch))


def _build(persona_id: str, data: dict[str, Any]) -> Persona:
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise PersonaError(f"unknown key(s): {', '.join(unknown)} "
                           f"(known: {', '.join(sorted(_TOP_KEYS))})")
    for key in ("name", "instructions"):
        if not isinstance(data.get(key), str) or not data[key].strip():
            raise PersonaError(f"{key!r} is required and must be a non-empty string")
    turns = _table(data, "turns", _TURN_KEYS)
    endpoint_min, endpoint_max = _ms(turns, "endpoint_min_ms"), _ms(turns, "endpoint_max_ms")
    if endpoint_min is not None and endpoint_max is not None and endpoint_max < endpoint_min:
        raise PersonaError("turns.endpoint_max_ms must be >= turns.endpoint_min_ms")
    max_tokens = data.get("max_reply_tokens", 80)
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) \
            or not 1 <= max_tokens <= 2048:
        raise PersonaError("max_reply_tokens must be an integer in [1, 2048]")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise PersonaError("description must be a string")
    return Persona(
        id=persona_id,
        name=data["name"].strip(),
        instructions=data["instructions"].strip(),
        facts=_strings(data.get("facts", []), "facts"),
        voice=_voice(_table(data, "voice", _VOICE_KEYS)),
        fillers=_strings(data.get("fillers", []), "fillers"),
        endpoint_min_ms=endpoint_min,
        endpoint_max_ms=endpoint_max,
        max_reply_tokens=max_tokens,
        aliases=_strings(data.get("aliases", []), "aliases"),
        description=" ".join(description.split()),
        interrupt_min_ms=_ms(turns, "interrupt_min_ms"),
        examples=_examples(data.get("examples", [])),
        tools=_strings(data.get("tools", []), "tools"),
        holding_line=_holding_line(data.get("holding_line", "One moment.")),
        mcp_servers=_mcp_servers(data.get("mcp_servers", [])),
    )


def _mcp_servers(value: Any) -> tuple[McpServerSpec, ...]:
    try:
        return parse_mcp_servers(value)
    except ValueError as exc:
        raise PersonaError(str(exc)) from None


def _holding_line(value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 80:
        raise PersonaError("holding_line must be a short sentence (at most 80 characters)")
    return " ".join(value.split())


def persona_from_dict(persona_id: str, data: dict[str, Any]) -> Persona:
    if not PERSONA_ID.match(persona_id):
        raise PersonaError(f"persona id {persona_id!r} must match {PERSONA_ID.pattern} "
                           "(lower case; it is the file name without .toml)")
    try:
        return _build(persona_id, data)
    except PersonaError as exc:
        raise PersonaError(f"persona {persona_id!r}: {exc}") from exc


def load_persona_file(path: Path) -> Persona:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise PersonaError(f"cannot read persona file {path}: {exc}") from exc
    try:
        return persona_from_dict(path.stem, data)
    except PersonaError as exc:
        raise PersonaError(f"{path}: {exc}") from exc


def builtin_persona_dir() -> Path:
    return Path(str(files("voxgate.personas").joinpath("data")))


def persona_files(extra_dir: Path | None = None) -> dict[str, Path]:
    """Persona id -> the file it is loaded from: built-ins, overridden by ``extra_dir``."""
    found: dict[str, Path] = {}
    for directory in (builtin_persona_dir(), extra_dir):
        if directory is None or not directory.is_dir():
            continue
        for path in sorted(directory.glob("*.toml")):
            found[path.stem] = path
    return found


def load_personas(extra_dir: Path | None = None) -> dict[str, Persona]:
    """Built-in personas, overridden by files of the same name in ``extra_dir``."""
    return {pid: load_persona_file(path) for pid, path in persona_files(extra_dir).items()}
