"""Turns runs into markdown tables (medians of rounds, median per-round ratios) and raw JSON."""

from __future__ import annotations

import json
import os
import platform
import statistics
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc

from bench.runner import Config, Options, Run
from harness import h2load
from harness.event_table import SUCCEEDED_KEY

RESULTS = Path(__file__).resolve().parent / "results"


def efficiency(run: Run) -> float | None:
    """Answered calls per CPU-second of the server's process tree."""
    return run.load.ok / run.server_cpu_s if run.load and run.server_cpu_s > 0 else None


def serving_efficiency(run: Run) -> float | None:
    """Answered calls per CPU-second of the serving process alone."""
    return run.load.ok / run.serving_cpu_s if run.load and run.serving_cpu_s > 0 else None


def cpu_per_call_us(run: Run) -> float | None:
    return run.server_cpu_s * 1e6 / run.load.ok if run.load and run.load.ok else None


def serving_cpu_per_call_us(run: Run) -> float | None:
    return run.serving_cpu_s * 1e6 / run.load.ok if run.load and run.load.ok else None


def rps(run: Run) -> float | None:
    return run.load.rps if run.load else None


BASES: dict[str, tuple[str, Callable[[Run], float | None]]] = {
    "efficiency": ("calls per server CPU-second", efficiency),
    "serving": ("calls per CPU-second of the serving process", serving_efficiency),
    "rps": ("calls/s", rps),
}


@dataclass(frozen=True)
class Ratio:
    """numerator / denominator per round on a basis (see BASES), then the median of those.

    With ``delta``, the figure is instead numerator minus denominator in CPU µs per call
    (of the process tree, or of the serving process with basis "serving"), and the target
    is a ceiling."""

    title: str
    numerator: str
    denominator: str
    target: float | None = None
    # Says why a numerator run did not test what the ratio is about (None: it did).
    check: Callable[[Run], str | None] | None = None
    basis: str = "efficiency"
    delta: bool = False


@dataclass
class SuiteReport:
    """One suite's table and findings; any suite (server or not) produces one."""

    name: str
    title: str
    columns: list[str]
    rows: list[list[str]]
    notes: list[str] = field(default_factory=list)
    ratio_lines: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)


def _median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _fmt(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def recorded_per_call(run: Run) -> float | None:
    """Successful-call events stored per successful call (warm-up included); 1.00 is all."""
    if run.rows is None or run.load is None or not run.load.calls_including_warmup:
        return None
    return run.rows.get(SUCCEEDED_KEY, 0) / run.load.calls_including_warmup


EXTRA_COLUMNS: dict[str, tuple[str, Callable[[Run], float | None], int]] = {
    "procs": ("server processes", lambda r: float(r.server_procs), 0),
    "db_cpu": (
        "PostgreSQL CPU µs/event",
        lambda r: (
            None
            if r.db_cpu_s is None or not r.load
            else r.db_cpu_s * 1e6 / max(2 * r.load.ok, 1)  # two events per call
        ),
        1,
    ),
    "stored": ("recorded/call", recorded_per_call, 2),
    "metrics": (
        "/metrics samples",
        lambda r: None if r.metrics_samples is None else float(r.metrics_samples),
        0,
    ),
}


def _errors(runs: Sequence[Run]) -> str:
    total: Counter[str] = Counter()
    for run in runs:
        if run.load:
            total.update(run.load.errors)
    return ", ".join(f"{code} {n}" for code, n in sorted(total.items())) or "0"


def server_table(
    configs: Sequence[Config],
    runs: dict[str, list[Run]],
    rounds: int,
    extras: Sequence[str] = (),
) -> tuple[list[str], list[list[str]]]:
    """One row per configuration: medians over its successful rounds."""
    columns = ["setup", "conc", "load", "calls/s", "server CPU µs/call", "calls/server CPU-s"]
    columns += ["serving process µs/call", "p50 ms", "p99 ms", "server cores", "load-gen cores"]
    columns += ["other cores", "errors"]
    columns += [EXTRA_COLUMNS[e][0] for e in extras]
    rows = []
    for config in configs:
        done = [run for run in runs[config.key] if run.ok and run.load]
        loads = [run.load for run in done if run.load]
        label = config.label
        if len(done) < rounds:
            label += f" ({len(done)} of {rounds} rounds ran)"
        if not loads:
            rows.append([label, str(config.concurrency), "failed", *["-"] * (len(columns) - 3)])
            continue
        p50 = _median([load.percentiles_us()["p50"] for load in loads])
        p99 = _median([load.percentiles_us()["p99"] for load in loads])
        row = [
            label,
            str(config.concurrency),
            config.generator_name,
            _fmt(_median([load.rps for load in loads])),
            _fmt(_median([cpu_per_call_us(r) for r in done]), 1),
            _fmt(_median([efficiency(r) for r in done])),
            _fmt(_median([serving_cpu_per_call_us(r) for r in done]), 1),
            _fmt(None if p50 is None else p50 / 1000, 2),
            _fmt(None if p99 is None else p99 / 1000, 2),
            _fmt(_median([r.server_cpu_s / r.load.window_s for r in done if r.load]), 2),
            _fmt(_median([load.client_cpu_s / load.window_s for load in loads]), 2),
            _fmt(_median([r.other_cpu_s / r.load.window_s for r in done if r.load]), 2),
            _errors(done),
        ]
        for extra in extras:
            _, value, digits = EXTRA_COLUMNS[extra]
            row.append(_fmt(_median([value(run) for run in done]), digits))
        rows.append(row)
    return columns, rows


def _per_round(
    ratio: Ratio, runs: dict[str, list[Run]], value: Callable[[Run], float | None]
) -> list[float]:
    def by_round(key: str) -> dict[int, float]:
        return {r.round: v for r in runs.get(key, []) if r.ok and (v := value(r)) is not None}

    numerators, denominators = by_round(ratio.numerator), by_round(ratio.denominator)
    if ratio.delta:
        return [numerators[n] - denominators[n] for n in sorted(numerators) if n in denominators]
    return [
        numerators[n] / denominators[n]
        for n in sorted(numerators)
        if n in denominators and denominators[n] > 0
    ]


def ratio_line(ratio: Ratio, runs: dict[str, list[Run]]) -> tuple[str, dict[str, Any]]:
    """The median of per-round ratios (or differences), with every round's value shown."""
    if ratio.delta:
        value_of = serving_cpu_per_call_us if ratio.basis == "serving" else cpu_per_call_us
        unit = " µs/call"
    else:
        value_of, unit = BASES[ratio.basis][1], ""
    per_round = _per_round(ratio, runs, value_of)
    raw = {"title": ratio.title, "target": ratio.target, "per_round": per_round}
    raw |= {"basis": ratio.basis, "delta": ratio.delta}
    if not per_round:
        return f"- {ratio.title}: not measured (a side failed)", raw
    value = statistics.median(per_round)
    problems = sorted(
        {p for r in runs[ratio.numerator] if r.ok and ratio.check and (p := ratio.check(r))}
    )
    raw |= {"median": value, "invalid": problems}
    digits = 1 if ratio.delta else 3
    shown = ", ".join(f"{v:+.{digits}f}" if ratio.delta else f"{v:.3f}" for v in per_round)
    median = f"{value:+.1f}" if ratio.delta else f"{value:.3f}"
    line = f"- {ratio.title}: **{median}{unit}** (rounds: {shown})"
    if problems:
        line += f"; **not a valid comparison**: {'; '.join(problems)}"
    elif ratio.target is not None and ratio.delta:
        met = value <= ratio.target
        line += f"; target ≤ {ratio.target:g}{unit}: {'met' if met else 'NOT met'}"
    elif ratio.target is not None:
        line += f"; target ≥ {ratio.target:.2f}: {'met' if value >= ratio.target else 'NOT met'}"
    return line, raw


def failure_lines(runs: dict[str, list[Run]]) -> list[str]:
    lines = []
    for label, label_runs in runs.items():
        for run in label_runs:
            if run.failure:
                lines.append(f"- `{label}`, round {run.round}: {run.failure}")
                if run.log_tail:
                    lines += ["  ```", *(f"  {line}" for line in run.log_tail), "  ```"]
    return lines


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "cpu": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "grpcio": grpc.__version__,
    }


