"""The benchmark's load generator (harness/load) works end to end against a reference server
started by the one launcher: a functional check, not a timed one."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.load import LoadProcesses, LoadResult, LoadSpec, merge, run_load
from harness.servers import ROOT, ServerProcess, start_server


@pytest.fixture(scope="module")
def reference_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    workdir: Path = tmp_path_factory.mktemp("bench")
    server = start_server(workdir, kind="reference-threads", base_env=dict(os.environ))
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_two_load_processes_complete_calls_and_merge_their_latencies(reference_server):
    spec = LoadSpec(
        reference_server.target, concurrency=2, connections=2, duration_s=1.0, warmup_s=0.2
    )
    with LoadProcesses(spec, procs=2) as load:
        window = load.go()
        result = load.collect()

    assert window.end - window.measure == pytest.approx(1.0)
    assert result.load_procs == 2
    assert result.ok > 0
    assert result.errors == {}
    assert len(result.latencies_us) == result.ok
    assert result.calls_including_warmup >= result.ok
    points = result.percentiles_us()
    assert points["p50"] is not None
    assert points["p99"] is not None
    assert 0 < points["p50"] <= points["p99"] <= points["max"]


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_rejected_calls_are_counted_by_status_code(reference_server):
    spec = LoadSpec(
        reference_server.target,
        concurrency=2,
        connections=1,
        duration_s=0.5,
        warmup_s=0.1,
        mix="factorial",
        factorial_base=-1,
    )

    result = run_load(spec)

    assert result.ok == 0
    assert result.rps == 0
    assert set(result.errors) == {"INVALID_ARGUMENT"}
    assert result.errors["INVALID_ARGUMENT"] > 0
    assert result.percentiles_us()["p50"] is None


def test_merging_keeps_every_latency_rather_than_averaging_percentiles():
    fast = LoadResult(window_s=1.0, ok=99, latencies_us=[100] * 99, errors={"UNAVAILABLE": 1})
    slow = LoadResult(window_s=1.0, ok=1, latencies_us=[9000], errors={"UNAVAILABLE": 2})

    merged = merge([fast, slow])

    assert merged.ok == 100
    assert merged.rps == 100
    assert merged.errors == {"UNAVAILABLE": 3}
    assert merged.load_procs == 2
    # Nearest rank over all 100 latencies: the 99th is fast, the 100th (max) is the slow one.
    assert merged.percentiles_us() == {
        "p50": 100,
        "p90": 100,
        "p99": 100,
        "p999": 9000,
        "max": 9000,
    }


def test_the_bench_command_line_lists_its_suites():
    """scripts/bench runs `python -m bench`: it must import and parse from the harness it uses."""
    from bench.suites import SUITES

    done = subprocess.run(
        [sys.executable, "-m", "bench", "--help"],
        capture_output=True, text=True, timeout=60, check=False, cwd=ROOT,
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    assert all(name in done.stdout for name in SUITES)
