"""``python -m bench`` (what ``scripts/bench`` runs): suites in, markdown tables and raw JSON out."""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
from collections.abc import Sequence
from types import FrameType

from bench.report import SuiteReport, header, render, write_json
from bench.runner import Context, Options
from bench.suites import SUITES
from harness import h2load

QUICK = {"duration": 1.5, "warmup": 0.5, "rounds": 1}
FULL = {"duration": 10.0, "warmup": 2.0, "rounds": 3}


def _suites(text: str) -> list[str]:
    names = list(SUITES) if text == "all" else [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in SUITES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"choose from all, {', '.join(SUITES)} (comma-separated)")
    return names


def _levels(text: str) -> tuple[int, ...]:
    try:
        levels = tuple(sorted({int(part) for part in text.split(",")}))
    except ValueError:
        raise argparse.ArgumentTypeError("comma-separated whole numbers, e.g. 1,16") from None
    if not levels or levels[0] < 1:
        raise argparse.ArgumentTypeError("concurrency must be at least 1")
    return levels


def _parser(prog: str) -> argparse.ArgumentParser:
    suites = "; ".join(f"{name}: {suite.description}" for name, suite in SUITES.items())
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Benchmark oriserver on loopback; prints markdown tables, saves JSON in "
        f"bench/results/. Suites: {suites}.",
    )
    parser.add_argument(
        "--suite", type=_suites, default=list(SUITES), help="all (default) or names"
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 short round")
    parser.add_argument("--duration", type=float, help="measured seconds per run (10; quick 1.5)")
    parser.add_argument("--warmup", type=float, help="unmeasured seconds first (2; quick 0.5)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (3; quick 1)")
    parser.add_argument(
        "--concurrency",
        type=_levels,
        default=(1, 16),
        help="calls in flight; the rpc suite runs "
        "each level, the other suites the highest (default 1,16)",
    )
    parser.add_argument("--connections", type=int, default=2, help="connections (default 2)")
    parser.add_argument(
        "--generator",
        choices=("auto", "h2load", "python"),
        default="auto",
        help="load generator: h2load (compiled; auto picks it when installed) or python, whose "
        "figures are bound by the generator itself",
    )
    parser.add_argument(
        "--no-pin", action="store_true", help="do not pin the server to CPU 0 and h2load to CPU 1"
    )
    parser.add_argument(
        "--slices",
        type=int,
        default=5,
        help="h2load rows: every server runs at once and each round's window is cut into this "
        "many slices, setups in turn (default 5; 1 measures each setup on its own, in turn)",
    )
    parser.add_argument("--load-procs", type=int, default=1, help="load processes (default 1)")
    parser.add_argument("--mix", choices=h2load.MIXES, default="both", help="RPCs to call (both)")
    return parser


def _generator(choice: str) -> str:
    if choice == "python" or (choice == "auto" and h2load.available()):
        return "python" if choice == "python" else "h2load"
    if choice == "h2load" and h2load.available():
        return "h2load"
    print(
        f"h2load is not installed: {h2load.INSTALL_HINT}\n"
        "falling back to the Python load generator; its figures are bound by the generator, "
        "not the servers",
        file=sys.stderr,
    )
    if choice == "h2load":
        raise SystemExit(2)
    return "python"


def _options(args: argparse.Namespace) -> Options:
    preset = QUICK if args.quick else FULL
    options = Options(
        duration_s=args.duration if args.duration is not None else preset["duration"],
        warmup_s=args.warmup if args.warmup is not None else preset["warmup"],
        rounds=args.rounds if args.rounds is not None else int(preset["rounds"]),
        concurrency=args.concurrency,
        connections=args.connections,
        load_procs=args.load_procs,
        mix=args.mix,
        quick=args.quick,
        generator=_generator(args.generator),
        pin=not args.no_pin,
        slices=max(1, args.slices),
    )
    if options.duration_s <= 0 or options.warmup_s < 0 or options.rounds < 1:
        raise SystemExit("duration must be positive, warm-up not negative, rounds at least 1")
    if options.connections < 1 or options.load_procs < 1:
        raise SystemExit("connections and load processes must be at least 1")
    return options


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds, so every server and load process is stopped


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    environ = dict(os.environ)
    prog = environ.get("BENCH_PROG", "python -m bench")  # scripts/bench names itself
    args = _parser(prog).parse_args(argv)
    options = _options(args)
    signal.signal(signal.SIGTERM, _terminate)
    command = " ".join([prog, shlex.join(argv)]).strip()
    print("\n".join(header(command, options)) + "\n", flush=True)
    reports: list[SuiteReport] = []
    ctx = Context(options, environ)
    try:
        for name in args.suite:
            print(f"== suite {name}", file=sys.stderr, flush=True)
            report = SUITES[name].run(ctx)
            reports.append(report)
            print(render(report), flush=True)
    except KeyboardInterrupt:
        print("interrupted: every server and load process was stopped", file=sys.stderr)
        return 130
    finally:
        ctx.close()
        if reports:
            meta = {
                "command": command,
                "options": vars(options) | {"concurrency": list(options.concurrency)},
            }
            path = write_json(meta, reports)
            print(f"raw results: {path.relative_to(path.parents[2])}", file=sys.stderr)
    failed = sum(len(report.failures) > 0 for report in reports)
    if failed:
        print(f"{failed} suite(s) had failed runs; see above", file=sys.stderr)
    return 1 if failed else 0