def header(command: str, options: Options) -> list[str]:
    m = machine()
    procs = options.load_procs
    if options.generator == "h2load":
        pin = (
            "the server pinned to CPU 0 and h2load to CPU 1"
            if options.pin and (m["cores"] or 1) >= 2
            else "nothing pinned (one core, or --no-pin)"
        )
        method = (
            f"Method: h2load (compiled, one thread) keeps the calls in flight over "
            f"{options.connections} connections, mix `{options.mix}`, {pin}; every reply is "
            "checked byte for byte. The primary figure is the server's process-tree CPU per "
            "answered call (and its inverse, calls per server CPU-second). Rows marked "
            "`python` measure latency at concurrency 1 with the Python generator, which "
            "times every call."
        )
    else:
        method = (
            f"Method: the Python load generator ({procs} process{'es' if procs > 1 else ''}) "
            f"over {options.connections} connections, mix `{options.mix}`. **Warning: these "
            "figures are bound by the load generator**, which saturates before the servers "
            f"do; install h2load for figures about the server ({h2load.INSTALL_HINT})."
        )
    lines = [
        f"Machine: {m['cores']} cores ({m['cpu'] or 'unknown CPU'}), Linux {m['kernel']}; "
        f"Python {m['python']}; grpcio {m['grpcio']}.",
        f"Command: `{command}`",
        method,
        (
            f"h2load rows: every setup's server runs at once, each with a fresh database; "
            f"{options.warmup_s:g} s warm-up each, then per round {options.slices} slices of "
            f"{options.duration_s / options.slices:g} s per setup, setups in turn, so that every "
            "round compares the same seconds of the machine. "
            if options.slices > 1 and options.generator != "python"
            else ""
        )
        + f"Other rows: per configuration and round a fresh server, {options.warmup_s:g} s "
        f"warm-up, {options.duration_s:g} s measured; configurations interleaved. Figures are "
        f"medians of {options.rounds} round{'s' if options.rounds > 1 else ''}.",
    ]
    if options.quick:
        lines.append(
            "**Quick smoke run**: one short round; it shows that everything works, not how fast."
        )
    return lines


def render(report: SuiteReport) -> str:
    out = [f"### {report.title}", ""]
    out += [*report.notes, ""] if report.notes else []
    out.append("| " + " | ".join(report.columns) + " |")
    out.append(
        "|" + "|".join("---" if i == 0 else "---:" for i in range(len(report.columns))) + "|"
    )
    out += ["| " + " | ".join(row) + " |" for row in report.rows]
    if report.ratio_lines:
        out += ["", "Ratios (medians of per-round ratios):", "", *report.ratio_lines]
    if report.failures:
        out += ["", "Failed runs (last lines of the server's output):", "", *report.failures]
    return "\n".join(out) + "\n"


def write_json(meta: dict[str, Any], reports: Sequence[SuiteReport]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"bench-{stamp}.json"
    data = {"meta": {**meta, "machine": machine()}, "suites": {r.name: r.raw for r in reports}}
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path
