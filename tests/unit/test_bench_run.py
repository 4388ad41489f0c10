"""bench/run.py, the runner behind `make bench`: real subprocesses (tiny Python scripts in a temporary bench folder),
bounded in time. What is checked is the runner's bookkeeping - a missing script, a failure, a timeout, the report's
layout - never a benchmark's figures."""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]


def _load(name: str, path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


run = _load("strata_bench_run", REPO / "bench" / "run.py")

GOOD = """
import json, sys
out = sys.argv[sys.argv.index("--json") + 1]
json.dump({"benchmark": "good", "runs": 3, "answer": 42}, open(out, "w"))
print("[12:00:00] a log line, not part of the report")
print("| a | table |")
print("| --- | --- |")
print("| 1 | 2 |")
"""
FAILS = "import sys\nprint('something broke: what to do')\nsys.exit(3)\n"
HANGS = "import time\ntime.sleep(60)\n"


@pytest.fixture
def bench_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "bench"
    folder.mkdir()
    for name, text in (("good.py", GOOD), ("fails.py", FAILS), ("hangs.py", HANGS)):
        (folder / name).write_text(text)
    monkeypatch.setattr(run, "BENCH", folder)
    monkeypatch.setattr(run, "SLOT", tmp_path / "no-slot.sh")
    monkeypatch.setattr(run, "PYTHON", sys.executable)
    (tmp_path / "out").mkdir()
    return tmp_path


def entry(name: str, script: str, timeout: int = 30, **extra: Any) -> Any:
    return run.Benchmark(name, script, f"the {name} benchmark", run.json_and(name), (timeout, timeout), **extra)


def test_a_missing_script_is_not_available_not_an_error(bench_dir: Path) -> None:
    record = run.run_one(entry("postgresql_restore", "postgresql_restore.py"), True, bench_dir / "out")
    assert record["status"] == "not available"
    assert "postgresql_restore.py is not in this checkout" in record["why"]
    assert json.loads((bench_dir / "out" / "postgresql_restore.json").read_text())["status"] == "not available"


def test_a_good_benchmark_gives_rows_and_its_own_markdown(bench_dir: Path) -> None:
    record = run.run_one(entry("good", "good.py"), True, bench_dir / "out")
    assert record["status"] == "ok"
    assert record["rows"] == [{"figure": "answer", "value": "42", "competitor": "", "runs": "3"}]
    assert record["section"].splitlines() == ["| a | table |", "| --- | --- |", "| 1 | 2 |"]
    assert "--quick --json" in record["command"]


def test_failure_and_timeout_are_reported_with_the_log(bench_dir: Path) -> None:
    failed = run.run_one(entry("fails", "fails.py"), False, bench_dir / "out")
    assert failed["status"] == "failed"
    assert failed["rc"] == 3
    assert "something broke: what to do" in failed["why"]

    started = time.monotonic()
    hung = run.run_one(entry("hangs", "hangs.py", timeout=1), False, bench_dir / "out")
    assert hung["status"] == "timed out"
    assert time.monotonic() - started < 30, "the benchmark's process group is stopped at its time limit"


def test_quick_skip_says_why(bench_dir: Path) -> None:
    record = run.run_one(entry("good", "good.py", quick_skip="too long for --quick"), True, bench_dir / "out")
    assert record["status"] == "not run"
    assert record["why"] == "--quick: too long for --quick"


def test_report_puts_the_summary_first_with_the_machine(bench_dir: Path) -> None:
    out = bench_dir / "out"
    records = [
        run.run_one(entry("good", "good.py"), True, out),
        run.run_one(entry("gone", "gone.py"), True, out),
    ]
    text = run.report(records, True, time.time() - 5, ("0.10 0.20 0.30", "0.40 0.50 0.60"))
    lines = text.splitlines()
    assert lines[0].endswith("(--quick)")
    assert "cores" in lines[2] and "load average 0.10 0.20 0.30 before" in lines[2]
    summary = lines.index("## Summary")
    first_section = next(i for i, line in enumerate(lines) if line.startswith("## good:"))
    assert summary < first_section
    assert "| good | answer | 42 |  | 3 |" in text
    assert "| gone | - | not available | bench/gone.py is not in this checkout |" in text


def test_the_benchmark_list_names_existing_scripts_or_says_not_available() -> None:
    names = [bench.name for bench in run.BENCHMARKS]
    assert len(names) == len(set(names))
    for bench in run.BENCHMARKS:
        argv = bench.args(True, Path("/tmp/x"))
        assert "--json" in argv, f"{bench.name}: every benchmark writes its JSON"


WRK_OUTPUT = """Running 10s test @ http://127.0.0.1:8080/
  1 threads and 10 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.11ms    3.02ms  48.01ms   93.10%
    Req/Sec   398.41     20.12   440.00     70.00%
  Latency Distribution
     50%    1.20ms
     75%    2.01ms
     90%    4.10ms
     99%   15.33ms
  3990 requests in 10.02s, 500.12KB read
  Socket errors: connect 0, read 7, write 0, timeout 1
  Non-2xx or 3xx responses: 2
Requests/sec:    398.20
Transfer/sec:     49.91KB
"""


def test_wrk_summary_is_parsed() -> None:
    localstack = _load("strata_bench_localstack", REPO / "bench" / "localstack.py")
    parsed = localstack.parse_wrk(WRK_OUTPUT)
    assert parsed["requests"] == 3990
    assert parsed["non_2xx_3xx"] == 2
    assert parsed["socket_errors"] == {"connect": 0, "read": 7, "write": 0, "timeout": 1}
    assert parsed["failed"] == 10
    assert parsed["latency"]["p99_ms"] == pytest.approx(15.33)
    assert parsed["requests_per_s"] == pytest.approx(398.2)


def test_timing_separates_the_slot_wait_and_judges_the_quick_aim() -> None:
    records = [{"name": "converge", "slot_wait_s": 300.0}, {"name": "traffic"}]
    quick = run.timing(records, 850.0, quick=True)
    assert "wall time 850 s, of which 300 s waiting for a container slot and 550 s of its own work" in quick
    assert quick.endswith(f"under {run.QUICK_BUDGET_S} s of its own work: met")
    slow = run.timing([{"name": "traffic"}], 700.0, quick=True)
    assert "waiting" not in slow
    assert slow.endswith("**not met**")
    assert run.timing(records, 850.0, quick=False).endswith("550 s of its own work"), "no aim for the full run"


def test_the_report_states_the_own_work_time(bench_dir: Path) -> None:
    out = bench_dir / "out"
    record = run.run_one(entry("good", "good.py"), True, out)
    record["slot_wait_s"] = 2.0
    text = run.report([record], True, time.time() - 10, ("0.1 0.1 0.1", "0.1 0.1 0.1"))
    assert "s waiting for a container slot and" in text.splitlines()[2]
    assert "of its own work: met" in text.splitlines()[2]


def test_postgresql_rows_read_the_shapes_the_benchmarks_write() -> None:
    # The JSON shapes bench/postgresql_switchover.py and bench/postgresql_restore.py write (trimmed).
    switchover = {
        "summary": {
            "runs": 10,
            "failed": 0,
            "unavailable_s": {"p50": 3.2, "p95": 3.9, "max": 4.1},
            "acknowledged": 17000,
            "lost": 0,
        }
    }
    rows = run.pg_switchover_rows(switchover)
    assert rows[0]["value"] == "3.20 s / 3.90 s / 4.10 s" and rows[0]["runs"] == "10 of 10 switchovers"
    assert rows[1]["value"] == "0 of 17000"
    restore = {
        "restore": {"runs": 3, "correct": 2, "in_all_s": {"p50": 171.6, "max": 178.8}},
        "archive_lag_ms": {"p50": 160, "max": 410, "runs": 10},
        "backup": {"full_backup_s": 5.9, "database_mb": 121.6},
    }
    values = [r["value"] for r in run.pg_restore_rows(restore)]
    assert values == [
        "171.60 s / 178.80 s (2 of 3 held exactly the rows before the target)",
        "5.90 s for 121.6 MiB",
        "160 / 410 ms",
    ]
    # A benchmark that died before its summary still gives rows, not an exception.
    assert run.pg_switchover_rows({})[1]["value"] == "? of ?"
    assert run.pg_restore_rows({})[0]["runs"] == "0 restores"
