"""Benchmarks of unified-connectors: ``python -m benchmarks [--quick] [NAME...]``.

Each ``bench_<name>.py`` module exposes ``run(quick: bool) -> list[dict]``; the harness
(:mod:`benchmarks._harness`) runs each in its own process and prints a table of medians and ratios against
a baseline measured in the same run. The latest full run is in ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

__all__: list[str] = []
