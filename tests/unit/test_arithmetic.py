"""The calculations agree with Python's exact integers over the whole int64 domain."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from oriserver.domain.arithmetic import (
    InvalidArgument,
    ResultOutOfRange,
    factorial,
    summation,
)
from tests.strategies import INT64_MAX, INT64_MIN, exact_factorial, int64s


@given(int64s, int64s)
@example(INT64_MAX, 1)
@example(INT64_MIN, -1)
@example(INT64_MAX, INT64_MIN)
def test_summation_is_exact_or_reports_overflow(first: int, last: int) -> None:
    exact = first + last
    if INT64_MIN <= exact <= INT64_MAX:
        assert summation(first, last) == exact
    else:
        with pytest.raises(
            ResultOutOfRange, match=r"^summation result exceeds maximum integer value$"
        ):
            summation(first, last)


@given(int64s)
def test_factorial_is_exact_where_it_fits_int64(base: int) -> None:
    if base < 0:
        with pytest.raises(InvalidArgument, match="undefined for negative numbers"):
            factorial(base)
    elif base <= 40 and exact_factorial(base) <= INT64_MAX:
        assert factorial(base) == exact_factorial(base)
    else:
        with pytest.raises(
            ResultOutOfRange, match=r"^factorial result exceeds maximum integer value$"
        ):
            factorial(base)


@pytest.mark.parametrize("base", [0, 1])
def test_factorial_of_zero_and_one_is_one_unlike_the_go_server(base: int) -> None:
    assert factorial(base) == 1


def test_twenty_is_the_largest_base_that_fits() -> None:
    largest = max(n for n in range(40) if exact_factorial(n) <= INT64_MAX)
    assert factorial(largest) == exact_factorial(largest)
    with pytest.raises(ResultOutOfRange):
        factorial(largest + 1)


@given(st.integers(min_value=-(2**70), max_value=-1))
def test_every_negative_base_is_invalid(base: int) -> None:
    with pytest.raises(InvalidArgument):
        factorial(base)
