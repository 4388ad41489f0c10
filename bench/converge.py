"""Converge cost: the first converge of a lab, the idempotent re-run (wall time, changed count from the recap), and
how both grow with the app tier (a measurement, not a test). Run it through /tmp/slot.sh: it starts containers.

It never touches the lab of inventories/lab: it writes its OWN inventory in a temporary folder (hosts
``bench-lb1``, ``bench-app1`` .., ``lab_name``/``lab_network`` ``strata-bench``, subnet 10.89.71.0/24, its own CA
folder) and brings it up with lab/labctl.py (the same image, systemd containers, one apt volume per host); at the
end ``labctl.py down`` removes every container, network and volume labelled ``strata-bench`` (``--keep`` leaves
them).

The playbook is site.yml's load balancer and app tiers as the haproxy Molecule scenario converges them (app on
the app hosts; pki then haproxy on the LB, with a throw-away stats password): the other tiers (Redis,
PostgreSQL, monitoring) are other benchmarks' business, and the lab's app group_vars need Redis.

- default: 1 LB, app tier 3 -> 6 -> 12 hosts (new hosts are added to the running lab, then converged);
- ``--quick``: 1 LB + 2 app hosts, one size (first converge, re-run, partition; no curve).

At each size: containers up (labctl), converge (new hosts converge for the first time, the others are already
converged), re-run (everything idempotent: changed must be 0). The re-run at the first size is made with
``-vvv --diff`` and its whole output is searched for the secrets of this run (the stats password, and the body of
every private key under the CA folder and of the LB's key): ``secrets_scan`` in the JSON.

    /tmp/slot.sh .venv/bin/python bench/converge.py --quick --json /tmp/converge.json --plot /tmp/converge.png
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
VENV_BIN = ROOT / ".venv" / "bin"
PLAYBOOK_TIMEOUT = 2400
LABCTL_TIMEOUT = 900
PREFIX = "bench-"
LAB = {"lab_name": "strata-bench", "lab_network": "strata-bench", "lab_subnet": "10.89.71.0/24"}
STATS_PASSWORD = "bench-stats-" + os.urandom(6).hex()  # throw-away, per run, so the scan has a value to look for

PLAYBOOK = [
    {
        "name": "Application servers (site.yml's app tier)",
        "hosts": "app",
        "become": True,
        "roles": [{"role": "strata.deploy.app"}],
    },
    {
        "name": "Load balancers (site.yml's lb tier): CA and certificate from pki, then HAProxy",
        "hosts": "lb",
        "become": True,
        "roles": [{"role": "strata.deploy.pki"}, {"role": "strata.deploy.haproxy"}],
    },
]
RECAP = re.compile(r"^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.MULTILINE)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def inventory(folder: Path, apps: int, lbs: int = 1) -> Path:
    """The bench's own inventory (JSON is YAML): bench-lb*, bench-app*, lab settings, own CA folder."""
    folder.mkdir(parents=True, exist_ok=True)
    data = {
        "all": {
            "vars": {
                # tests/connection/podman.py: containers.podman.podman with Ansible's pipelining (one `podman exec
                # -i` per module instead of a copy and a second exec), as the Molecule scenarios converge, and as
                # ansible.cfg's pipelining does over SSH on real hosts.
                "ansible_connection": "podman",
                "ansible_python_interpreter": "/usr/bin/python3",
                "strata_environment": "bench",
                "pki_ca_dir": str(folder.parent / "pki"),
                **LAB,
            },
            "children": {
                "lb": {
                    "hosts": {f"{PREFIX}lb{i}": {} for i in range(1, lbs + 1)},
                    "vars": {"haproxy_stats_password": STATS_PASSWORD},
                },
                "app": {
                    "hosts": {f"{PREFIX}app{i}": {} for i in range(1, apps + 1)},
                    "vars": {"app_artifact_source": "demo", "app_version": "1.0.0"},
                },
            },
        }
    }
    path = folder / "hosts.yml"
    path.write_text(json.dumps(data, indent=1))
    return path


