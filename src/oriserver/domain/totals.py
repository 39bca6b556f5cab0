"""The running-totals aggregate and the pure calculators that fold events into it."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from oriserver.domain.events import (
    CalculationFailed,
    CalculationRequested,
    CalculationSucceeded,
    Event,
    Method,
)


@dataclass(frozen=True, slots=True)
class MethodTotals:
    """How many calculations of one method were requested, succeeded and failed."""

    requested: int = 0
    succeeded: int = 0
    failed: int = 0

    @property
    def in_flight(self) -> int:
        """Requests whose outcome is not in the log (yet, or ever after a crash)."""
        return self.requested - self.succeeded - self.failed


def _empty() -> Mapping[Method, MethodTotals]:
    return MappingProxyType({method: MethodTotals() for method in Method})


@dataclass(frozen=True, slots=True)
class RunningTotals:
    """Per-method counters; immutable, so every fold step yields a new value."""

    by_method: Mapping[Method, MethodTotals] = field(default_factory=_empty)

    def of(self, method: Method) -> MethodTotals:
        return self.by_method.get(method, MethodTotals())

    def with_method(self, method: Method, totals: MethodTotals) -> RunningTotals:
        updated = dict(self.by_method)
        updated[method] = totals
        return RunningTotals(MappingProxyType(updated))


# A calculator adds ``n`` events of its type to one method's counters. Counting (rather
# than taking one event) lets the event host fold a batch it has just written from the
# batch's per-type counts, without building an event object per row.
Calculator = Callable[[MethodTotals, int], MethodTotals]


def count_requested(current: MethodTotals, n: int) -> MethodTotals:
    return MethodTotals(current.requested + n, current.succeeded, current.failed)


def count_succeeded(current: MethodTotals, n: int) -> MethodTotals:
    return MethodTotals(current.requested, current.succeeded + n, current.failed)


def count_failed(current: MethodTotals, n: int) -> MethodTotals:
    return MethodTotals(current.requested, current.succeeded, current.failed + n)


CALCULATORS: Mapping[type[Event], Calculator] = MappingProxyType(
    {
        CalculationRequested: count_requested,
        CalculationSucceeded: count_succeeded,
        CalculationFailed: count_failed,
    }
)


def apply(totals: RunningTotals, event: Event) -> RunningTotals:
    """Apply one event with the calculator registered for its type."""
    method = event.method
    return totals.with_method(method, CALCULATORS[type(event)](totals.of(method), 1))


def fold(totals: RunningTotals, events: Iterable[Event]) -> RunningTotals:
    """Apply events in log order; replaying the whole log from empty rebuilds the totals."""
    counts: dict[tuple[type[Event], Method], int] = {}
    for event in events:
        key = (type(event), event.method)
        counts[key] = counts.get(key, 0) + 1
    return fold_counts(totals, counts)


def fold_counts(
    totals: RunningTotals, counts: Mapping[tuple[type[Event], Method], int]
) -> RunningTotals:
    """Apply ``n`` events of each (type, method): the same result as folding them one by one,
    because every calculator only adds to its own counter."""
    by_method = dict(totals.by_method)
    for (event_type, method), n in counts.items():
        by_method[method] = CALCULATORS[event_type](by_method.get(method, MethodTotals()), n)
    return RunningTotals(MappingProxyType(by_method))
