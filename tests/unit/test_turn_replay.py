"""Replays a turn machine event trace recorded from a real session (tests/data/README.md).

The machine is pure and its clock is the audio, so the recorded events must
lead to the same turns the live session took, in the same order.
"""

from __future__ import annotations

import json
from typing import Any

from tests.fakes import DATA
from voxgate.config import SessionConfig
from voxgate.session import machine_config
from voxgate.turns import machine as tm
from voxgate.turns.recording import event_from_record, event_record


def load() -> tuple[list[tm.MachineEvent], list[dict[str, Any]]]:
    records = [json.loads(line) for line in (DATA / "recorded-session.jsonl").open()]
    events = [event_from_record(r) for r in records if r["type"] == "turn_event"]
    turns = [r for r in records if r["type"] == "turn"]
    cut_later = {r["turn"] for r in records if r["type"] == "turn_cut"}  # after it was logged
    for turn in turns:
        turn["interrupted"] = turn["interrupted"] or turn["turn"] in cut_later
    return events, turns


def replay(events: list[tm.MachineEvent]) -> list[tm.Action]:
    machine = tm.TurnMachine(machine_config(SessionConfig()))
    return [action for event in events for action in machine.handle(event)]


def test_the_recorded_session_replays_to_the_same_turns() -> None:
    events, turns = load()
    actions = replay(events)
    commits = [a for a in actions if isinstance(a, tm.CommitTurn)]
    assert [c.text for c in commits] == [t["transcript"] for t in turns]
    assert [c.turn for c in commits] == [t["turn"] for t in turns]
    # Every speculative reply the session promoted is promoted in the replay too.
    hits = [t["turn"] for t in turns if t["speculative"] == "hit"]
    assert [c.turn for c in commits if c.reply_id is not None] == hits
    interrupted = [a.turn for a in actions if isinstance(a, tm.Interrupt)]
    assert interrupted == [t["turn"] for t in turns if t["interrupted"]]


def test_the_mid_sentence_pause_of_the_last_utterance_does_not_split_it() -> None:
    events, _ = load()
    actions = replay(events)
    last = [a for a in actions if isinstance(a, tm.CommitTurn)][-1]
    assert last.text.startswith("I do. I think that") and last.text.endswith("very well.")


def test_events_survive_the_json_round_trip() -> None:
    events, _ = load()
    for event in events:
        record = json.loads(json.dumps(event_record("s", event)))
        assert event_from_record(record) == event
