"""Benchmark 9: cold start, as a user's process sees it (fresh interpreter every time).

* **baseline**: ``python -c pass``: the interpreter's own start-up (site, .pth files), the physical floor.
* ``python -c "import unified_models, connectors"``: target < 0.3 s wall time (absolute, including the
  interpreter).
* ``python -c "import connectors"`` and ``python -c "from connectors import Connectors"`` (the first real
  use loads the runtime) for reference.
* ``connectors --help``: the console script next to this interpreter (not a pyenv/asdf shim, whose own
  start-up would be measured too), else ``python -m`` the CLI.

Every command runs ``repeats`` times, interleaved round-robin; the table shows medians, and the ratio of
each command to the bare interpreter.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from benchmarks._harness import ROOT, Row, at_most, log, median, row

__all__ = ["run"]

NAME = "coldstart"
IMPORT_TARGET = 0.3


def _cli() -> list[str]:
    beside = Path(sys.executable).with_name("connectors")
    if beside.is_file() and os.access(beside, os.X_OK):
        return [str(beside)]
    found = shutil.which("connectors")
    if found and "shims" not in Path(found).parts:
        return [found]
    return [sys.executable, "-c", "from connectors.cli import main; main()"]


def _time(command: list[str]) -> float:
    import time

    start = time.perf_counter()
    subprocess.run(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=True)
    return time.perf_counter() - start


def run(quick: bool) -> list[Row]:
    """Run benchmark 9 (see the module docstring)."""
    repeats = 1 if quick else 15
    python = sys.executable
    cases: dict[str, list[str]] = {
        "python -c pass (baseline)": [python, "-c", "pass"],
        'python -c "import unified_models, connectors"': [python, "-c", "import unified_models, connectors"],
        'python -c "import connectors"': [python, "-c", "import connectors"],
        'python -c "from connectors import Connectors"': [python, "-c", "from connectors import Connectors"],
        "connectors --help": [*_cli(), "--help"],
    }
    log(NAME, f"{len(cases)} commands x {repeats} runs; CLI: {' '.join(cases['connectors --help'][:1])}")
    times: dict[str, list[float]] = {name: [] for name in cases}
    for command in cases.values():  # warm the OS page cache and the bytecode caches
        _time(command)
    for i in range(repeats):
        names = list(cases)
        shift = i % len(names)
        for name in names[shift:] + names[:shift]:
            times[name].append(_time(cases[name]))
    base = median(times["python -c pass (baseline)"])
    rows = [row("python -c pass (baseline)", median_seconds=base, repeats=repeats)]
    for name in list(cases)[1:]:
        value = median(times[name])
        judged = name == 'python -c "import unified_models, connectors"'
        rows.append(
            row(
                name,
                median_seconds=value,
                baseline_seconds=base,
                ratio_vs_baseline=value / base,
                target=f"< {IMPORT_TARGET} s" if judged else None,
                met=at_most(value, IMPORT_TARGET) if judged else None,
                above_interpreter_seconds=value - base,
            )
        )
    return rows
