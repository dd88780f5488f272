"""Log lines: to the router's log inside wasm (tagged with the plugin's name),
to stderr when the logic runs natively (pytest shows them for failing tests)."""

import sys
from typing import Callable, Optional

# Set by the glue inside wasm: sink(level_name, message).
_sink: Optional[Callable[[str, str], None]] = None


def _write(level: str, message: object) -> None:
    if _sink is not None:
        _sink(level, str(message))
    else:
        print(f"[{level}] {message}", file=sys.stderr)


def trace(message: object) -> None: _write("trace", message)
def debug(message: object) -> None: _write("debug", message)
def info(message: object) -> None: _write("info", message)
def warn(message: object) -> None: _write("warn", message)
def error(message: object) -> None: _write("error", message)
