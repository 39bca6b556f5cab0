"""A scenario's result: its figures, and checks that each pass or fail with the evidence."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from harness.event_table import StoredCalls


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str = ""


@dataclass
class Result:
    scenario: str
    held_rps: float  # acknowledged calls per second while the load ran
    offered_rps: float | None  # what the clients were paced to (None: as fast as they could go)
    errors: Counter[str]  # non-answers seen by clients, by status code
    events_expected: int  # 2 per call whose events the durability mode promises
    events_stored: int  # Summation events in the table after the run
    recovery: str  # what was measured, in words, or "-"
    recovery_s: float | None = None
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error_details: dict[str, str] = field(default_factory=dict)  # code -> the first details seen

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)

    def check(self, name: str, passed: bool, detail: str = "") -> None:
        self.checks.append(Check(name, bool(passed), detail))

    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def explain(self) -> str:
        """Every check and note, one per line: what a failing test prints."""
        lines = [f"{self.scenario}: {'PASS' if self.passed else 'FAIL'}"]
        lines += [f"  [{'ok' if c.passed else 'FAIL'}] {c.name}: {c.detail}" for c in self.checks]
        lines += [f"  note: {note}" for note in self.notes]
        lines += [f"  error: {code}: {text}" for code, text in self.error_details.items()]
        return "\n".join(lines)


def sample(ids: Iterable[int], limit: int = 5) -> str:
    ordered = sorted(ids)
    shown = ", ".join(str(i) for i in ordered[:limit])
    return f"{len(ordered)} ({shown}{', ...' if len(ordered) > limit else ''})"


def check_events(
    result: Result,
    stored: StoredCalls,
    *,
    acknowledged: set[int],
    attempted: set[int],
    may_miss: set[int] | None = None,
) -> None:
    """The durability checks every scenario shares.

    ``acknowledged`` calls must have both events stored, except those in ``may_miss`` (the
    unflushed tail that async mode may lose to SIGKILL). Nothing may be stored twice, half, or
    for a call that was never sent.
    """
    requested, outcomes = stored.requested, stored.outcomes
    stored_ids = set(requested) | set(outcomes)
    missing = acknowledged - stored.answered
    allowed = may_miss or set()
    result.events_expected = 2 * len(acknowledged)
    result.events_stored = sum(requested.values()) + sum(outcomes.values())
    if allowed:
        result.check(
            "acknowledged calls stored, except the unflushed tail",
            not (missing - allowed),
            f"{len(missing)} missing, all inside the tail window"
            if not missing - allowed
            else f"missing outside the tail window: {sample(missing - allowed)}",
        )
    else:
        result.check(
            "every acknowledged call stored",
            not missing,
            f"all {len(acknowledged)}" if not missing else f"missing: {sample(missing)}",
        )
    doubled = {i for i in stored_ids if requested[i] > 1 or outcomes[i] > 1}
    result.check(
        "no duplicates",
        not doubled and stored.event_ids_unique,
        ("event_id unique, at most one request and one outcome per call")
        if not doubled and stored.event_ids_unique
        else f"calls stored twice: {sample(doubled)}; event_id unique: {stored.event_ids_unique}",
    )
    unpaired = stored.unpaired()
    result.check(
        "no half-recorded call",
        not unpaired,
        "request and outcome stored together" if not unpaired else f"unpaired: {sample(unpaired)}",
    )
    phantom = stored_ids - attempted
    result.check(
        "nothing stored that was never sent",
        not phantom,
        "none" if not phantom else f"unknown ids: {sample(phantom)}",
    )
    extra = stored.answered - acknowledged
    if extra:
        result.notes.append(
            f"{len(extra)} calls stored whose answer the client never saw (the client got an "
            "error or gave up); allowed: the promise is about acknowledged calls"
        )
