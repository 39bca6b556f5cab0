"""The load generator's result, merged across load processes from raw latencies, never percentiles."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any


def percentile(sorted_values: Sequence[int], fraction: float) -> int | None:
    """Nearest-rank percentile of already sorted values; None when there are none."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


@dataclass
class LoadResult:
    """What one measured window produced: successful calls, their latencies, errors by code."""

    window_s: float
    ok: int = 0
    latencies_us: list[int] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    client_cpu_s: float = 0.0
    calls_including_warmup: int = 0
    load_procs: int = 1

    @property
    def rps(self) -> float:
        return self.ok / self.window_s if self.window_s > 0 else 0.0

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def percentiles_us(self) -> dict[str, int | None]:
        ordered = sorted(self.latencies_us)
        points = {"p50": 0.50, "p90": 0.90, "p99": 0.99, "p999": 0.999, "max": 1.0}
        return {name: percentile(ordered, fraction) for name, fraction in points.items()}

    def summary(self) -> dict[str, Any]:
        """Everything but the raw latencies: what the results JSON keeps."""
        return {
            "window_s": round(self.window_s, 3),
            "ok": self.ok,
            "rps": round(self.rps, 1),
            "latency_us": self.percentiles_us(),
            "errors": dict(sorted(self.errors.items())),
            "client_cpu_s": round(self.client_cpu_s, 3),
            "calls_including_warmup": self.calls_including_warmup,
            "load_procs": self.load_procs,
        }

    def to_wire(self) -> dict[str, Any]:
        """The full result, raw latencies included, as one load process hands it over."""
        return {
            "window_s": self.window_s,
            "ok": self.ok,
            "latencies_us": self.latencies_us,
            "errors": self.errors,
            "client_cpu_s": self.client_cpu_s,
            "calls_including_warmup": self.calls_including_warmup,
            "load_procs": self.load_procs,
        }

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> LoadResult:
        return cls(
            window_s=float(data["window_s"]),
            ok=int(data["ok"]),
            latencies_us=[int(v) for v in data["latencies_us"]],
            errors={str(k): int(v) for k, v in data["errors"].items()},
            client_cpu_s=float(data["client_cpu_s"]),
            calls_including_warmup=int(data["calls_including_warmup"]),
            load_procs=int(data["load_procs"]),
        )


def merge(results: Iterable[LoadResult]) -> LoadResult:
    """One result for load processes that measured the same window side by side."""
    parts = list(results)
    if not parts:
        raise ValueError("nothing to merge")
    errors: Counter[str] = Counter()
    latencies: list[int] = []
    for part in parts:
        errors.update(part.errors)
        latencies.extend(part.latencies_us)
    return LoadResult(
        window_s=max(part.window_s for part in parts),
        ok=sum(part.ok for part in parts),
        latencies_us=latencies,
        errors=dict(errors),
        client_cpu_s=sum(part.client_cpu_s for part in parts),
        calls_including_warmup=sum(part.calls_including_warmup for part in parts),
        load_procs=sum(part.load_procs for part in parts),
    )
