"""Failed requests under a bounded wrk load during a rolling update and during a canary + abort, and the timeline of
one canary that its Prometheus gate rolls back (a measurement, not a test). Everything runs on 127.0.0.1; no lab
containers. Complements bench/traffic.py (step times, windows, abort latency), whose pieces it reuses through
bench/localstack.py.

1. rolling update: 4 backends (version 1) behind HAProxy; ONE ansible-playbook replaces them one at a time, the way
   a serial play does: ``strata.deploy.haproxy_servers`` drains the server (``wait_drained``), the backend process
   is replaced by version 2 on the same port, the server is set ``ready`` again. wrk (1 thread, 10 connections,
   ``--rate`` requests/s at most) runs across it; failed = non-2xx answers + socket errors.
2. canary + abort: ``strata.deploy.haproxy_servers`` split 10 -> 25 -> 50 % (1 s apart) then 0 %, a healthy
   canary, under the same wrk load.
3. gate rollback timeline: the canary backend is replaced by a BAD version (every 10th answer a 500, +30 ms);
   ``strata.deploy.canary`` steps it to 10 % with a Prometheus gate (TLS + basic auth, scraping every backend every
   second; error ratio of the canary version <= 1 %); the gate fails after the bake time and the action rolls back
   (5 % then 0 %). bench/traffic.py's per-request load client runs across it, so the plot shows per second: the
   canary's share of the weights (read back from HAProxy every 20 ms), the error ratio and the p99 latency.

    .venv/bin/python bench/traffic_load.py --quick --json /tmp/tl.json --plot /tmp/tl.png
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import localstack
import traffic

log = traffic.log


def split_task(stack: localstack.Stack, name: str, percent: float) -> dict[str, Any]:
    return traffic.strata_split_task(name, percent, stack.backend, stack.stable, stack.canary)


def lb_hosts(stack: localstack.Stack) -> dict[str, dict[str, Any]]:
    return {"lb1": {"lb_socket": stack.lb.socket, "lb_state_file": stack.lb.state_file}}


def rolling_update(stack: localstack.Stack, procs: traffic.Processes, rate: float) -> dict[str, Any]:
    """One playbook: for each server, drain (wait_drained) -> wait for the new version -> ready. The bench replaces
    the process when the playbook reaches the wait task of that server (it watches the callback's timestamps)."""
    stack.reset_weights()
    markers = procs.workdir / "rolling"
    markers.mkdir(exist_ok=True)
    tasks: list[dict[str, Any]] = []
    for name in stack.names:
        tasks += [
            {
                "name": f"drain {name}",
                "strata.deploy.haproxy_servers": {
                    "socket": "{{ lb_socket }}",
                    "state_file": "{{ lb_state_file }}",
                    "servers": {stack.backend: {name: {"state": "drain"}}},
                    "wait_drained": True,
                    "drain_timeout": 20,
                },
            },
            {"name": f"replace {name}", "ansible.builtin.wait_for": {"path": str(markers / name), "timeout": 60}},
            {
                "name": f"ready {name}",
                "strata.deploy.haproxy_servers": {
                    "socket": "{{ lb_socket }}",
                    "state_file": "{{ lb_state_file }}",
                    "servers": {stack.backend: {name: {"state": "ready"}}},
                },
            },
            {
                "name": f"wait until {name} is UP",
                "ansible.builtin.wait_for": {"host": "127.0.0.1", "port": stack.backends.ports[name], "timeout": 30},
            },
        ]
    timing = procs.workdir / f"play{stack.ansible.count + 1:02d}.timing.jsonl"
    result: dict[str, Any] = {}

    def play() -> None:
        try:
            result["played"] = stack.ansible.run(lb_hosts(stack), tasks, "rolling update of 4 backends")
        except SystemExit as exc:
            result["error"] = str(exc)

    wrk = localstack.wrk_start(procs, "wrk-rolling", stack.port, 300, rate=rate)
    time.sleep(2)
    began = time.time()
    thread = threading.Thread(target=play)
    thread.start()
    replaced: list[str] = []
    deadline = time.monotonic() + 240
    while thread.is_alive() and time.monotonic() < deadline:
        started = set()
        if timing.exists():
            started = {json.loads(line).get("name") for line in timing.read_text().splitlines() if line.strip()}
        for name in stack.names:
            if name not in replaced and f"replace {name}" in started:
                stack.backends.replace(name, "2")
                (markers / name).touch()
                replaced.append(name)
        time.sleep(0.05)
    thread.join(timeout=traffic.PLAYBOOK_TIMEOUT)
    took = time.time() - began
    time.sleep(1)
    load = localstack.wrk_stop(procs, "wrk-rolling", wrk)
    if "error" in result:
        raise SystemExit(result["error"])
    return {"servers": len(stack.names), "replaced": replaced, "playbook_s": round(took, 2), "wrk": load}


def canary_abort(stack: localstack.Stack, procs: traffic.Processes, rate: float, aborts: int) -> dict[str, Any]:
    stack.reset_weights()
    tasks: list[dict[str, Any]] = []
    for run in range(aborts):
        for percent in (10, 25, 50):
            tasks += [
                split_task(stack, f"run {run} canary {percent}%", percent),
                traffic.pause_task(f"bake {run} {percent}", 1),
            ]
        tasks += [split_task(stack, f"run {run} abort", 0), traffic.pause_task(f"after abort {run}", 1)]
    wrk = localstack.wrk_start(procs, "wrk-abort", stack.port, 300, rate=rate)
    time.sleep(2)
    played = stack.ansible.run(lb_hosts(stack), tasks, "canary + abort")
    load = localstack.wrk_stop(procs, "wrk-abort", wrk)
    return {"aborts": aborts, "playbook_s": round(played["total"], 2), "wrk": load}


def gate_rollback(stack: localstack.Stack, procs: traffic.Processes, rate: float, bake: float) -> dict[str, Any]:
    """The bad canary rolled back by its gate, with the per-request load client and a weight poller."""
    stack.reset_weights()
    stack.backends.replace(stack.canary[0], "3", error_every=10, delay_ms=30)
    lab = stack.canary_lab()
    args = stack.canary_args(lab, "3", steps=[10, 50, 100], pause=bake, abort_steps=[5, 0], abort_pause=1)
    load = traffic.Load(procs, "load-gate", stack.port, rate, max_seconds=180)
    with traffic.Poller([stack.lb], stack.backend, 0.02) as poller:
        time.sleep(3)
        began = time.time()
        try:
            result, output = lab.run(args, hosts="lb1")
        except AssertionError as exc:
            raise SystemExit(f"the canary playbook failed: {exc}") from None
        ended = time.time()
        time.sleep(3)
        records = load.stop()
    weights = {f"{lb}/{server}": seen for (lb, server), seen in poller.changes.items()}
    lines = [line for line in output.splitlines() if line.startswith("[canary ")]
    return {
        "status": result.get("status"),
        "msg": result.get("msg"),
        "events": [event.get("action") for event in result.get("events", [])],
        "progress": lines,
        "canary_task": {"start": began, "end": ended, "seconds": round(ended - began, 2)},
        "bake_s": bake,
        "load": traffic.failures(records),
        "_records": records,
        "_weights": weights,
        "canary": stack.canary,
    }


def per_second(records: list[list[Any]], zero: float) -> dict[str, list[float]]:
    """Per second of request start: error ratio (%) and p99 latency (ms, nearest rank)."""
    if not records:
        return {"t": [], "error_pct": [], "p99_ms": [], "requests": []}
    seconds = int(records[-1][0] - zero) + 1
    buckets: list[list[list[Any]]] = [[] for _index in range(seconds)]
    for record in records:
        index = int(record[0] - zero)
        if 0 <= index < seconds:
            buckets[index].append(record)
    out: dict[str, list[float]] = {"t": [], "error_pct": [], "p99_ms": [], "requests": []}
    for index, bucket in enumerate(buckets):
        out["t"].append(float(index))
        out["requests"].append(float(len(bucket)))
        failed = sum(1 for r in bucket if not traffic.served(r))
        out["error_pct"].append(100.0 * failed / len(bucket) if bucket else math.nan)
        p99 = traffic.percentile([1000 * (r[1] - r[0]) for r in bucket], 99)
        out["p99_ms"].append(p99 if p99 is not None else math.nan)
    return out


def weight_series(weights: dict[str, list[tuple[float, int]]], canary: list[str], zero: float) -> tuple[list, list]:
    changes = sorted((t, key.split("/", 1)[1], w) for key, seen in weights.items() for t, w in seen)
    current: dict[str, int] = {}
    xs, ys = [], []
    for when, server, weight in changes:
        current[server] = weight
        total = sum(current.values())
        xs.append(when - zero)
        ys.append(100.0 * sum(w for s, w in current.items() if s in canary) / total if total else 0.0)
    return xs, ys


def plot(gate: dict[str, Any], path: Path) -> None:
    import matplotlib  # noqa: PLC0415 - only --plot needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415 - after matplotlib.use

    records = gate["_records"]
    zero = records[0][0] if records else gate["canary_task"]["start"]
    series = per_second(records, zero)
    wx, wy = weight_series(gate["_weights"], gate["canary"], zero)
    fig, axes = plt.subplots(3, 1, figsize=(11, 8), sharex=True)
    axes[0].step(wx, wy, where="post", color="tab:orange", lw=2)
    axes[0].set_ylabel("canary weight %")
    axes[0].set_ylim(-5, 105)
    axes[1].plot(series["t"], series["error_pct"], marker="o", ms=3, color="tab:red")
    axes[1].set_ylabel("failed requests %\n(per second)")
    axes[2].plot(series["t"], series["p99_ms"], marker="o", ms=3, color="tab:blue")
    axes[2].set_ylabel("p99 latency ms\n(per second)")
    axes[2].set_xlabel("seconds since the load started")
    for axis in axes:
        axis.axvline(gate["canary_task"]["start"] - zero, color="grey", ls=":", lw=1)
        axis.axvline(gate["canary_task"]["end"] - zero, color="grey", ls=":", lw=1)
        axis.grid(alpha=0.3)
    axes[0].set_title(
        f"strata.deploy.canary, bad canary (10% errors, +30 ms) rolled back by its Prometheus gate: {gate['status']}; "
        f"{gate['load']['failed']} failed of {gate['load']['requests']} requests (dotted: the canary task)",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def markdown(report: dict[str, Any]) -> str:
    def wrk_row(label: str, part: dict[str, Any]) -> str:
        w = part["wrk"]
        errors = ", ".join(f"{k} {v}" for k, v in w["socket_errors"].items() if v) or "none"
        return (
            f"| {label} | {part['playbook_s']:.1f} s | {w['requests']} | {w['failed']} | {w['non_2xx_3xx']} | {errors} "
            f"| {w['latency'].get('p99_ms', float('nan')):.1f} ms |"
        )

    lines = [
        "| Under wrk (1 thread, 10 connections, <= {:g} req/s) | playbook | requests | failed | non-2xx | socket "
        "errors | p99 |".format(report["settings"]["rate_rps"]),
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    if "rolling" in report:
        lines.append(wrk_row("rolling update, 4 backends, drain -> replace -> ready", report["rolling"]))
    if "abort" in report:
        lines.append(wrk_row(f"canary 10 -> 25 -> 50 % + abort, x{report['abort']['aborts']}", report["abort"]))
    if gate := report.get("gate"):
        lines += [
            "",
            f"Gate rollback: status **{gate['status']}**, events {' -> '.join(gate['events'])}, canary task "
            f"{gate['canary_task']['seconds']} s (bake {gate['bake_s']:g} s); load client: {gate['load']['failed']} "
            f"failed of {gate['load']['requests']} (the bad canary's own 500s, while it had weight).",
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="1 abort run instead of 3, bake 3 s instead of 5 s")
    parser.add_argument("--rate", type=float, default=400, help="wrk and load client requests/s (default 400)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--plot", type=Path, help="PNG of the gate rollback timeline")
    parser.add_argument("--only", choices=["rolling", "abort", "gate"], action="append")
    args = parser.parse_args()
    parts = args.only or ["rolling", "abort", "gate"]
    report: dict[str, Any] = {
        "benchmark": "traffic_load",
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "mode": "quick" if args.quick else "default",
        "machine": traffic.machine(),
        "load_before": traffic.loadavg(),
        "settings": {"rate_rps": args.rate, "wrk_connections": 10, "aborts": 1 if args.quick else 3},
        "runs": 1,
    }
    began = time.time()
    procs = traffic.Processes(Path(tempfile.mkdtemp(prefix="strata-bench-load-")))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("stopped by SIGTERM"))
    try:
        stack = localstack.Stack(procs, prometheus="gate" in parts)
        log(f"4 backends, HAProxy{' and Prometheus' if stack.prometheus else ''} up; work folder {procs.workdir}")
        if "rolling" in parts:
            report["rolling"] = rolling_update(stack, procs, args.rate)
            log(
                f"rolling update: {report['rolling']['wrk']['failed']} failed of {report['rolling']['wrk']['requests']}"
            )
        if "abort" in parts:
            report["abort"] = canary_abort(stack, procs, args.rate, report["settings"]["aborts"])
            log(f"canary + abort: {report['abort']['wrk']['failed']} failed of {report['abort']['wrk']['requests']}")
        if "gate" in parts:
            report["gate"] = gate_rollback(stack, procs, args.rate / 2, 3 if args.quick else 5)
            log(f"gate rollback: {report['gate']['status']}")
            if args.plot:
                plot(report["gate"], args.plot)
                log(f"plot written to {args.plot}")
    except (SystemExit, KeyboardInterrupt) as exc:
        report["error"] = str(exc) or type(exc).__name__
        raise
    finally:
        procs.stop_all()
        if "error" in report:
            log(f"work folder kept (configs, logs, playbooks): {procs.workdir}")
        else:
            shutil.rmtree(procs.workdir, ignore_errors=True)
        report["load_after"] = traffic.loadavg()
        report["wall_s"] = round(time.time() - began, 1)
        if gate := report.get("gate"):
            gate.pop("_records", None)
            gate.pop("_weights", None)
        localstack.write_json(args.json, report)
    print(markdown(report))
    print(f"\nwall time {report['wall_s']:.0f} s")


if __name__ == "__main__":
    main()
