"""Shared by the benchmarks that bring up containers of the lab image on a network of their own
(redis_failover.py, postgresql_switchover.py, postgresql_restore.py): subprocess and podman helpers, the
nearest-rank percentile, the machine's facts, an ansible-playbook runner, and one labelled network with its
containers (systemd as PID 1), removed by label only."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def run(*args: str, timeout: float = 60, check: bool = True, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False, env=env)
    if check and done.returncode != 0:
        raise SystemExit(f"{' '.join(args[:4])} ... failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return done.stdout


def podman(*args: str, timeout: float = 60, check: bool = True) -> str:
    return run("podman", *args, timeout=timeout, check=check)


def percentile(values: list[float], pct: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def ansible_env() -> dict[str, str]:
    """The environment for ansible-playbook runs of the checkout: its ansible.cfg, collections and .venv."""
    env = dict(
        os.environ,
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".cache" / "collections"),
        ANSIBLE_NOCOLOR="1",
    )
    env["PATH"] = f"{ROOT / '.venv' / 'bin'}:{env['PATH']}"
    return env


def image_ref() -> str:
    return run(sys.executable, str(ROOT / "lab" / "labctl.py"), "image-ref").strip()


def address(name: str) -> str:
    nets = json.loads(podman("inspect", name, "--format", "{{json .NetworkSettings.Networks}}"))
    for net in nets.values():
        if net.get("IPAddress"):
            return net["IPAddress"]
    raise SystemExit(f"{name} has no IP address")


class Containers:
    """The benchmark's containers and network, all carrying its label."""

    def __init__(self, names: list[str], network: str, label: str) -> None:
        self.names, self.network, self.label = names, network, label

    def up(self, exists_hint: str = "") -> None:
        if not podman("network", "ls", "-q", "--filter", f"name=^{self.network}$").strip():
            podman("network", "create", "--label", self.label, self.network)
        image = image_ref()
        for name in self.names:
            if podman("ps", "-aq", "--filter", f"name=^{name}$").strip():
                raise SystemExit(f"{name} exists already: remove it (podman rm -f {name}){exists_hint}")
            podman(
                "run", "-d", "--name", name, "--hostname", name, "--network", self.network, "--label", self.label,
                "--cap-add", "SYS_ADMIN,SYS_PTRACE", "--systemd=always", image, "/sbin/init",
            )  # fmt: skip
        for name in self.names:
            state = podman(
                "exec", name, "timeout", "120", "systemctl", "is-system-running", "--wait", timeout=130, check=False
            ).strip()
            if state not in ("running", "degraded"):
                raise SystemExit(f"{name}: systemd is {state!r} after 120 s")
        log(f"{len(self.names)} containers up on network {self.network}: {', '.join(self.names)}")

    def down(self) -> None:
        for name in self.names:
            if podman(
                "ps", "-aq", "--filter", f"name=^{name}$", "--filter", f"label={self.label}", check=False
            ).strip():
                podman("rm", "-f", "-t", "5", name, check=False)
        if podman(
            "network", "ls", "-q", "--filter", f"name=^{self.network}$", "--filter", f"label={self.label}", check=False
        ).strip():
            podman("network", "rm", self.network, check=False)
        log("containers and network of the benchmark removed")


def machine() -> dict[str, Any]:
    """The facts every benchmark report states: host, OS, cores, memory, load before."""
    mem_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kb = int(line.split()[1])
    return {
        "host": platform.node(),
        "os": platform.platform(),
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "load_before": round(os.getloadavg()[0], 1),
    }


def playbook(workdir: Path, path: Path, *extra: str, timeout: float = 900) -> tuple[float, str]:
    """ansible-playbook with workdir's inventory.json and 0600 secrets.json; (seconds, stdout), exits on failure."""
    start = time.monotonic()
    done = subprocess.run(
        ["ansible-playbook", "-i", str(workdir / "inventory.json"), str(path), "-e", f"@{workdir / 'secrets.json'}",
         *extra],
        capture_output=True, text=True, timeout=timeout, check=False, env=ansible_env(),
    )  # fmt: skip
    took = time.monotonic() - start
    if done.returncode != 0:
        sys.stdout.write(done.stdout[-4000:] + done.stderr[-2000:])
        raise SystemExit(f"{path.name} failed")
    return took, done.stdout


@contextlib.contextmanager
def converged(
    hosts: Containers,
    prefix: str,
    write_inventory: Callable[[Path, dict[str, str]], None],
    converge: Path,
    *,
    keep: bool,
    timeout: float = 2400,
) -> Iterator[tuple[Path, dict[str, str], float]]:
    """Bring the containers up, write the inventory (with throwaway passwords of this run only, handed over in a
    0600 file), converge; yield (work folder, passwords, converge seconds); always remove the work folder, and
    the containers unless keep."""
    os.environ.setdefault("CONTAINERS_CONF", str(ROOT / "lab" / "containers.conf"))
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        hosts.up()
        passwords = {f"postgresql_{u}_password": secrets.token_hex(16) for u in ("app", "replication", "monitor")}
        write_inventory(workdir, passwords)
        log(f"converging {converge.relative_to(ROOT)} on {len(hosts.names)} hosts (installs packages the first time)")
        took, out = playbook(workdir, converge, timeout=timeout)
        recap = [" ".join(line.split()) for line in out.splitlines() if " : ok=" in line]
        log(f"converged in {took:.0f} s: " + " | ".join(recap))
        yield workdir, passwords, round(took, 1)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if not keep:
            hosts.down()


# The first four columns of every container benchmark's markdown table (the machine, as machine() states it).
MACHINE_COLUMNS = "| Machine | Cores | Memory | Load (before / after) "


def machine_cells(m: dict[str, Any]) -> str:
    return f"| {m['os']} | {m['cores']} | {m['memory_gib']} GiB | {m['load_before']} / {m.get('load_after')} "


def add_container_args(parser: argparse.ArgumentParser) -> None:
    """--keep and --json, the options every benchmark with containers of its own takes."""
    parser.add_argument("--keep", action="store_true", help="leave the containers and network in place")
    parser.add_argument("--json", type=Path, help="write every measurement here")


def require_podman(parser: argparse.ArgumentParser) -> None:
    if shutil.which("podman") is None:
        parser.error("podman is needed (run `make lab` once on this machine)")
