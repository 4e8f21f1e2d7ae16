"""Turn machine events as JSON: a session can record them in its trace, a test replays them.

A recorded session replays to the same decisions, because the machine is
pure and its clock is the audio: the recorded decode texts stand in for the
models that produced them.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from voxgate.turns import machine as tm

EVENT_TYPES: dict[str, type[tm.MachineEvent]] = {
    cls.__name__: cls
    for cls in (
        tm.VadWindow,
        tm.DecodeLanded,
        tm.DecodeFailed,
        tm.TurnScored,
        tm.TypedTurn,
        tm.AudioEnded,
        tm.ReplyFinished,
        tm.PlaybackProgress,
    )
}


def event_record(session_id: str, event: tm.MachineEvent) -> dict[str, Any]:
    """One trace line for one event."""
    return {
        "type": "turn_event",
        "session": session_id,
        "event": type(event).__name__,
        **dataclasses.asdict(event),
    }


def event_from_record(record: dict[str, Any]) -> tm.MachineEvent:
    cls = EVENT_TYPES.get(record.get("event", ""))
    if cls is None:
        raise ValueError(f"not a turn machine event: {record.get('event')!r}")
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in record.items() if k in names})