def env() -> dict[str, str]:
    out = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    out["CONTAINERS_CONF"] = str(ROOT / "lab" / "containers.conf")
    out["ANSIBLE_CONNECTION_PLUGINS"] = str(ROOT / "tests" / "connection")
    out["PATH"] = f"{VENV_BIN}:{out['PATH']}"
    return out


def labctl(action: str, inv: Path, log_file: Path) -> float:
    started = time.time()
    with log_file.open("ab") as out:
        done = subprocess.run(
            [str(VENV_BIN / "python"), str(ROOT / "lab" / "labctl.py"), action, "-i", str(inv)],
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=LABCTL_TIMEOUT,
            check=False,
            env=env(),
            cwd=ROOT,
        )
    if done.returncode != 0:
        raise SystemExit(f"labctl.py {action} failed ({done.returncode}); see {log_file}")
    return time.time() - started


def playbook(inv: Path, play: Path, log_file: Path, *extra: str) -> dict[str, Any]:
    """One ansible-playbook run: wall time, changed/ok/failed summed over the recap, output size."""
    started = time.time()
    done = subprocess.run(
        [str(VENV_BIN / "ansible-playbook"), "-i", str(inv), str(play), *extra],
        capture_output=True,
        text=True,
        timeout=PLAYBOOK_TIMEOUT,
        check=False,
        env=env(),
        cwd=ROOT,
    )
    took = time.time() - started
    output = done.stdout + done.stderr
    log_file.write_text(output)
    recap = RECAP.findall(output)
    run = {
        "wall_s": round(took, 1),
        "rc": done.returncode,
        "hosts": len(recap),
        "ok": sum(int(r[1]) for r in recap),
        "changed": sum(int(r[2]) for r in recap),
        "unreachable": sum(int(r[3]) for r in recap),
        "failed": sum(int(r[4]) for r in recap),
        "args": " ".join(extra),
        "log": str(log_file),
        "_output": output,
    }
    if done.returncode != 0:
        tail = "\n".join(output.splitlines()[-25:])
        raise SystemExit(f"ansible-playbook {' '.join(extra)} failed ({done.returncode}); see {log_file}\n{tail}")
    return run


def secrets(work: Path) -> dict[str, str]:
    """Name -> a string that must never appear in the output: the stats password, a body line of every key."""
    found = {"haproxy_stats_password": STATS_PASSWORD}
    for key in sorted((work / "pki").rglob("*.key")) + sorted((work / "pki").rglob("*key*.pem")):
        lines = [line for line in key.read_text(errors="replace").splitlines() if line and "-----" not in line]
        if lines:
            found[f"private key {key.relative_to(work)}"] = lines[0][:40]
    return found


