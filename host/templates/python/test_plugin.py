"""Tests for the plugin's logic, run natively with ``pytest`` (no wasm needed)."""

import json
from pathlib import Path

from wasmhook import Config, Event

from plugin import handle

SAMPLE = json.loads((Path(__file__).parent / "events" / "sample.json").read_text("utf-8"))


def sample_event() -> Event:
    return Event.from_dict(SAMPLE)


def test_keeps_the_event_unchanged():
    ev = sample_event()
    out = handle(ev, Config())
    assert out.is_emit
    assert out.events == [sample_event()]
    assert out.targets == []


def test_keeps_any_event_type():
    out = handle(Event(event_type="ping", body="not json"), Config.from_dict({"allow": "push"}))
    assert out.events[0].text() == "not json"
