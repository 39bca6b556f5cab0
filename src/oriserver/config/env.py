"""Typed readers for environment variables, each failing with the variable's name.

The standard library has no typed environment parser, and pydantic-settings
would add a heavy dependency for a dozen scalars; these readers are the small
part that is ours: strict parsing, one-line errors, and a registry of every
variable with its default and meaning (the README's configuration table is
checked against it).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


class ConfigError(Exception):
    """A variable holds a value the server cannot use. str() is the one-line message."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"{name}: {problem}")
        self.name = name


@dataclass(frozen=True, slots=True)
class Variable:
    """One documented environment variable."""

    name: str
    default: str
    help: str
    shown_default: str
    module: str = ""  # where it is registered; the README groups the table by it

    @property
    def documented_default(self) -> str:
        return self.shown_default or self.default or "(empty)"


REGISTRY: dict[str, Variable] = {}


def variable(name: str, default: str, help_text: str, *, shown: str = "") -> str:
    """Register a variable for the docs and return its name.

    ``shown`` describes a default that is computed rather than fixed.
    """
    module = str(sys._getframe(1).f_globals.get("__name__", ""))  # the registering module
    REGISTRY[name] = Variable(name, default, help_text, shown, module)
    return name


TRUE_WORDS = frozenset({"1", "true", "on"})
FALSE_WORDS = frozenset({"0", "false", "off"})


class EnvReader:
    """Reads registered variables from one environment mapping."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ

    def raw(self, name: str) -> str:
        value = self._environ.get(name)
        if value is None or value.strip() == "":
            return REGISTRY[name].default
        return value.strip()

    def is_set(self, name: str) -> bool:
        return bool(self._environ.get(name, "").strip())

    def parsed(self, name: str, parse: Callable[[str], T]) -> T:
        text = self.raw(name)
        try:
            return parse(text)
        except ValueError as error:
            raise ConfigError(name, f"{error} (got {text!r})") from None

    def integer(self, name: str, minimum: int, maximum: int | None = None) -> int:
        def parse(text: str) -> int:
            try:
                value = int(text, 10)
            except ValueError:
                raise ValueError("must be a whole number") from None
            if value < minimum or (maximum is not None and value > maximum):
                bound = (
                    f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
                )
                raise ValueError(f"must be {bound}")
            return value

        return self.parsed(name, parse)

    def number(self, name: str, minimum: float, maximum: float | None = None) -> float:
        def parse(text: str) -> float:
            try:
                value = float(text)
            except ValueError:
                raise ValueError("must be a number") from None
            if math.isnan(value) or value < minimum or (maximum is not None and value > maximum):
                bound = (
                    f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
                )
                raise ValueError(f"must be {bound}")
            return value

        return self.parsed(name, parse)

    def boolean(self, name: str) -> bool:
        def parse(text: str) -> bool:
            word = text.lower()
            if word in TRUE_WORDS:
                return True
            if word in FALSE_WORDS:
                return False
            raise ValueError("must be true or false")

        return self.parsed(name, parse)

    def choice(self, name: str, choices: tuple[str, ...]) -> str:
        def parse(text: str) -> str:
            word = text.lower()
            if word not in choices:
                raise ValueError(f"must be one of {', '.join(choices)}")
            return word

        return self.parsed(name, parse)

    def text(self, name: str) -> str:
        return self.raw(name)

    def optional_file(self, name: str) -> Path | None:
        """A path that must name a readable file, or None when unset."""
        if not self.is_set(name):
            return None

        def parse(text: str) -> Path:
            path = Path(text)
            if not path.is_file():
                raise ValueError("no such file")
            try:
                with path.open("rb"):
                    pass
            except OSError as error:
                raise ValueError(f"cannot read the file: {error.strerror}") from None
            return path

        return self.parsed(name, parse)
