"""Typed environment variables, each declared once with its default, parser and meaning.

The standard library has no typed environment parser, and pydantic-settings
would add a heavy dependency for a few dozen scalars; this is the small part
that is ours: strict parsing, one-line errors naming the variable, and a
registry of every variable (the README's configuration table is generated
from it and checked against it).

A variable's default is stated once, as the text a user would set: the
settings dataclasses take their field defaults from ``Variable.value`` (that
text, parsed), so the documented default, the parsed default and the
dataclass default cannot disagree.
"""

from __future__ import annotations

import enum
import math
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Generic, TypeVar

T = TypeVar("T")
E = TypeVar("E", bound=enum.Enum)
Parse = Callable[[str], T]


class ConfigError(Exception):
    """A variable holds a value the server cannot use. str() is the one-line message."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"{name}: {problem}")
        self.name = str(name)


class Variable(str, Generic[T]):
    """One documented environment variable. It is its own name (a str), so it can be
    used wherever a name is; ``value`` is its default, parsed."""

    default: str
    help: str
    shown_default: str
    module: str  # where it is registered; the README groups the table by it
    parse: Parse[T]
    echo: bool  # whether an error may quote the value (not for ones that hold secrets)

    def __new__(  # noqa: PLR0917 - built by variable() only, which names every argument
        cls, name: str, default: str, help_text: str, parse: Parse[T], shown: str, echo: bool
    ) -> Variable[T]:
        self = super().__new__(cls, name)
        self.default, self.help, self.shown_default = default, help_text, shown
        self.parse, self.echo, self.module = parse, echo, ""
        return self

    @property
    def name(self) -> str:
        return str.__str__(self)

    @property
    def documented_default(self) -> str:
        return self.shown_default or self.default or "(empty)"

    @property
    def value(self) -> T:
        """The default, parsed: what the settings hold when the variable is unset."""
        return self.parse(self.default)


REGISTRY: dict[str, Variable[object]] = {}


def variable(
    name: str,
    default: str,
    help_text: str,
    parse: Parse[T],
    *,
    shown: str = "",
    echo: bool = True,
) -> Variable[T]:
    """Register a variable for the docs and return it.

    ``shown`` describes a default that is computed rather than fixed."""
    declared = Variable(name, default, help_text, parse, shown, echo)
    declared.module = str(sys._getframe(1).f_globals.get("__name__", ""))  # the registering module
    REGISTRY[name] = declared  # type: ignore[assignment]
    return declared


# -- parsers: each raises ValueError with the problem, which EnvReader turns into ConfigError
def _bounded(value: float, minimum: float, maximum: float | None) -> None:
    if math.isnan(value) or value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
        raise ValueError(f"must be {bound}")


def integer(minimum: int, maximum: int | None = None) -> Parse[int]:
    def parse(text: str) -> int:
        try:
            value = int(text, 10)
        except ValueError:
            raise ValueError("must be a whole number") from None
        _bounded(value, minimum, maximum)
        return value

    return parse


def number(minimum: float, maximum: float | None = None) -> Parse[float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise ValueError("must be a number") from None
        _bounded(value, minimum, maximum)
        return value

    return parse


def milliseconds(minimum: int, maximum: int) -> Parse[float]:
    """A whole number of milliseconds, held as seconds."""
    whole = integer(minimum, maximum)
    return lambda text: whole(text) / 1000


TRUE_WORDS = frozenset({"1", "true", "on"})
FALSE_WORDS = frozenset({"0", "false", "off"})


def boolean(text: str) -> bool:
    word = text.lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueError("must be true or false")


def optional_boolean(text: str) -> bool | None:
    """None when unset (the caller decides), else a boolean."""
    return boolean(text) if text else None


def choice(kind: type[E]) -> Parse[E]:
    """One of an enum's values, case-insensitively."""

    def parse(text: str) -> E:
        word = text.lower()
        for member in kind:
            if str(member.value).lower() == word:
                return member
        raise ValueError(f"must be one of {', '.join(str(m.value).lower() for m in kind)}")

    return parse


def text(value: str) -> str:
    return value


def optional_file(value: str) -> Path | None:
    """A path that must name a readable file, or None when unset."""
    if not value:
        return None
    path = Path(value)
    if not path.is_file():
        raise ValueError("no such file")
    try:
        with path.open("rb"):
            pass
    except OSError as error:
        raise ValueError(f"cannot read the file: {error.strerror}") from None
    return path


class EnvReader:
    """Reads registered variables from one environment mapping."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ

    def raw(self, variable: Variable[T]) -> str:
        value = self._environ.get(variable)
        if value is None or value.strip() == "":
            return variable.default
        return value.strip()

    def is_set(self, name: str) -> bool:
        return bool(self._environ.get(name, "").strip())

    def get(self, variable: Variable[T]) -> T:
        """The variable's value, parsed; ConfigError naming it when it does not parse."""
        raw = self.raw(variable)
        try:
            return variable.parse(raw)
        except ValueError as error:
            shown = f" (got {raw!r})" if variable.echo else ""
            raise ConfigError(variable, f"{error}{shown}") from None