def lb_key_line() -> str | None:
    """A body line of the LB's private key, read in the container (for the scan)."""
    done = subprocess.run(
        [
            "podman",
            "exec",
            f"{PREFIX}lb1",
            "sh",
            "-c",
            "cat /etc/ssl/strata/*.key /etc/haproxy/certs/*.pem 2>/dev/null",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env(),
    )
    inside, body = False, []
    for line in done.stdout.splitlines():
        if "BEGIN" in line and "PRIVATE KEY" in line:
            inside = True
            continue
        if inside and line and "-----" not in line:
            body.append(line)
            break
    return body[0][:40] if body else None


def scan(output: str, values: dict[str, str]) -> dict[str, Any]:
    leaked = [name for name, value in values.items() if value and value in output]
    return {
        "ran": True,
        "secrets": len(values),
        "leaked": len(leaked),
        "leaked_names": leaked,
        "bytes": len(output.encode()),
        "plays": "the re-run with -vvv --diff",
        "names": sorted(values),
    }


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib  # noqa: PLC0415 - only --plot needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415 - after matplotlib.use

    sizes = [s["apps"] for s in report["sizes"]]
    fig, axis = plt.subplots(figsize=(8, 4.5))
    axis.plot(
        sizes,
        [s["converge"]["wall_s"] for s in report["sizes"]],
        marker="o",
        label="converge (new hosts' first converge, others idempotent)",
    )
    axis.plot(sizes, [s["rerun"]["wall_s"] for s in report["sizes"]], marker="s", label="idempotent re-run")
    axis.plot(sizes, [s["containers_up_s"] for s in report["sizes"]], marker="^", ls=":", label="labctl up")
    for s in report["sizes"]:
        axis.annotate(
            f"changed {s['converge']['changed']}",
            (s["apps"], s["converge"]["wall_s"]),
            fontsize=8,
            textcoords="offset points",
            xytext=(4, 4),
        )
    axis.set_xlabel("app hosts (plus 1 LB)")
    axis.set_ylabel("wall time (s)")
    axis.set_xticks(sizes)
    axis.set_ylim(bottom=0)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    axis.set_title(
        f"Converge cost vs app tier ({report['mode']}; {report['machine']['cores']} cores, load "
        f"{report['load_before']} -> {report.get('load_after', '?')})",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "| App hosts (+1 LB) | labctl up | converge | changed | re-run | changed on re-run |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for s in report["sizes"]:
        rerun = s["rerun"]
        lines.append(
            f"| {s['apps']} | {s['containers_up_s']:.0f} s | {s['converge']['wall_s']:.0f} s "
            f"| {s['converge']['changed']} "
            f"| {rerun['wall_s']:.0f} s{' (-vvv --diff)' if rerun['args'] else ''} | {rerun['changed']} |"
        )
    if sc := report.get("secrets_scan"):
        lines += [
            "",
            f"Secrets scan of the -vvv --diff re-run: {sc['leaked']} of {sc['secrets']} secret values found "
            f"in {sc['bytes']} bytes ({', '.join(sc['names'])}).",
        ]
    return "\n".join(lines)


def podman_ip(name: str) -> str:
    done = subprocess.run(
        ["podman", "inspect", name, "--format", "{{json .NetworkSettings.Networks}}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env=env(),
    )
    return json.loads(done.stdout)[LAB["lab_network"]]["IPAddress"]


def partition(work: Path, apps: int, seconds: float = 15.0) -> dict[str, Any]:
    """One app host cut off its network (podman network disconnect) for ``seconds`` under a bounded wrk load on the
    LB's HTTPS frontend (from the host), then connected again with its address; failed requests counted by wrk."""
    sys.path.insert(0, str(BENCH))
    import localstack  # noqa: PLC0415 - bench/localstack.py (and traffic.py): only this part needs them
    import traffic  # noqa: PLC0415 - same

    if apps < 2:  # a partition of the only app host is an outage, not a partition
        return {"ran": False, "why": "needs at least 2 app hosts"}
    victim = f"{PREFIX}app2"
    url = f"https://{podman_ip(f'{PREFIX}lb1')}:443/"
    probe = subprocess.run(
        ["curl", "-ks", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5", url],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if not probe.stdout.startswith(("2", "3")):
        return {"ran": False, "why": f"the LB answered {probe.stdout or 'nothing'} to GET {url} before the partition"}
    address = podman_ip(victim)
    procs = traffic.Processes(work)
    wrk = localstack.wrk_start(procs, "wrk-partition", 443, 180, rate=200, url=url)
    try:
        time.sleep(5)
        subprocess.run(
            ["podman", "network", "disconnect", LAB["lab_network"], victim], check=True, timeout=60, env=env()
        )
        log(f"  {victim} disconnected from {LAB['lab_network']} for {seconds:g} s under wrk")
        time.sleep(seconds)
        subprocess.run(
            ["podman", "network", "connect", "--ip", address, LAB["lab_network"], victim],
            check=True,
            timeout=60,
            env=env(),
        )
        time.sleep(10)
    finally:
        load = localstack.wrk_stop(procs, "wrk-partition", wrk)
    return {"ran": True, "victim": victim, "url": url, "disconnected_s": seconds, "wrk": load}


def measure_size(work: Path, inv: Path, play: Path, apps: int, *, first: bool, report: dict[str, Any]) -> dict:
    """Containers up, converge, re-run (the first size's re-run with -vvv --diff, scanned for secrets)."""
    log(f"{apps} app host(s) + 1 LB: containers up")
    up_s = labctl("up", inv, work / "labctl.log")
    log(f"  up in {up_s:.0f} s; converge")
    converge = playbook(inv, play, work / f"converge-{apps}.log")
    log(f"  converge {converge['wall_s']:.0f} s, changed {converge['changed']}; re-run")
    rerun = playbook(inv, play, work / f"rerun-{apps}.log", *(("-vvv", "--diff") if first else ()))
    log(f"  re-run {rerun['wall_s']:.0f} s, changed {rerun['changed']}")
    if first:
        values = secrets(work)
        if line := lb_key_line():
            values["private key of bench-lb1"] = line
        report["secrets_scan"] = scan(rerun["_output"], values)
    for run in (converge, rerun):
        run.pop("_output")
    return {
        "apps": apps,
        "lbs": 1,
        "containers_up_s": round(up_s, 1),
        "converge": converge,
        "rerun": rerun,
        "load_average": loadavg(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n", 1)[0])
    parser.add_argument(
        "--quick", action="store_true", help="one size, 2 app hosts (no cost curve) instead of 3 -> 6 -> 12"
    )
    parser.add_argument("--sizes", help="app tier sizes, comma-separated (overrides the mode's)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--plot", type=Path)
    parser.add_argument("--keep", action="store_true", help="leave the containers, network and work folder")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("the lab needs root (rootful podman with systemd containers): run it with sudo")
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else ([2] if args.quick else [3, 6, 12])
    sys.path.insert(0, str(BENCH))
    import traffic  # noqa: PLC0415 - bench/traffic.py, for the machine description only

    report: dict[str, Any] = {
        "benchmark": "converge",
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "mode": "quick" if args.quick else "default",
        "machine": traffic.machine(),
        "load_before": loadavg(),
        "runs": 1,
        "playbook": "app on the app hosts; pki + haproxy on the LB (site.yml's app and lb tiers, as the haproxy "
        "Molecule scenario converges them)",
        "cut": "quick: one size, 1 LB + 2 app hosts (no cost curve: 3 -> 6 -> 12 is the full run), the app + lb "
        "plays only"
        if args.quick
        else "1 LB, the app + lb plays only (Redis, PostgreSQL, monitoring are not converged here)",
        "sizes": [],
    }
    work = Path(tempfile.mkdtemp(prefix="strata-bench-converge-"))
    play = work / "converge.yml"
    play.write_text(json.dumps(PLAYBOOK, indent=1))
    began = time.time()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("stopped by SIGTERM"))
    inv = work / "inventory" / "hosts.yml"
    try:
        for index, apps in enumerate(sizes):
            inv = inventory(work / "inventory", apps)
            report["sizes"].append(measure_size(work, inv, play, apps, first=index == 0, report=report))
            report["first_converge"] = report["sizes"][0]["converge"]
            report["idempotent_rerun"] = report["sizes"][0]["rerun"]
        try:
            report["partition"] = partition(work, sizes[-1])
        except (subprocess.SubprocessError, OSError, KeyError, ValueError) as exc:
            report["partition"] = {"ran": False, "why": f"{type(exc).__name__}: {exc}"[:500]}
        log(f"partition: {report['partition']}")
    except (SystemExit, KeyboardInterrupt, subprocess.TimeoutExpired) as exc:
        report["error"] = str(exc)[-3000:] or type(exc).__name__
        raise
    finally:
        if not args.keep:
            with contextlib.suppress(SystemExit, subprocess.TimeoutExpired):
                labctl("down", inv, work / "labctl.log")
        report["load_after"] = loadavg()
        report["wall_s"] = round(time.time() - began, 1)
        if args.json:
            args.json.write_text(json.dumps(report, indent=1))
        if args.plot and report["sizes"]:
            plot(report, args.plot)
        if args.keep or "error" in report:
            log(f"work folder kept (logs, inventory): {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(markdown(report))
    print(f"\nwall time {report['wall_s']:.0f} s")


if __name__ == "__main__":
    main()
