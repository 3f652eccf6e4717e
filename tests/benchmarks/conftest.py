"""Fixtures for the benchmark-harness tests: a directory of fake ``bench_*.py`` modules."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

FAKES = {
    "good": """
        def run(quick):
            return [
                {"name": "fast thing", "median_seconds": 0.002, "baseline_seconds": 0.001,
                 "ratio_vs_baseline": 2.0, "target": "ratio <= 3", "met": True, "quick": quick},
                {"name": "slow thing", "p50": 0.01, "p99": 0.05, "target": "p50 < 5 ms", "met": False},
                {"name": "a count", "value": 42, "unit": "requests"},
            ]
    """,
    "broken": """
        def run(quick):
            raise RuntimeError("the sandbox would not start")
    """,
    "badrows": """
        def run(quick):
            return [{"median_seconds": 1.0}]
    """,
    "badimport": """
        import module_that_does_not_exist_anywhere
        def run(quick):
            return []
    """,
    "hang": """
        import time
        def run(quick):
            time.sleep(60)
            return []
    """,
}


@pytest.fixture
def fake_benchmarks(tmp_path: Path) -> Path:
    """A directory with ``bench_good.py``, ``bench_broken.py``, ``bench_badrows.py``, ``bench_badimport.py``
    and ``bench_hang.py``."""
    for name, source in FAKES.items():
        (tmp_path / f"bench_{name}.py").write_text(textwrap.dedent(source))
    return tmp_path
