"""The two MathHelper calculations over the int64 range, as pure functions."""

from __future__ import annotations

import math

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
MAX_FACTORIAL_BASE = 20  # 21! > INT64_MAX

SUMMATION_OVERFLOW = "summation result exceeds maximum integer value"
FACTORIAL_OVERFLOW = "factorial result exceeds maximum integer value"
FACTORIAL_NEGATIVE = "factorial is undefined for negative numbers"


class CalculationError(Exception):
    """A calculation that has no int64 answer; the message is shown to callers."""


class ResultOutOfRange(CalculationError):
    """The exact result does not fit in a signed 64-bit integer."""


class InvalidArgument(CalculationError):
    """The input is outside the calculation's domain."""


def summation(first: int, last: int) -> int:
    """Return first + last; the Go server adds the two numbers, it does not sum a range."""
    total = first + last
    if not INT64_MIN <= total <= INT64_MAX:
        raise ResultOutOfRange(SUMMATION_OVERFLOW)
    return total


def factorial(base: int) -> int:
    """Return base! for 0 <= base <= 20 (0! = 1! = 1)."""
    if base < 0:
        raise InvalidArgument(FACTORIAL_NEGATIVE)
    if base > MAX_FACTORIAL_BASE:
        raise ResultOutOfRange(FACTORIAL_OVERFLOW)
    return math.factorial(base)
