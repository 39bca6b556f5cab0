"""``python -m harness.load``: closed-loop load on MathHelper from one or more processes; also the
child side of ``harness/load/procs.py`` (``--child``)."""

from __future__ import annotations

import argparse
import json
import math
import signal
import sys
from collections.abc import Sequence

from harness.load.procs import run_processes
from harness.load.spec import LoadSpec, add_load_arguments, describe, run_load, spec_from_args


def _child(spec: LoadSpec) -> None:
    """Load-process protocol: connect, say "ready", wait for "go <monotonic start>", report JSON."""
    load = spec.load().connect()
    print("ready", flush=True)
    word, _, start = sys.stdin.readline().partition(" ")
    if word != "go":
        load.stop()
        return
    result = run_load(spec, float(start), load)
    print(json.dumps(result.to_wire()), flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.load", description=__doc__)
    add_load_arguments(parser)
    parser.add_argument("--load-procs", type=int, default=1, help="load processes, merged")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        spec = spec_from_args(args)
    except ValueError as error:
        print(f"harness.load: {error}", file=sys.stderr)
        return 2
    try:
        if args.child:
            # Bounded even if the coordinator vanishes: the kernel ends this process.
            signal.alarm(math.ceil(spec.warmup_s + spec.duration_s + spec.call_timeout_s + 60))
            _child(spec)
            return 0
        result = run_processes(spec, args.load_procs) if args.load_procs > 1 else run_load(spec)
    except (ConnectionError, RuntimeError) as error:  # LoadFailed is a RuntimeError
        print(f"harness.load: {error}", file=sys.stderr)
        return 1
    print(json.dumps(result.summary()) if args.json else describe(result))
    return 0 if result.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
