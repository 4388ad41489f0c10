"""`make chaos`: the faults that matter to users, tried for real, and a table of what was tried and what survived
(a measurement, not a test: nothing here fails the build; a row that did not survive says why).

Local rows (127.0.0.1, the stack of bench/localstack.py: 4 backend processes behind HAProxy, Prometheus for the
canary gate, wrk 1 thread x 10 connections at <= --rate requests/s across each fault):

- backend killed under load: SIGKILL of a stable backend (no drain). Survived = no failed request.
- HAProxy reloaded during a canary: master-worker reload (SIGUSR2) while ``strata.deploy.canary`` bakes step 1.
  Survived = the rollout ends ``done`` at 100 % and no failed request.
- controller killed at each canary step boundary: ``ansible-playbook`` (its whole process group) SIGKILLed as soon
  as step k is applied, for every k, then the same task run again. Survived = every run again ends ``done`` at 100 %
  (decision ``resume``) and no failed request.

Rows that need containers run other scripts through /tmp/slot.sh when they exist and the mode allows (full mode):

- Redis primary killed: ``bench/redis_failover.py --kills 1 --default-kills 0`` (3 containers converged with
  strata.deploy.redis); survived = a new master accepted writes and no acknowledged write was lost.
- PostgreSQL primary killed: ``bench/postgresql_switchover.py`` when it is in the checkout.
- network partition of one app host, and a ``-vvv --diff`` converge scanned for secrets: both are made by
  bench/converge.py in its lab; their results are read from its JSON (``--converge-json``) when there is one.

    .venv/bin/python bench/chaos.py --quick --json /tmp/chaos.json     # the local rows only (~2 min)
    .venv/bin/python bench/chaos.py --json /tmp/chaos.json             # + the Redis kill (~7-20 min, slot)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import localstack  # noqa: E402 - bench/localstack.py
import traffic  # noqa: E402 - bench/traffic.py

log = traffic.log
SLOT = Path(os.environ.get("STRATA_BENCH_SLOT", "/tmp/slot.sh"))  # noqa: S108 - the machine's slot script
REDIS_TIMEOUT = 1800


def row(fault: str, how: str, survived: bool | None, detail: str, **extra: Any) -> dict[str, Any]:
    """``survived`` None = not run (``detail`` says why)."""
    return {"fault": fault, "how": how, "survived": survived, "detail": detail, **extra}


def load_text(load: dict[str, Any]) -> str:
    kinds = [f"{n} non-2xx"] if (n := load["non_2xx_3xx"]) else []
    kinds += [f"{n} socket {kind}" for kind, n in load["socket_errors"].items() if n]
    return f"{load['failed']} failed of {load['requests']} requests under wrk" + (
        f" ({', '.join(kinds)})" if kinds else ""
    )


def backend_killed(stack: localstack.Stack, procs: traffic.Processes, rate: float) -> dict[str, Any]:
    stack.reset_weights()
    victim = stack.stable[0]
    wrk = localstack.wrk_start(procs, "wrk-kill", stack.port, 120, rate=rate)
    time.sleep(3)
    killed = stack.backends.kill(victim)

    def down() -> bool:
        return f"{stack.backend},{victim}," in (text := stack.command("show stat -1 4 -1")) and any(
            line.startswith(f"{stack.backend},{victim},") and ",DOWN" in line for line in text.splitlines()
        )

    marked = None
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if down():
            marked = time.time() - killed
            break
        time.sleep(0.05)
    time.sleep(3)
    load = localstack.wrk_stop(procs, "wrk-kill", wrk)
    stack.backends.start(victim, port=stack.backends.ports[victim])
    marked_text = f"HAProxy marked it DOWN after {marked:.1f} s" if marked is not None else "never marked DOWN in 20 s"
    return row(
        "backend killed under load",
        f"SIGKILL of {victim} (1 of 3 stable backends, no drain) under wrk",
        load["failed"] == 0,
        f"{load_text(load)}; {marked_text}",
        wrk=load,
        marked_down_s=marked,
    )


def haproxy_pid(stack: localstack.Stack) -> int | None:
    try:
        for line in stack.command("show info").splitlines():
            if line.startswith("Pid:"):
                return int(line.split(":", 1)[1])
    except OSError:
        return None
    return None


def haproxy_reloaded(stack: localstack.Stack, procs: traffic.Processes, rate: float) -> dict[str, Any]:
    stack.reset_weights()
    lab = stack.canary_lab()
    args = stack.canary_args(lab, "1", steps=[25, 50, 100], pause=4)
    outcome: dict[str, Any] = {}

    def play() -> None:
        try:
            outcome["result"], outcome["output"] = lab.run(args, hosts="lb1")
        except AssertionError as exc:
            outcome["error"] = str(exc)[-2000:]

    wrk = localstack.wrk_start(procs, "wrk-reload", stack.port, 300, rate=rate)
    thread = threading.Thread(target=play)
    thread.start()
    old = haproxy_pid(stack)
    reloaded_at = None
    deadline = time.monotonic() + 240
    while thread.is_alive() and time.monotonic() < deadline:
        if reloaded_at is None and stack.canary_share() >= 25:
            os.kill(stack.lb.proc.pid, signal.SIGUSR2)
            reloaded_at = time.time()
        time.sleep(0.05)
    thread.join(timeout=traffic.PLAYBOOK_TIMEOUT)
    new = haproxy_pid(stack)
    load = localstack.wrk_stop(procs, "wrk-reload", wrk)
    result = outcome.get("result", {})
    share = stack.canary_share()
    ok = result.get("status") == "done" and share == 100.0 and load["failed"] == 0 and old != new
    return row(
        "HAProxy reloaded during a canary",
        "SIGUSR2 to the HAProxy master while strata.deploy.canary baked step 1 (25 %), under wrk",
        ok,
        f"reload {'done' if reloaded_at else 'NOT sent'} (worker {old} -> {new}); rollout "
        f"{result.get('status', outcome.get('error', '?'))}, canary {share} % at the end; {load_text(load)}",
        wrk=load,
    )


def controller_killed(
    stack: localstack.Stack, procs: traffic.Processes, rate: float, quick: bool = False
) -> dict[str, Any]:
    steps = [25, 50, 100]
    kill_at = [50] if quick else steps
    wrk = localstack.wrk_start(procs, "wrk-controller", stack.port, 600, rate=rate)
    boundaries = []
    try:
        for index, weight in enumerate(steps, start=1):
            if weight not in kill_at:
                continue
            stack.reset_weights()
            lab = stack.canary_lab()
            args = stack.canary_args(lab, "1", steps=steps, pause=2)
            marker = f"step {index}/{len(steps)}: canary {weight}% -> observed"
            try:
                lab.run_and_kill(args, marker)
            except pytest.fail.Exception as exc:  # the marker never came: Lab.run_and_kill calls pytest.fail
                boundaries.append({"step": weight, "killed": False, "detail": str(exc)[-300:]})
                continue
            at_kill = stack.canary_share()
            journal = lab.journal_doc() if lab.journal.exists() else {}
            try:
                result, _output = lab.run(args, hosts="lb1")
            except AssertionError as exc:  # ansible-playbook itself failed (Lab.run asserts its exit code)
                result = {"status": f"playbook failed: {str(exc)[-200:]}"}
            boundaries.append(
                {
                    "step": weight,
                    "killed": True,
                    "share_at_kill": at_kill,
                    "journal_phase_at_kill": journal.get("phase"),
                    "status": result.get("status"),
                    "decision": result.get("decision"),
                    "share_after": stack.canary_share(),
                }
            )
            log(
                f"  controller killed at step {weight}%: run again -> {result.get('status')} ({result.get('decision')})"
            )
    finally:
        load = localstack.wrk_stop(procs, "wrk-controller", wrk)
    good = [b for b in boundaries if b.get("status") == "done" and b.get("share_after") == 100.0]
    detail = "; ".join(
        f"killed at {b['step']} % -> again: {b.get('status')}/{b.get('decision')}, {b.get('share_after')} %"
        if b["killed"]
        else f"{b['step']} %: not killed ({b['detail']})"
        for b in boundaries
    )
    return row(
        "controller killed at each canary step boundary",
        f"ansible-playbook SIGKILLed right after the step(s) {kill_at} % of {steps} %, then run again, under wrk",
        len(good) == len(kill_at) and load["failed"] == 0,
        f"{detail}; {load_text(load)}",
        boundaries=boundaries,
        wrk=load,
    )


def redis_killed(quick: bool, workdir: Path) -> dict[str, Any]:
    fault, how = "Redis primary killed", "bench/redis_failover.py --kills 1 --default-kills 0 (3 containers, slot)"
    if quick:
        return row(fault, how, None, "not run: --quick (it converges 3 Redis containers first: 6-13 min here)")
    out = workdir / "redis.json"
    argv = [
        sys.executable,
        str(BENCH / "redis_failover.py"),
        "--kills",
        "1",
        "--default-kills",
        "0",
        "--json",
        str(out),
    ]
    if SLOT.exists():
        argv = [str(SLOT), *argv]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=REDIS_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        return row(fault, how, False, f"not finished in {REDIS_TIMEOUT} s")
    if done.returncode != 0 or not out.exists():
        return row(fault, how, False, f"redis_failover.py exited {done.returncode}: {done.stderr.strip()[-300:]}")
    return summarize_redis(json.loads(out.read_text()), fault, how)


def summarize_redis(data: dict[str, Any], fault: str, how: str) -> dict[str, Any]:
    """redis_failover.py's JSON: the tuned phase's kills, time until a write is accepted, writes lost."""
    tuned = data.get("tuned") or {}
    if not tuned:
        return row(fault, how, False, "no tuned phase in redis_failover.py's figures")
    lost = tuned["plain_lost"] + tuned["wait_lost"]
    return row(
        fault,
        how,
        tuned["failed"] == 0 and lost == 0,
        f"{tuned['kills'] - tuned['failed']} of {tuned['kills']} kills recovered; new master accepted a write after "
        f"{tuned['writable']['max']} s (max); acknowledged writes lost: {tuned['plain_lost']} of {tuned['plain_acked']}"
        f" without WAIT, {tuned['wait_lost']} of {tuned['wait_acked']} with WAIT 1",
    )


def postgresql_killed() -> dict[str, Any]:
    script = BENCH / "postgresql_switchover.py"
    how = "bench/postgresql_switchover.py (primary killed)"
    if not script.exists():
        return row(
            "PostgreSQL primary killed", how, None, "not run: bench/postgresql_switchover.py is not in this checkout"
        )
    return row(
        "PostgreSQL primary killed",
        how,
        None,
        "not run: no script in this checkout kills the primary (bench/postgresql_switchover.py measures planned "
        "switchovers: its own benchmark, full run only)",
    )


def from_converge(converge_json: Path | None) -> list[dict[str, Any]]:
    fault_p, how_p = "network partition of one app host", "podman network disconnect of one app container, under load"
    fault_s, how_s = "-vvv --diff converge scanned for secrets", "bench/converge.py: stats password, private keys"
    data = json.loads(converge_json.read_text()) if converge_json and converge_json.exists() else {}
    scan = data.get("secrets_scan")
    if scan and scan.get("ran"):
        secrets = row(
            fault_s,
            how_s,
            scan["leaked"] == 0,
            f"{scan['leaked']} of {scan['secrets']} secret values "
            f"found in {scan['bytes']} bytes of output ({scan['plays']})",
        )
    else:
        secrets = row(fault_s, how_s, None, f"not run: {scan.get('why') if scan else 'no converge.json from this run'}")
    cut = data.get("partition")
    if cut and cut.get("ran"):
        partition = row(
            fault_p,
            f"podman network disconnect of {cut['victim']} for {cut['disconnected_s']:g} s, wrk on the LB's HTTPS",
            cut["wrk"]["failed"] == 0,
            f"{load_text(cut['wrk'])}; p99 latency {cut['wrk']['latency'].get('p99_ms', float('nan')):.0f} ms",
            wrk=cut["wrk"],
        )
    else:
        why = cut.get("why") if cut else "no converge.json from this run"
        partition = row(fault_p, how_p, None, f"not run: {why}")
    return [partition, secrets]


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| Fault | How | Survived | Detail |", "| --- | --- | --- | --- |"]
    for r in rows:
        mark = {True: "yes", False: "**no**", None: "not run"}[r["survived"]]
        lines.append(f"| {r['fault']} | {r['how']} | {mark} | {r['detail']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="the local rows only")
    parser.add_argument("--rate", type=float, default=400, help="wrk requests/s at most (default 400)")
    parser.add_argument("--converge-json", type=Path, help="bench/converge.py's JSON (partition, secrets scan)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    report: dict[str, Any] = {
        "benchmark": "chaos",
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "mode": "quick" if args.quick else "default",
        "machine": traffic.machine(),
        "load_before": traffic.loadavg(),
        "runs": 1,
        "rows": [],
    }
    began = time.time()
    workdir = Path(tempfile.mkdtemp(prefix="strata-bench-chaos-"))
    procs = traffic.Processes(workdir)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("stopped by SIGTERM"))
    try:
        stack = localstack.Stack(procs, prometheus=True)
        log(f"4 backends, HAProxy and Prometheus up; work folder {workdir}")
        report["rows"].append(backend_killed(stack, procs, args.rate))
        report["rows"].append(haproxy_reloaded(stack, procs, args.rate))
        report["rows"].append(controller_killed(stack, procs, args.rate, args.quick))
        for done in report["rows"]:
            log(f"{done['fault']}: survived {done['survived']}")
        procs.stop_all()
        report["rows"].append(redis_killed(args.quick, workdir))
        report["rows"].append(postgresql_killed())
        report["rows"] += from_converge(args.converge_json)
    finally:
        procs.stop_all()
        report["load_after"] = traffic.loadavg()
        report["wall_s"] = round(time.time() - began, 1)
        localstack.write_json(args.json, report)
        shutil.rmtree(workdir, ignore_errors=True)
    print(markdown(report["rows"]))
    print(f"\nwall time {report['wall_s']:.0f} s")


if __name__ == "__main__":
    main()
