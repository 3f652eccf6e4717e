"""The benchmark harness: rows, statistics, discovery, isolation, tables and RESULTS.md (no timing asserts)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import _harness as h
from benchmarks.__main__ import main

ROOT = Path(__file__).resolve().parents[2]


def test_row_drops_none_and_keeps_details() -> None:
    r = h.row("x", median_seconds=1.5, p50=None, target=None, met=None, records=10, note=None)
    assert r == {"name": "x", "median_seconds": 1.5, "records": 10}


def test_targets_need_finite_values() -> None:
    assert h.at_most(1.0, 1.0)
    assert not h.at_most(1.01, 1.0)
    assert not h.at_most(math.nan, 1.0)
    assert h.at_least(5.0, 5.0)
    assert not h.at_least(math.inf * 0, 1.0)


def test_median_and_percentile() -> None:
    assert h.median([3.0, 1.0, 2.0]) == 2.0
    assert math.isnan(h.median([]))
    assert h.percentile([1.0, 2.0, 3.0, 4.0, 5.0], 50) == 3.0
    assert h.percentile([1.0, 2.0, 3.0, 4.0, 5.0], 100) == 5.0
    assert h.percentile([0.0, 10.0], 99) == pytest.approx(9.9)
    assert math.isnan(h.percentile([], 99))


def test_validate_rows_names_the_offending_row() -> None:
    assert h.validate_rows([{"name": "a"}]) == [{"name": "a"}]
    with pytest.raises(TypeError, match="list of dicts"):
        h.validate_rows({"name": "a"})
    with pytest.raises(TypeError, match="row 1 is a str"):
        h.validate_rows([{"name": "a"}, "b"])
    with pytest.raises(TypeError, match="row 0 has no 'name'"):
        h.validate_rows([{"median_seconds": 1.0}])


def test_compare_alternates_which_side_goes_first() -> None:
    calls: list[str] = []
    result = h.compare(lambda: calls.append("c"), lambda: calls.append("b"), repeats=4, warmup=1)
    assert calls == ["b", "c", "c", "b", "b", "c", "c", "b", "b", "c"]
    assert len(result.candidate) == len(result.baseline) == 4
    assert result.ratio == h.paired_ratio(result.candidate, result.baseline)


def test_paired_ratio_is_the_median_of_per_round_ratios() -> None:
    # round 3 ran during a burst of other load: both sides slow, its ratio still 2
    assert h.paired_ratio([2.0, 4.0, 40.0], [1.0, 2.0, 20.0]) == 2.0
    assert h.paired_ratio([3.0, 1.0, 2.0], [1.0, 1.0, 1.0]) == 2.0
    assert math.isinf(h.paired_ratio([1.0], [0.0]))
    with pytest.raises(ValueError):
        h.paired_ratio([1.0, 2.0], [1.0])


def test_time_call_and_time_async_count_warmups_and_repeats() -> None:
    calls: list[int] = []
    times = h.time_call(lambda: calls.append(1), repeats=3, warmup=2)
    assert len(calls) == 5 and len(times) == 3 and all(t >= 0 for t in times)

    async def tick() -> None:
        calls.append(2)

    async_times = h.run_coroutine(lambda: h.time_async(tick, repeats=2, warmup=1))
    assert calls.count(2) == 3 and len(async_times) == 2


def test_compare_async_alternates_like_compare() -> None:
    calls: list[str] = []

    async def cand() -> None:
        calls.append("c")

    async def base() -> None:
        calls.append("b")

    result = h.run_coroutine(lambda: h.compare_async(cand, base, repeats=2, warmup=0))
    assert calls == ["c", "b", "b", "c"]
    assert len(result.candidate) == len(result.baseline) == 2


def test_interleave_async_rotates_the_order() -> None:
    calls: list[str] = []

    def case(name: str):  # type: ignore[no-untyped-def]
        async def run() -> None:
            calls.append(name)

        return run

    cpu: dict[str, list[float]] = {}
    times = h.run_coroutine(
        lambda: h.interleave_async({"a": case("a"), "b": case("b"), "c": case("c")}, repeats=3, warmup=0, cpu=cpu)
    )
    assert calls == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]
    assert {k: len(v) for k, v in times.items()} == {"a": 3, "b": 3, "c": 3}
    assert {k: len(v) for k, v in cpu.items()} == {"a": 3, "b": 3, "c": 3}


def test_format_seconds_picks_a_unit() -> None:
    assert h.format_seconds(1.234) == "1.23 s"
    assert h.format_seconds(0.00123) == "1.23 ms"
    assert h.format_seconds(0.0000123) == "12.3 µs"
    assert h.format_seconds(0.0000000123) == "12.3 ns"
    assert h.format_seconds(math.nan) == "nan"


def test_discover_lists_known_benchmarks_first_then_extra_modules(fake_benchmarks: Path) -> None:
    names = h.discover(fake_benchmarks)
    assert names[: len(h.BENCHMARKS)] == list(h.BENCHMARKS)
    assert names[len(h.BENCHMARKS) :] == ["badimport", "badrows", "broken", "good", "hang"]
    assert h.available("good", fake_benchmarks)
    assert not h.available("export", fake_benchmarks)


def test_the_other_engineers_benchmarks_are_known_names() -> None:
    for name in ("bulk", "webhooks", "server"):
        assert name in h.BENCHMARKS
        assert h.module_name(name) == f"benchmarks.bench_{name}"


@pytest.mark.parametrize("isolate", [False, True], ids=["in-process", "child-process"])
def test_run_benchmark_reports_every_outcome(fake_benchmarks: Path, isolate: bool) -> None:
    def go(name: str, timeout: float | None = 60.0) -> h.BenchmarkResult:
        return h.run_benchmark(name, quick=True, isolate=isolate, timeout=timeout, directory=fake_benchmarks)

    good = go("good")
    assert good.status == "ok"
    assert [r["name"] for r in good.rows] == ["fast thing", "slow thing", "a count"]
    assert good.rows[0]["quick"] is True
    assert good.targets() == (1, 2)

    missing = go("server")
    assert (missing.status, missing.error) == ("unavailable", "not available yet")

    broken = go("broken")
    assert broken.status == "error"
    assert "RuntimeError: the sandbox would not start" in (broken.error or "")

    assert go("badrows").status == "error"
    bad_import = go("badimport")
    assert bad_import.status == "error"
    assert "module_that_does_not_exist_anywhere" in (bad_import.error or "")
    if isolate:
        hung = go("hang", timeout=2.0)
        assert hung.status == "timeout"
        assert "killed after 2 s" in (hung.error or "")


def test_table_and_markdown_show_values_targets_and_statuses(fake_benchmarks: Path) -> None:
    good = h.run_benchmark("good", quick=False, isolate=False, directory=fake_benchmarks)
    missing = h.run_benchmark("webhooks", quick=False, isolate=False, directory=fake_benchmarks)
    table = h.format_table(good)
    assert "fast thing" in table
    assert "2 ms" in table and "1 ms" in table and "2x" in table
    assert "p50 10 ms / p99 50 ms" in table
    assert "42 requests" in table
    assert "quick=no" in table
    assert "NO" in table  # the missed target is visible
    assert "not available yet" in h.format_table(missing)

    info = h.machine_info(["--quick"])
    report = h.markdown_report([good, missing], info, quick=True)
    assert "| good | ok | 1/2 |" in report
    assert "| webhooks | unavailable: not available yet | — |" in report
    assert "### good:" in report
    assert "| fast thing | 2 ms | 1 ms | 2x | ratio <= 3 | yes |" in report
    assert info["command"] in report
    assert "quick mode" in report


def test_machine_info_describes_the_machine() -> None:
    info = h.machine_info()
    assert info["cpus"] >= 1
    assert info["python"].count(".") == 2
    assert info["cpu"] and info["memory"] and info["date"].endswith("UTC")
    assert info["load"].count("/") == 2


def test_update_results_file_keeps_the_hand_written_text(tmp_path: Path) -> None:
    path = tmp_path / "RESULTS.md"
    h.update_results_file(path, "first run\n")
    assert h.RESULTS_START in path.read_text() and "first run" in path.read_text()
    path.write_text(
        path.read_text().replace("# Benchmark results", "# Benchmark results\n\nAnalysis above.") + "\nNotes below.\n"
    )
    h.update_results_file(path, "second run\n")
    text = path.read_text()
    assert "Analysis above." in text and "Notes below." in text
    assert "second run" in text and "first run" not in text
    assert text.count(h.RESULTS_START) == 1


def test_cli_lists_benchmarks_and_rejects_unknown_names(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--list"]) == 0
    out = capsys.readouterr().out
    for name in h.BENCHMARKS:
        assert name in out
    with pytest.raises(SystemExit) as exc:
        main(["no-such-benchmark"])
    assert exc.value.code == 2
    assert "unknown benchmark" in capsys.readouterr().err


def test_cli_writes_json_and_results_and_fails_on_errors(fake_benchmarks: Path) -> None:
    out_json = fake_benchmarks / "out.json"
    results = fake_benchmarks / "RESULTS.md"
    common = ["--dir", str(fake_benchmarks), "--quick"]
    assert main([*common, "good", "bulk", "--json", str(out_json), "--results", str(results)]) == 0
    data = json.loads(out_json.read_text())
    assert [(r["name"], r["status"]) for r in data["results"]] == [("good", "ok"), ("bulk", "unavailable")]
    assert data["quick"] is True and data["machine"]["cpus"] >= 1
    assert "| good | ok | 1/2 |" in results.read_text()
    assert main([*common, "good", "broken"]) == 1
    assert main([*common, "--in-process", "good", "broken"]) == 1
    assert main([*common, "good"]) == 0
    assert main([*common, "--strict", "good"]) == 1  # "slow thing" missed its target


def test_python_dash_m_benchmarks_runs() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--list"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "export" in done.stdout and "sandbox" in done.stdout
