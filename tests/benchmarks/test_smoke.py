"""Smoke test: ``python -m benchmarks --quick`` runs every benchmark of this issue end to end.

It checks that each one runs to completion and returns well-formed rows; it never asserts a timing or
whether a target was met (quick mode is too small and this machine too noisy for that: see RESULTS.md).
The other engineers' benchmarks (bulk, webhooks, server) are run by their own tests.
"""

from __future__ import annotations

import json
import numbers
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OURS = ["export", "mapping", "ratelimit", "concurrency", "memory", "coldstart", "sandbox"]
VALUE_KEYS = ("median_seconds", "p50", "p99", "value", "status")


@pytest.mark.slow
@pytest.mark.http
def test_quick_run_of_every_benchmark(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    results_md = tmp_path / "RESULTS.md"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", *OURS, "--json", str(out), "--results", str(results_md)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr[-5000:]}"
    data = json.loads(out.read_text())
    assert data["quick"] is True
    by_name = {r["name"]: r for r in data["results"]}
    assert list(by_name) == OURS
    for name, result in by_name.items():
        assert result["status"] == "ok", (name, result["error"])
        assert result["rows"], name
        for r in result["rows"]:
            assert isinstance(r["name"], str) and r["name"], (name, r)
            assert any(key in r for key in VALUE_KEYS), (name, r)
            for key in ("median_seconds", "p50", "p99", "baseline_seconds", "ratio_vs_baseline"):
                if key in r:
                    assert isinstance(r[key], numbers.Real) and r[key] > 0, (name, key, r)
            if "met" in r:
                assert isinstance(r["met"], bool) and r.get("target"), (name, r)
        assert sum("met" in r for r in result["rows"]) >= 1, f"{name} judges no target"
    for name in OURS:
        assert f"== {name}:" in done.stdout
    assert "== summary" in done.stdout
    text = results_md.read_text()
    assert "quick mode" in text and all(f"### {name}:" in text for name in OURS)
