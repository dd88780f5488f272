"""Adapter between componentize-py's generated bindings and the SDK; only the
template's ``app.py`` imports it. The binding modules are passed in (never
imported here), so this runs natively too, against stub bindings.

componentize-py 0.25.1 maps ``result<outcome, string>`` to "return the ok
value, raise ``componentize_py_types.Err(string)`` for the error", and
``variant outcome`` to the dataclasses ``Outcome_Drop(value)`` and
``Outcome_Emit(value)``. An exception other than ``Err`` traps the component
(traceback on stderr), so every failure is turned into an ``Err`` here.
"""

import os
import sys
from types import ModuleType, TracebackType
from typing import Any, Callable, Optional

from . import PluginError, log
from ._config import Config
from ._event import Event
from ._outcome import Outcome

_SDK_DIR = os.path.dirname(os.path.abspath(__file__))
_STDLIB_DIR = os.path.dirname(os.path.abspath(os.__file__))
_LEVELS = ("trace", "debug", "info", "warn", "error")
_HINT = "return Outcome.keep(ev), Outcome.drop(reason), Outcome.emit([...]) or Outcome.route(ev, [...])"


class _Reject(Exception):
    """A plugin result the glue cannot send; its message is the whole error."""


def check_handler(module: ModuleType) -> None:
    """Fail the build, with what to write, when ``module`` has no ``handle``."""
    handler = getattr(module, "handle", None)
    if not callable(handler):
        raise SystemExit(
            f"{module.__name__}.py must define a function handle(ev: Event, cfg: Config) -> Outcome"
            f" (found {'nothing' if handler is None else type(handler).__name__} named handle)"
        )


def handle(handler: Callable[[Event, Config], Outcome], wire_event: Any, *,
           types: ModuleType, host: Any, err: Callable[[str], BaseException]) -> Any:
    """The body of the WIT ``handle`` export: call ``handler`` and convert."""
    levels = {name: getattr(host.Level, name.upper()) for name in _LEVELS}
    log._sink = lambda level, message: host.log(levels[level], message)
    try:
        event = Event(id=wire_event.id, source=wire_event.source, event_type=wire_event.event_type,
                      received_at=wire_event.received_at, headers=wire_event.headers,
                      body=wire_event.body)
        outcome = handler(event, Config(host.config()))
        return _to_wire(outcome, handler, types)
    except (_Reject, PluginError) as e:
        raise err(str(e)) from None
    except BaseException as e:  # noqa: BLE001 - every failure must be an Err, not a trap
        raise err(describe(e)) from None


def describe(exc: BaseException) -> str:
    """``ValueError: min must be a number (at plugin.py:12)``."""
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    where = _where(exc.__traceback__)
    text = f"{text} (at {where})" if where else text
    if isinstance(exc, ImportError):
        text += "; import modules at the top of plugin.py: the build snapshots them, the sandbox has no files"
    return text


def _where(tb: Optional[TracebackType]) -> Optional[str]:
    frames = []
    while tb is not None:
        frames.append((tb.tb_frame.f_code.co_filename, tb.tb_lineno))
        tb = tb.tb_next
    ours = [f for f in frames if not f[0].startswith((_SDK_DIR + os.sep, _STDLIB_DIR + os.sep, "<"))]
    if not (ours or frames):
        return None
    filename, line = (ours or frames)[-1]  # the innermost frame in the plugin's own code
    return f"{_short(filename)}:{line}"


def _short(filename: str) -> str:
    for root in sorted((p for p in sys.path if p), key=len, reverse=True):
        root = root.rstrip(os.sep) + os.sep
        if filename.startswith(root):
            return filename[len(root):]
    return os.path.basename(filename)


def _to_wire(outcome: Any, handler: Callable[..., Any], types: ModuleType) -> Any:
    if not isinstance(outcome, Outcome):
        name = f"{getattr(handler, '__module__', '')}.{getattr(handler, '__name__', 'handle')}"
        got = "None" if outcome is None else f"an object of type {type(outcome).__name__}"
        raise _Reject(f"{name}() returned {got}, not an Outcome: {_HINT}")
    if outcome.is_drop:
        return types.Outcome_Drop(outcome.drop_reason)
    return types.Outcome_Emit([types.Output(_wire_event(o.event, i, types), _wire_targets(o.targets, i))
                               for i, o in enumerate(outcome.outputs)])


def _wire_event(ev: Any, i: int, types: ModuleType) -> Any:
    where = f"emitted event {i}"
    if not isinstance(ev, Event):
        raise _Reject(f"{where} is a {type(ev).__name__}, not an Event")
    for name in ("id", "source", "event_type"):
        if not isinstance(getattr(ev, name), str):
            raise _Reject(f"{where}: {name} must be a str, got {type(getattr(ev, name)).__name__}")
    if not isinstance(ev.received_at, int) or not 0 <= ev.received_at < 1 << 64:
        raise _Reject(f"{where}: received_at must be an int of ms since the epoch, got {ev.received_at!r}")
    if not isinstance(ev.body, (bytes, bytearray, memoryview)):
        raise _Reject(f"{where}: body must be bytes, got {type(ev.body).__name__}"
                      " (use ev.set_json(value) or ev.set_body(text))")
    headers = []
    for h in ev.headers:
        if not (isinstance(h, tuple) and len(h) == 2 and all(isinstance(s, str) for s in h)):
            raise _Reject(f"{where}: headers must be (name, value) string pairs, got {h!r}")
        headers.append((h[0].lower(), h[1]))
    return types.Event(id=ev.id, source=ev.source, event_type=ev.event_type,
                       received_at=ev.received_at, headers=headers, body=bytes(ev.body))


def _wire_targets(targets: Any, i: int) -> list:
    if not (isinstance(targets, list) and all(isinstance(t, str) for t in targets)):
        raise _Reject(f"emitted event {i}: targets must be a list of str, got {targets!r}")
    return targets
