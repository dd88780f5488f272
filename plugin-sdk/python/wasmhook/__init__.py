"""wasmhook: write wasmhook router plugins in plain Python.

A plugin is one function, ``handle(ev: Event, cfg: Config) -> Outcome``: drop
the event with a reason, or emit zero or more events (optionally naming
configured targets). Nothing here imports the componentize-py bindings, so the
logic is ordinary Python that ``pytest`` tests natively; ``app.py`` (the build
entry) adapts it to the WIT export through ``wasmhook._glue``.
"""

from . import log
from ._config import Config, ConfigError
from ._event import Event
from ._outcome import Outcome, Output


class PluginError(Exception):
    """Raise to fail the event with exactly this message (no type, no location)."""


__all__ = ["Config", "ConfigError", "Event", "Outcome", "Output", "PluginError", "log"]
