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


Calculator = Callable[[RunningTotals, Event], RunningTotals]


def count_requested(totals: RunningTotals, event: Event) -> RunningTotals:
    current = totals.of(event.method)
    return totals.with_method(
        event.method, MethodTotals(current.requested + 1, current.succeeded, current.failed)
    )


def count_succeeded(totals: RunningTotals, event: Event) -> RunningTotals:
    current = totals.of(event.method)
    return totals.with_method(
        event.method, MethodTotals(current.requested, current.succeeded + 1, current.failed)
    )


def count_failed(totals: RunningTotals, event: Event) -> RunningTotals:
    current = totals.of(event.method)
    return totals.with_method(
        event.method, MethodTotals(current.requested, current.succeeded, current.failed + 1)
    )


CALCULATORS: Mapping[type[Event], Calculator] = MappingProxyType(
    {
        CalculationRequested: count_requested,
        CalculationSucceeded: count_succeeded,
        CalculationFailed: count_failed,
    }
)


def apply(totals: RunningTotals, event: Event) -> RunningTotals:
    """Apply one event with the calculator registered for its type."""
    return CALCULATORS[type(event)](totals, event)


def fold(totals: RunningTotals, events: Iterable[Event]) -> RunningTotals:
    """Apply events in log order; replaying the whole log from empty rebuilds the totals."""
    for event in events:
        totals = apply(totals, event)
    return totals
