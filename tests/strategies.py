"""Hypothesis strategies for the int64 domain, weighted towards its edges."""

from __future__ import annotations

from hypothesis import strategies as st

INT64_MIN = -(2**63)  # written out here, not imported, so the tests check the code's bounds
INT64_MAX = 2**63 - 1

edges = st.sampled_from(
    [INT64_MIN, INT64_MIN + 1, -21, -1, 0, 1, 2, 19, 20, 21, INT64_MAX - 1, INT64_MAX]
)
int64s = st.one_of(edges, st.integers(min_value=INT64_MIN, max_value=INT64_MAX))


def exact_factorial(n: int) -> int:
    """n! by repeated multiplication, independent of math.factorial."""
    product = 1
    for k in range(2, n + 1):
        product *= k
    return product
