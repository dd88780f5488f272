from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator, Mapping, TypeVar

T = TypeVar("T")
_MISSING: Any = object()
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


class ConfigError(ValueError):
    """A config key is missing or its value does not parse."""


def _to_bool(text: str) -> bool:
    word = text.lower()
    if word in _TRUE or word in _FALSE:
        return word in _TRUE
    raise ValueError(text)


def _str(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


class Config:
    """This plugin's config on the current route: the ``config = { … }`` table
    of the route's plugin entry, as string values."""

    def __init__(self, pairs: Iterable[tuple[str, str]] = ()) -> None:
        self._values: dict[str, str] = {}
        for key, value in pairs:
            self._values.setdefault(key, value)  # the first one wins

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Config:
        """A config for tests; values may be str, int, float or bool."""
        return cls((k, _str(v)) for k, v in values.items())

    def get(self, key: str) -> str | None:
        return self._values.get(key)

    def get_or(self, key: str, default: str) -> str:
        return self._values.get(key, default)

    def __getitem__(self, key: str) -> str:
        """The value of a required key."""
        return self.parse(key, str)

    def __contains__(self, key: object) -> bool:
        return key in self._values

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def items(self) -> list[tuple[str, str]]:
        return list(self._values.items())

    def __repr__(self) -> str:
        return f"Config({self._values!r})"

    def list(self, key: str) -> list[str]:
        """A comma-separated value as trimmed, non-empty items (missing: [])."""
        return [s.strip() for s in self._values.get(key, "").split(",") if s.strip()]

    def parse(self, key: str, convert: Callable[[str], T], default: Any = _MISSING,
              what: str | None = None) -> T:
        """``convert(value)``; ``default`` when the key is missing (no default: an error)."""
        raw = self._values.get(key)
        if raw is None:
            if default is _MISSING:
                raise ConfigError(f"config {key!r} is required but not set")
            return default
        try:
            return convert(raw.strip())
        except (ValueError, TypeError, ArithmeticError):
            what = what or f"a valid {getattr(convert, '__name__', 'value')}"
            raise ConfigError(f"config {key!r} must be {what}, got {raw!r}") from None

    def int(self, key: str, default: Any = _MISSING) -> int:
        return self.parse(key, int, default, "an integer")

    def float(self, key: str, default: Any = _MISSING) -> float:
        return self.parse(key, float, default, "a number")

    def bool(self, key: str, default: Any = _MISSING) -> bool:
        return self.parse(key, _to_bool, default, "true/false, yes/no, on/off or 1/0")
