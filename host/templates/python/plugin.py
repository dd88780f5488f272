"""{{name}}: a wasmhook plugin.

The router calls ``handle`` once per event, in a fresh sandbox, with this
plugin's config from the route (``config = { ... }`` in wasmhook.toml).

Import everything at the top of this file: the build snapshots imports, and
the sandbox has no files to import from later.
"""

from wasmhook import Config, Event, Outcome, log  # noqa: F401


def handle(ev: Event, cfg: Config) -> Outcome:
    # Filter: drop events you don't want, e.g. keep only listed event types
    # (config: allow = "push, release"):
    #
    #     allowed = cfg.list("allow")
    #     if ev.event_type not in allowed:
    #         return Outcome.drop(f"event type {ev.event_type!r} is not in allow")
    #
    # Transform: change the event before passing it on:
    #
    #     body = ev.json()
    #     body.pop("sender", None)
    #     ev.set_json(body)
    #
    # Split or route: Outcome.emit([ev1, ev2]) or Outcome.route(ev, ["audit"]).
    # An exception fails the event with a readable message, e.g.
    # "ConfigError: config 'min' is required but not set (at plugin.py:30)".
    return Outcome.keep(ev)
