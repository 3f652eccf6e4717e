"""Run one benchmark in this process and write its result as JSON (the harness's child process).

Usage: ``python -m benchmarks._child NAME --out FILE [--dir DIR] [--quick]``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmarks._harness import PACKAGE_DIR, run_in_process

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark named on the command line; always write the result file."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks._child")
    parser.add_argument("name")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--dir", type=Path, default=PACKAGE_DIR)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    result = run_in_process(args.name, args.quick, args.dir)
    args.out.write_text(json.dumps(result.to_dict(), default=str))
    return 0 if result.status in ("ok", "unavailable") else 1


if __name__ == "__main__":
    raise SystemExit(main())
