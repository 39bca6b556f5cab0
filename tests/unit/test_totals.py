"""The running totals are a pure fold of the events; replay rebuilds them exactly."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from oriserver.domain.events import CalculationFailed, CalculationSucceeded, FailureCode, Method
from oriserver.domain.totals import CALCULATORS, MethodTotals, RunningTotals, apply, fold
from tests.support.events import calculation

outcomes = st.sampled_from(["ok", "failed", "pending"])
calculations = st.lists(st.tuples(st.sampled_from(list(Method)), outcomes), max_size=60)


def _events(spec: list[tuple[Method, str]]) -> list[object]:
    events: list[object] = []
    for method, outcome in spec:
        requested, done = calculation(
            method, failure=(FailureCode.OUT_OF_RANGE, "x") if outcome == "failed" else None
        )
        events.append(requested)
        if outcome != "pending":
            events.append(done)
    return events


@given(calculations)
def test_folding_counts_each_kind_of_event_per_method(spec: list[tuple[Method, str]]) -> None:
    totals = fold(RunningTotals(), _events(spec))  # type: ignore[arg-type]
    for method in Method:
        mine = [outcome for m, outcome in spec if m is method]
        assert totals.of(method) == MethodTotals(
            requested=len(mine), succeeded=mine.count("ok"), failed=mine.count("failed")
        )


@given(calculations, st.integers(min_value=0, max_value=120))
def test_folding_in_two_parts_equals_folding_at_once(
    spec: list[tuple[Method, str]], cut: int
) -> None:
    events = _events(spec)
    cut = min(cut, len(events))
    in_parts = fold(fold(RunningTotals(), events[:cut]), events[cut:])  # type: ignore[arg-type]
    assert in_parts == fold(RunningTotals(), events)  # type: ignore[arg-type]


def test_applying_never_mutates_the_previous_totals() -> None:
    before = RunningTotals()
    requested, _ = calculation()
    after = apply(before, requested)
    assert before.of(Method.SUMMATION).requested == 0
    assert after.of(Method.SUMMATION).requested == 1


def test_every_event_type_has_exactly_one_calculator() -> None:
    from oriserver.domain.events import EVENT_TYPES

    assert set(CALCULATORS) == set(EVENT_TYPES.values())


def test_in_flight_is_requests_without_an_outcome() -> None:
    assert MethodTotals(requested=5, succeeded=2, failed=1).in_flight == 2


def test_outcome_events_carry_their_result_or_status() -> None:
    _, ok = calculation(result=42)
    _, failed = calculation(failure=(FailureCode.INVALID_ARGUMENT, "negative"))
    assert isinstance(ok, CalculationSucceeded)
    assert ok.result == 42
    assert isinstance(failed, CalculationFailed)
    assert (failed.code, failed.message) == (FailureCode.INVALID_ARGUMENT, "negative")
