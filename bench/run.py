"""`make bench`: run every benchmark under bench/ and write bench/results/<YYYY-MM-DD>/ - one JSON per benchmark,
PNG plots and REPORT.md (a summary table first, then one section per benchmark: plots, the exact command, what was
not run and why). A measurement, not a test: nothing asserts on absolute times.

Each benchmark is one entry of BENCHMARKS: its script, its arguments (full and --quick), a time limit, whether it
needs a container slot (/tmp/slot.sh, when present), and how its JSON becomes rows of the summary table. A script
that is not in the checkout is reported "not available"; a benchmark that fails or runs out of time is reported
with its exit and the tail of its log, and the others still run.

    .venv/bin/python bench/run.py --quick                    # under 10 minutes (the figures of one run each)
    .venv/bin/python bench/run.py --only traffic --only chaos
    .venv/bin/python bench/run.py --out /tmp/bench-results    # writes /tmp/bench-results/<date>/
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PYTHON = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").exists() else sys.executable
# The machine's shared slot for container-heavy jobs (at most two at once, whoever starts them); unset or missing:
# run directly.
SLOT = Path(os.environ.get("STRATA_BENCH_SLOT", "/tmp/slot.sh"))  # noqa: S108 - a fixed script of the machine

Row = dict[str, str]
QUICK_BUDGET_S = 600  # issue 10: --quick under 10 minutes of its own work (waiting for a container slot apart)


def fmt_s(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f} s"


def get(data: Any, *path: Any) -> Any:
    for key in path:
        if isinstance(data, dict):
            data = data.get(key)
        elif isinstance(data, list) and isinstance(key, int) and -len(data) <= key < len(data):
            data = data[key]
        else:
            return None
    return data


# -- summaries: benchmark JSON -> rows (figure, value, competitor / ratio, runs) ----------------------------------
def traffic_rows(data: dict[str, Any]) -> list[Row]:
    rows = []
    for step in data.get("steps", []):
        s, c = step["strata"]["step_s"], step["community.general"]["step_s"]
        ratio = step.get("ratio_median_step")
        rows.append(
            {
                "figure": f"canary step, {step['servers']} servers x {step['lbs']} LB (median)",
                "value": fmt_s(s["median"]),
                "competitor": f"community.general.haproxy {fmt_s(c['median'])}, {ratio:.1f}x"
                if ratio
                else "c.g. not run",
                "runs": f"{s['runs']} / {c['runs']} steps",
            }
        )
    for abort in data.get("abort", []):
        task = abort["abort_latency_from_task_start_s"]
        rows.append(
            {
                "figure": f"abort latency {abort['lb']} (from the abort task's start, median)",
                "value": fmt_s(task["median"]),
                "competitor": "",
                "runs": f"{abort['aborts']} aborts",
            }
        )
        rows.append(
            {
                "figure": f"failed requests, canary + abort, {abort['lb']} (Python client)",
                "value": f"{abort['load']['failed']} of {abort['load']['requests']}",
                "competitor": "",
                "runs": f"{abort['aborts']} aborts",
            }
        )
    if reloads := data.get("nginx_reloads"):
        rows.append(
            {
                "figure": "nginx: failed requests per reload (nginx_upstream)",
                "value": f"{reloads['failed_per_reload']:.2f}",
                "competitor": "",
                "runs": f"{reloads['reloads']} reloads",
            }
        )
    return rows


def traffic_load_rows(data: dict[str, Any]) -> list[Row]:
    rows = []
    for key, label in (("rolling", "rolling update of 4 backends"), ("abort", "canary 10-25-50 % + abort")):
        if part := data.get(key):
            rows.append(
                {
                    "figure": f"failed requests under wrk, {label}",
                    "value": f"{part['wrk']['failed']} of {part['wrk']['requests']}",
                    "competitor": "",
                    "runs": "1" if key == "rolling" else f"{part['aborts']} abort run(s)",
                }
            )
    if gate := data.get("gate"):
        rows.append(
            {
                "figure": "bad canary, Prometheus gate: outcome",
                "value": f"{gate['status']} in {gate['canary_task']['seconds']:.1f} s",
                "competitor": "",
                "runs": "1",
            }
        )
    return rows


def converge_rows(data: dict[str, Any]) -> list[Row]:
    rows = []
    sizes = data.get("sizes", [])
    if sizes:
        first = sizes[0]
        rows.append(
            {
                "figure": f"first converge, 1 LB + {first['apps']} app (app + lb plays)",
                "value": f"{first['converge']['wall_s']:.0f} s, changed {first['converge']['changed']}",
                "competitor": "",
                "runs": "1",
            }
        )
        rows.append(
            {
                "figure": "idempotent re-run" + (" (-vvv --diff)" if first["rerun"]["args"] else ""),
                "value": f"{first['rerun']['wall_s']:.0f} s, changed {first['rerun']['changed']}",
                "competitor": "",
                "runs": "1",
            }
        )
        curve = ", ".join(f"{s['apps']}: {s['converge']['wall_s']:.0f} / {s['rerun']['wall_s']:.0f} s" for s in sizes)
        rows.append(
            {"figure": "cost curve, app hosts: converge / re-run", "value": curve, "competitor": "", "runs": "1 each"}
        )
    if scan := data.get("secrets_scan"):
        rows.append(
            {
                "figure": "secrets in the -vvv --diff output",
                "value": f"{scan['leaked']} of {scan['secrets']}",
                "competitor": "",
                "runs": "1",
            }
        )
    return rows


def redis_rows(data: dict[str, Any]) -> list[Row]:
    rows = []
    for key, label in (("tuned", "role's timing"), ("default", "Redis defaults")):
        if part := data.get(key):
            rows.append(
                {
                    "figure": f"Redis kill -> new master accepts writes, {label} (p50 / p99)",
                    "value": f"{fmt_s(part['writable']['p50'])} / {fmt_s(part['writable']['p99'])}",
                    "competitor": "",
                    "runs": f"{part['kills']} kills",
                }
            )
            rows.append(
                {
                    "figure": f"Redis acknowledged writes lost, {label} (no WAIT / WAIT 1)",
                    "value": f"{part['plain_lost']} of {part['plain_acked']} / "
                    f"{part['wait_lost']} of {part['wait_acked']}",
                    "competitor": "",
                    "runs": f"{part['kills']} kills",
                }
            )
    return rows


def pg_switchover_rows(data: dict[str, Any]) -> list[Row]:
    s = data.get("summary", {})
    u = s.get("unavailable_s", {})
    runs = f"{s.get('runs', 0) - s.get('failed', 0)} of {s.get('runs', 0)} switchovers"
    return [
        {
            "figure": "PostgreSQL switchover: write unavailability (p50 / p95 / max)",
            "value": f"{fmt_s(u.get('p50'))} / {fmt_s(u.get('p95'))} / {fmt_s(u.get('max'))}",
            "competitor": "pigsty declares 30-45 s, GitLab reports 1-3 min (their figures, not measured here)",
            "runs": runs,
        },
        {
            "figure": "PostgreSQL switchover: acknowledged commits lost",
            "value": f"{s.get('lost', '?')} of {s.get('acknowledged', '?')}",
            "competitor": "",
            "runs": runs,
        },
    ]


def pg_restore_rows(data: dict[str, Any]) -> list[Row]:
    r, lag, b = data.get("restore", {}), data.get("archive_lag_ms", {}), data.get("backup", {})
    runs = f"{r.get('runs', 0)} restores"
    return [
        {
            "figure": "PostgreSQL point-in-time restore, in all (p50 / max)",
            "value": f"{fmt_s(r.get('in_all_s', {}).get('p50'))} / {fmt_s(r.get('in_all_s', {}).get('max'))} "
            f"({r.get('correct', 0)} of {r.get('runs', 0)} held exactly the rows before the target)",
            "competitor": "",
            "runs": runs,
        },
        {
            "figure": "PostgreSQL full backup from the standby",
            "value": f"{fmt_s(b.get('full_backup_s'))} for {b.get('database_mb', '?')} MiB",
            "competitor": "",
            "runs": "1",
        },
        {
            "figure": "PostgreSQL WAL archive lag (p50 / max)",
            "value": f"{lag.get('p50', '?')} / {lag.get('max', '?')} ms",
            "competitor": "",
            "runs": f"{lag.get('runs', 0)} segments",
        },
    ]


def chaos_rows(data: dict[str, Any]) -> list[Row]:
    table = data.get("rows", [])
    ran = [r for r in table if r["survived"] is not None]
    survived = [r for r in ran if r["survived"]]
    failed = ", ".join(r["fault"] for r in ran if not r["survived"])
    return [
        {
            "figure": "chaos: faults survived",
            "value": f"{len(survived)} of {len(ran)} run ({len(table) - len(ran)} not run)",
            "competitor": f"not survived: {failed}" if failed else "",
            "runs": "1 each",
        }
    ]


def generic_rows(data: dict[str, Any]) -> list[Row]:
    """For a benchmark whose JSON shape this runner does not know yet: its top-level numbers."""
    return [
        {"figure": key, "value": str(value), "competitor": "", "runs": str(data.get("runs", "?"))}
        for key, value in data.items()
        if isinstance(value, int | float) and key not in ("runs",)
    ][:6]


def chaos_markdown(data: dict[str, Any]) -> str:
    lines = ["| Fault | How | Survived | Detail |", "| --- | --- | --- | --- |"]
    for r in data.get("rows", []):
        mark = {True: "yes", False: "**no**", None: "not run"}[r["survived"]]
        lines.append(f"| {r['fault']} | {r['how']} | {mark} | {r['detail']} |")
    return "\n".join(lines)


# -- the benchmarks -------------------------------------------------------------------------------------------------
@dataclass
class Benchmark:
    name: str
    script: str
    title: str
    args: Callable[[bool, Path], list[str]]  # (quick, results folder) -> arguments after the script
    timeout: tuple[int, int]  # seconds: (quick, full)
    rows: Callable[[dict[str, Any]], list[Row]] = generic_rows
    plots: list[str] = field(default_factory=list)
    slot: bool = False
    quick_skip: str = ""  # non-empty: not run with --quick, and why
    cuts: tuple[str, str] = ("", "")  # what (quick, full) leave out, for the report
    markdown: Callable[[dict[str, Any]], str] | None = None


def json_and(name: str, *extra: str, plot: str | None = None) -> Callable[[bool, Path], list[str]]:
    def build(quick: bool, out: Path) -> list[str]:
        argv = [*(["--quick"] if quick else []), "--json", str(out / f"{name}.json"), *extra]
        return [*argv, "--plot", str(out / plot)] if plot else argv

    return build


BENCHMARKS: list[Benchmark] = [
    Benchmark(
        "traffic",
        "traffic.py",
        "Traffic shifting: step time vs community.general.haproxy, abort latency, reloads",
        json_and("traffic", plot="traffic.png"),
        (900, 5400),
        traffic_rows,
        ["traffic.png"],
        cuts=(
            "--quick: 1 run of 4 steps per size with strata, community.general at 4 servers only (1 run), 2 aborts "
            "per LB kind, 10 nginx reloads",
            "",
        ),
    ),
    Benchmark(
        "traffic_load",
        "traffic_load.py",
        "Traffic under wrk: rolling update, canary + abort; a canary rolled back by its Prometheus gate",
        json_and("traffic_load", plot="traffic_load_gate_timeline.png"),
        (600, 1200),
        traffic_load_rows,
        ["traffic_load_gate_timeline.png"],
        cuts=("--quick: 1 canary + abort run instead of 3, a 3 s bake instead of 5 s", ""),
    ),
    Benchmark(
        "converge",
        "converge.py",
        "Converge: first converge, idempotent re-run, cost curve of the app tier",
        json_and("converge", plot="converge.png"),
        (2700, 10800),  # the time limits include waiting for a slot
        converge_rows,
        ["converge.png"],
        slot=True,
        cuts=(
            "--quick: one size, 1 LB + 2 app hosts (first converge, -vvv --diff re-run, partition): no cost curve "
            "(3 -> 6 -> 12 is the full run); the app + lb plays of site.yml only (no Redis, PostgreSQL, monitoring)",
            "the app + lb plays of site.yml only (no Redis, PostgreSQL, monitoring: their own benchmarks converge "
            "them)",
        ),
    ),
    Benchmark(
        "redis_failover",
        "redis_failover.py",
        "Redis: kill-to-new-master time, writes lost with and without WAIT",
        lambda quick, out: ["--json", str(out / "redis_failover.json")],
        (0, 3600),
        redis_rows,
        slot=True,
        quick_skip="it converges 3 Redis containers first (6-13 min on this machine) before 10 + 3 kills: more "
        "than the whole --quick budget; run `make bench` (or `bench/run.py --only redis_failover`)",
    ),
    Benchmark(
        "postgresql_switchover",
        "postgresql_switchover.py",
        "PostgreSQL: switchover write unavailability, acknowledged commits lost",
        lambda quick, out: ["--switchovers", "10", "--json", str(out / "postgresql_switchover.json")],
        (0, 5400),
        pg_switchover_rows,
        slot=True,
        quick_skip="it converges its own PostgreSQL containers first (5-6 min on this machine) before 10 "
        "switchovers: more than the whole --quick budget; run `make bench` (or `bench/run.py --only "
        "postgresql_switchover`)",
    ),
    Benchmark(
        "postgresql_restore",
        "postgresql_restore.py",
        "PostgreSQL: restore time, full backup time, WAL archive lag",
        lambda quick, out: ["--json", str(out / "postgresql_restore.json")],
        (0, 3600),
        pg_restore_rows,
        slot=True,
        quick_skip="it converges its own PostgreSQL and repository containers first (5 min on this machine) before "
        "3 restores of about 3 min each: more than the whole --quick budget; run `make bench` (or `bench/run.py "
        "--only postgresql_restore`)",
    ),
    Benchmark(
        "chaos",
        "chaos.py",
        "Chaos: what was tried and what survived",
        lambda quick, out: [
            *(["--quick"] if quick else []),
            "--json",
            str(out / "chaos.json"),
            "--converge-json",
            str(out / "converge.json"),
        ],
        (600, 3600),
        chaos_rows,
        markdown=chaos_markdown,
        cuts=("--quick: the local rows (controller killed at the middle step boundary only); no Redis kill", ""),
    ),
]


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def machine() -> dict[str, Any]:
    mem = "?"
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    return {"cores": os.cpu_count(), "memory": mem, "hostname": os.uname().nodename}


def run_one(bench: Benchmark, quick: bool, out: Path) -> dict[str, Any]:
    """Run one benchmark (bounded); returns its record for the report (and writes <name>.json if it did not)."""
    script = BENCH / bench.script
    argv = [PYTHON, str(script), *bench.args(quick, out)]
    if bench.slot and SLOT.exists():
        argv = [str(SLOT), *argv]
    record: dict[str, Any] = {
        "name": bench.name,
        "title": bench.title,
        "command": shlex.join(argv).replace(f"{ROOT}/", ""),  # paths relative to the checkout, where it runs
        "json": f"{bench.name}.json",
        "plots": [],
        "cut": bench.cuts[0 if quick else 1],
    }
    if not script.exists():
        record.update(status="not available", why=f"bench/{bench.script} is not in this checkout")
    elif quick and bench.quick_skip:
        record.update(status="not run", why=f"--quick: {bench.quick_skip}")
    if "status" in record:
        record["rows"] = []
        (out / record["json"]).write_text(json.dumps({"benchmark": bench.name, **record}, indent=1))
        return record
    timeout = bench.timeout[0 if quick else 1]
    log_file = out / f"{bench.name}.log"
    record.update(load_before=loadavg(), log=log_file.name, timeout_s=timeout)
    began = time.time()
    print(f"[{time.strftime('%H:%M:%S')}] {bench.name}: {record['command']} (at most {timeout} s)", flush=True)
    with log_file.open("wb") as sink:
        proc = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            rc = None
            stop_group(proc)
    record.update(wall_s=round(time.time() - began, 1), load_after=loadavg(), rc=rc)
    if bench.slot and (waited := slot_wait(log_file, began)) is not None:
        record["slot_wait_s"] = waited
    produced = out / record["json"]
    data = json.loads(produced.read_text()) if produced.exists() else {}
    record["plots"] = [p for p in bench.plots if (out / p).exists()]
    if rc == 0 and data:
        record["status"] = "ok"
    else:
        tail = log_file.read_text(errors="replace").strip().splitlines()[-12:]
        record.update(
            status="timed out" if rc is None else "failed",
            why=(f"stopped after {timeout} s" if rc is None else f"exit {rc}")
            + "; last lines of the log:\n"
            + "\n".join(tail),
        )
        if not data:
            produced.write_text(json.dumps({"benchmark": bench.name, **record}, indent=1))
    record["rows"] = bench.rows(data) if data and record["status"] == "ok" else []
    record["section"] = bench.markdown(data) if bench.markdown and data else stdout_tables(log_file)
    record["data_error"] = data.get("error")
    print(f"[{time.strftime('%H:%M:%S')}] {bench.name}: {record['status']} in {record['wall_s']:.0f} s", flush=True)
    return record


def slot_wait(log_file: Path, began: float) -> float | None:
    """Seconds spent waiting for a slot: slot.sh prints ``slot N: <command> (HH:MM:SS)`` when it gets one."""
    with contextlib.suppress(OSError, StopIteration, ValueError):
        first = next(line for line in log_file.read_text(errors="replace").splitlines() if line.startswith("slot "))
        clock = time.strptime(first.rsplit("(", 1)[1].rstrip(")"), "%H:%M:%S")
        start = time.localtime(began)
        got = time.mktime((*start[:3], clock.tm_hour, clock.tm_min, clock.tm_sec, 0, 0, -1))
        return round(max(0.0, got - began), 1)
    return None


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the benchmark's process group (each script cleans up on SIGTERM), SIGKILL if it lingers."""
    for sig, grace in ((signal.SIGTERM, 60.0), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def stdout_tables(log_file: Path) -> str:
    """The markdown the script printed: every line from its first table or sentence block, without log lines."""
    if not log_file.exists():
        return ""
    lines = [line for line in log_file.read_text(errors="replace").splitlines() if not line.startswith("[")]
    start = next((i for i, line in enumerate(lines) if line.startswith("|")), None)
    return "\n".join(lines[start:]).strip() if start is not None else ""


def timing(records: list[dict[str, Any]], wall_s: float, quick: bool) -> str:
    """The run's wall time, the time spent waiting for a container slot (the machine's, not the benchmarks'), the
    rest (its own work) and, with --quick, whether that rest met the 10-minute aim."""
    waited = sum(rec.get("slot_wait_s", 0) for rec in records)
    own = wall_s - waited
    text = f"wall time {wall_s:.0f} s"
    if waited:
        text += f", of which {waited:.0f} s waiting for a container slot and {own:.0f} s of its own work"
    if quick:
        verdict = "met" if own < QUICK_BUDGET_S else "**not met**"
        text += f"; the --quick aim of under {QUICK_BUDGET_S} s of its own work: {verdict}"
    return text


def report(records: list[dict[str, Any]], quick: bool, began: float, load: tuple[str, str]) -> str:
    info = machine()
    lines = [
        f"# strata.deploy benchmarks, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(began))}"
        f"{' (--quick)' if quick else ''}",
        "",
        f"Machine: {info['hostname']}, {info['cores']} cores, {info['memory']} memory; load average {load[0]} before, "
        f"{load[1]} after; {timing(records, time.time() - began, quick)}. Every figure is from this run on this "
        "machine (shared with other work: see each benchmark's load), the median of the runs named; nothing here is "
        "a promise or a test.",
        "",
        "## Summary",
        "",
        "| Benchmark | Figure | Value | Competitor / ratio | Runs | Load before / after |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for rec in records:
        load_text = f"{rec.get('load_before', '-')} / {rec.get('load_after', '-')}"
        if not rec["rows"]:
            why = (rec.get("why") or "").splitlines()[0] if rec.get("why") else ""
            lines.append(f"| {rec['name']} | - | {rec['status']} | {why} | - | {load_text} |")
        for row in rec["rows"]:
            lines.append(
                f"| {rec['name']} | {row['figure']} | {row['value']} | {row['competitor']} | {row['runs']} "
                f"| {load_text} |"
            )
    for rec in records:
        lines += ["", f"## {rec['name']}: {rec['title']}", ""]
        lines.append(
            f"Status: **{rec['status']}**"
            + (f" in {rec['wall_s']:.0f} s" if "wall_s" in rec else "")
            + (f", of which {rec['slot_wait_s']:.0f} s waiting for a container slot" if "slot_wait_s" in rec else "")
            + (f" (load average {rec['load_before']} -> {rec['load_after']})" if "load_before" in rec else "")
        )
        lines += ["", "Command:", "", "```bash", rec["command"], "```"]
        for plot in rec["plots"]:
            lines += ["", f"![{plot}]({plot})"]
        if rec.get("section"):
            lines += ["", rec["section"]]
        not_run = [text for text in (rec.get("cut"), rec.get("why"), rec.get("data_error")) if text]
        if not_run:
            lines += ["", "Not run or left out, and why:", ""]
            lines += [f"- {text.splitlines()[0]}" for text in not_run]
            extra = (rec.get("why") or "").splitlines()[1:]
            if extra:
                lines += ["", "```", *extra, "```"]
        lines.append(f"\nFigures: [{rec['json']}]({rec['json']})" + (f", log: {rec['log']}" if rec.get("log") else ""))
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="every benchmark's quick mode; the whole under 10 min")
    parser.add_argument("--only", action="append", choices=[b.name for b in BENCHMARKS], help="repeatable")
    parser.add_argument("--out", type=Path, default=BENCH / "results", help="parent of the <date> folder")
    args = parser.parse_args()
    out = args.out / time.strftime("%Y-%m-%d")
    out.mkdir(parents=True, exist_ok=True)
    began = time.time()
    load_before = loadavg()
    selected = [b for b in BENCHMARKS if not args.only or b.name in args.only]
    records = []
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("stopped by SIGTERM"))
    for bench in selected:
        records.append(run_one(bench, args.quick, out))
    text = report(records, args.quick, began, (load_before, loadavg()))
    (out / "REPORT.md").write_text(text)
    print(text.split("\n## ", 2)[1] if "\n## " in text else text)
    print(f"report: {out / 'REPORT.md'}; {timing(records, time.time() - began, args.quick)}")
    return 0 if all(r["status"] in ("ok", "not available", "not run") for r in records) else 1


if __name__ == "__main__":
    raise SystemExit(main())
