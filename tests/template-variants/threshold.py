"""Test variant of the Python template: drop events whose n is below
``min``, tag the rest with this version. The test suite writes it over a
fresh scaffold's plugin.py, with VERSION filled in."""

from wasmhook import Config, Event, Outcome


def handle(ev: Event, cfg: Config) -> Outcome:
    n = ev.json().get("n")
    if not isinstance(n, (int, float)):
        raise ValueError("every event needs a numeric n")
    minimum = cfg.int("min", default=0)
    if n < minimum:
        return Outcome.drop(f"n={n} is below min={minimum}")
    return Outcome.keep(ev.with_header("x-plugin-version", "VERSION"))
