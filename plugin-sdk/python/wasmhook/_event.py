from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Union

Headers = Union[Mapping[str, str], Iterable[tuple[str, str]]]


def _headers(headers: Headers) -> list[tuple[str, str]]:
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    return [(str(name).lower(), str(value)) for name, value in pairs]


def _raw(body: Any) -> bytes:
    if isinstance(body, (bytes, bytearray, memoryview)):
        return bytes(body)
    if isinstance(body, str):
        return body.encode("utf-8")
    raise TypeError(f"body must be bytes or str, got {type(body).__name__} (use set_json for JSON)")


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON (non-ASCII kept as is, not \\u-escaped)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


@dataclass(kw_only=True)
class Event:
    """One webhook event. Every field has a test-friendly default:
    ``Event(event_type="push", body={"a": 1})``. A ``body`` given as bytes or
    str is taken raw; anything else is encoded as JSON (and sets
    ``content-type: application/json`` unless a content-type is given)."""

    id: str = "evt_test"
    source: str = "test"
    event_type: str = ""
    received_at: int = 0  # ms since the Unix epoch
    headers: list[tuple[str, str]] = field(default_factory=list)  # lower-case names, in order
    body: bytes = b""

    def __post_init__(self) -> None:
        self.headers = _headers(self.headers)
        if isinstance(self.body, (bytes, bytearray, memoryview, str)):
            self.body = _raw(self.body)
        else:
            self.body = dumps(self.body)
            if self.header("content-type") is None:
                self.set_header("content-type", "application/json")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Event:
        """An event from the sample-file shape: ``{"source", "type", "id",
        "received_at", "headers", "body"}``, every key optional."""
        known = {"id", "source", "type", "event_type", "received_at", "headers", "body"}
        if unknown := set(d) - known:
            raise ValueError(f"unknown event keys: {sorted(unknown)}")
        args = {k: v for k, v in d.items() if k != "type"}
        if "type" in d:
            args["event_type"] = d["type"]
        return cls(**args)

    # -- headers -----------------------------------------------------------
    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or None."""
        name = name.lower()
        return next((v for n, v in self.headers if n == name), None)

    def set_header(self, name: str, value: str) -> None:
        """Set header ``name``, replacing every existing value."""
        self.remove_header(name)
        self.headers.append((name.lower(), str(value)))

    def remove_header(self, name: str) -> None:
        """Remove every value of header ``name`` (case-insensitive)."""
        name = name.lower()
        self.headers = [(n, v) for n, v in self.headers if n != name]

    # -- body --------------------------------------------------------------
    def text(self) -> str:
        """The body as UTF-8 text."""
        try:
            return self.body.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"body is not UTF-8 text: {e}") from None

    def json(self) -> Any:
        """The body parsed as JSON."""
        try:
            return json.loads(self.body)
        except ValueError as e:
            raise ValueError(f"body is not JSON: {e}") from None

    def set_body(self, body: bytes | str) -> None:
        """Replace the body with raw bytes (or str, encoded as UTF-8)."""
        self.body = _raw(body)

    def set_json(self, value: Any) -> None:
        """Replace the body with ``value`` as JSON; set content-type application/json."""
        self.body = dumps(value)
        self.set_header("content-type", "application/json")

    # -- chainable copies: the original event is left as it was -------------
    def replace(self, **changes: Any) -> Event:
        """A copy with some fields changed, e.g. ``ev.replace(id=f"{ev.id}-1")``."""
        return dataclasses.replace(self, **{"headers": list(self.headers), **changes})

    def with_header(self, name: str, value: str) -> Event:
        ev = self.replace()
        ev.set_header(name, value)
        return ev

    def with_body(self, body: bytes | str) -> Event:
        return self.replace(body=_raw(body))

    def with_json(self, value: Any) -> Event:
        ev = self.replace()
        ev.set_json(value)
        return ev
