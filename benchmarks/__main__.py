"""``python -m benchmarks [--quick] [NAME...]``: run the benchmarks and print their tables.

Options:
    --quick            smaller sizes and fewer repeats (well under a minute; not for judging targets)
    --list             list the benchmarks and whether each is available
    --json FILE        also write every result row as JSON
    --results [FILE]   write the tables, machine and date into FILE (default benchmarks/RESULTS.md),
                       between the generated-section markers
    --in-process       run the benchmarks in this process instead of one child process each
    --timeout SECONDS  kill a benchmark that runs longer (default: 1800, quick: 300)
    --strict           exit 1 when a target is missed (default: only when a benchmark fails)
    --dir DIR          directory of the bench_*.py modules (default: this package)

Exit status: 0 when every available benchmark ran, 1 when one failed or timed out (or, with --strict,
missed a target), 2 for bad usage. A benchmark whose module does not exist yet is reported as
"not available yet" and does not fail the run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from benchmarks._harness import (
    PACKAGE_DIR,
    BenchmarkResult,
    available,
    describe,
    discover,
    format_table,
    machine_info,
    markdown_report,
    run_benchmark,
    update_results_file,
)

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description="Run the unified-connectors benchmarks.")
    parser.add_argument("names", nargs="*", metavar="NAME", help="benchmarks to run (default: all)")
    parser.add_argument("--quick", action="store_true", help="smaller sizes and fewer repeats")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write every row as JSON")
    parser.add_argument(
        "--results",
        type=Path,
        nargs="?",
        const=PACKAGE_DIR / "RESULTS.md",
        metavar="FILE",
        help="write the tables into FILE (default benchmarks/RESULTS.md)",
    )
    parser.add_argument("--in-process", action="store_true", help="do not start a child process per benchmark")
    parser.add_argument("--timeout", type=float, help="seconds before a benchmark is killed")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--dir", type=Path, default=PACKAGE_DIR, help="directory of the bench_*.py modules")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, run the benchmarks, print and write the results; return the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    parser = _parser()
    args = parser.parse_args(argv)
    directory: Path = args.dir.resolve()
    known = discover(directory)
    unknown = [n for n in args.names if n not in known]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(known)}")
    if args.list:
        for name in known:
            state = "available" if available(name, directory) else "not available yet"
            print(f"{name:<12} {describe(name)} ({state})")
        return 0
    selected = list(dict.fromkeys(args.names)) or known
    timeout = args.timeout if args.timeout is not None else (300.0 if args.quick else 1800.0)
    info = machine_info(argv)
    print(
        f"# benchmarks{' (quick)' if args.quick else ''}: {info['date']}; {info['cpu']}, {info['cpus']} CPUs, "
        f"load {info['load']}"
    )
    results: list[BenchmarkResult] = []
    for name in selected:
        if available(name, directory):
            print(f"-- running {name} ...", file=sys.stderr, flush=True)
        result = run_benchmark(
            name, quick=args.quick, isolate=not args.in_process, timeout=timeout, directory=directory
        )
        results.append(result)
        print(format_table(result), flush=True)
    print(_summary(results))
    if args.json is not None:
        payload = {"machine": info, "quick": args.quick, "results": [r.to_dict() for r in results]}
        args.json.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    if args.results is not None:
        update_results_file(args.results, markdown_report(results, info, quick=args.quick))
        print(f"wrote {args.results}")
    failed = [r for r in results if r.status in ("error", "timeout")]
    missed = [r for r in results if r.targets()[0] < r.targets()[1]]
    return 1 if failed or (args.strict and missed) else 0


def _summary(results: list[BenchmarkResult]) -> str:
    lines = ["", "== summary"]
    for result in results:
        met, judged = result.targets()
        if result.status == "ok":
            state = f"targets met {met}/{judged}" if judged else "no targets"
        else:
            state = f"{result.status}: {result.error or ''}"
        lines.append(f"   {result.name:<12} {result.seconds:7.1f} s  {state}")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
