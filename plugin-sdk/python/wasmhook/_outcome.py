from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Union

from ._event import Event


@dataclass
class Output:
    """One emitted event; ``targets`` names configured targets (empty: the route's)."""

    event: Event
    targets: list[str] = field(default_factory=list)


def _targets(targets: str | Iterable[str]) -> list[str]:
    names = [targets] if isinstance(targets, str) else list(targets)
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"target names must be strings, got {type(name).__name__}")
    return names


@dataclass(frozen=True)
class Outcome:
    """What a plugin decides for one event. Build one with the class methods."""

    drop_reason: str | None = None
    outputs: tuple[Output, ...] = ()

    @classmethod
    def keep(cls, event: Event) -> Outcome:
        """Filter: pass the event on (changed or not) to the route's targets."""
        return cls.emit([event])

    @classmethod
    def drop(cls, reason: str) -> Outcome:
        """Filter: stop the event here; the router records ``reason``."""
        if not isinstance(reason, str):
            raise TypeError(f"Outcome.drop takes a reason string, got {type(reason).__name__}"
                            " (to pass an event on, use Outcome.keep(ev))")
        return cls(drop_reason=reason)

    @classmethod
    def emit(cls, events: Iterable[Union[Event, Output]]) -> Outcome:
        """Split: pass on these events (possibly none). Items may be Output to name targets."""
        if isinstance(events, (Event, Output)):
            events = [events]
        outputs = []
        for i, item in enumerate(events):
            if isinstance(item, Event):
                item = Output(item)
            elif not isinstance(item, Output):
                raise TypeError(f"Outcome.emit item {i} is a {type(item).__name__}, not an Event")
            outputs.append(item)
        return cls(outputs=tuple(outputs))

    @classmethod
    def route(cls, event: Event, targets: str | Iterable[str]) -> Outcome:
        """Route: deliver ``event`` to these configured targets instead of the route's."""
        return cls.emit([Output(event, _targets(targets))])

    # -- for assertions in tests -------------------------------------------
    @property
    def is_drop(self) -> bool:
        return self.drop_reason is not None

    @property
    def is_emit(self) -> bool:
        return self.drop_reason is None

    @property
    def events(self) -> list[Event]:
        """The kept or emitted events (empty for a drop)."""
        return [o.event for o in self.outputs]

    @property
    def targets(self) -> list[str]:
        """Every target name the outputs name, in order, without repeats."""
        return list(dict.fromkeys(t for o in self.outputs for t in o.targets))
