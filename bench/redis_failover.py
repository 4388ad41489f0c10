"""Redis Sentinel failover benchmark for strata.deploy.redis (a measurement, not a test; not part of `make test`).

What it does, in order:

1. brings up 3 containers of the lab image (systemd inside) on a podman network it creates, both labelled
   ``io.strata.bench=redis`` - or reuses containers named with ``--reuse NAME,NAME,NAME``;
2. converges ``strata.deploy.redis`` on them with ``ansible-playbook`` (containers.podman connection, throwaway
   passwords generated for this run, handed over in a 0600 vars file, never on a command line);
3. kills the master's redis-server with SIGKILL ``--kills`` times (bounded), each time while two writers run
   from this machine: one trusts every ``OK`` of ``SET``, the other counts a write as acknowledged only when
   ``WAIT 1 <ms>`` reports that a replica has it. Each kill measures, from this machine, the seconds from the
   SIGKILL (timestamp taken inside the killed container just before it) until the first Sentinel, then every
   Sentinel, advertises a new master, and until a write on it is accepted. The killed server is then started
   again and must rejoin as a replica (bounded wait) before the next kill;
4. repeats with Redis's default Sentinel timing (down-after-milliseconds 30000, failover-timeout 180000,
   set on every Sentinel with SENTINEL SET) for ``--default-kills`` kills, when they fit in ``--budget``
   seconds (estimated from the first kill with the defaults); otherwise it says it did not;
5. prints p50/p95/p99 (nearest rank) of each time and the acknowledged writes lost per kill, with and without
   WAIT, and writes the raw figures as JSON (``--json``).

Traffic goes only to the containers it created (or was given); every loop is bounded in time. The containers
and the network it created are removed at the end unless ``--keep``.

    sudo python3 bench/redis_failover.py                  # 10 kills tuned + up to 3 with Redis's defaults
    sudo python3 bench/redis_failover.py --kills 20 --default-kills 0 --json /tmp/redis-bench.json
    sudo python3 bench/redis_failover.py --reuse strata-bench-redis1,strata-bench-redis2,strata-bench-redis3
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlab import (  # bench/benchlab.py
    Containers,
    add_container_args,
    address,
    ansible_env,
    log,
    percentile,
    podman,
    require_podman,
)

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / ".cache" / "collections"))

from ansible_collections.strata.deploy.plugins.module_utils._redis.client import (  # noqa: E402
    RedisClient,
    RedisError,
    TLSOptions,
)

LABEL = "io.strata.bench=redis"
NETWORK = "strata-bench-redis"
NAMES = ["strata-bench-redis1", "strata-bench-redis2", "strata-bench-redis3"]

HOSTS = Containers(NAMES, NETWORK, LABEL)


def bring_up() -> None:
    HOSTS.up(" or pass --reuse")


def tear_down() -> None:
    HOSTS.down()


MASTER_NAME = "mymaster"
ADMIN, APP = "strata-admin", "app"
POLL = 0.1
DEFAULT_TIMING = {"down-after-milliseconds": 30000, "failover-timeout": 180000}
SENTINEL_PORT = 26379  # TLS only, as the role deploys it by default (tls-replication); Redis's plain port stays


# -- the containers --------------------------------------------------------------------------------------------
# -- converge the role -------------------------------------------------------------------------------------------
def converge(workdir: Path, passwords: dict[str, str]) -> float:
    inventory = workdir / "inventory.yml"
    inventory.write_text(
        json.dumps(
            {
                "redis": {
                    "hosts": {n: {} for n in NAMES},
                    "vars": {
                        "ansible_connection": "containers.podman.podman",
                        "ansible_python_interpreter": "/usr/bin/python3",
                        "redis_primary": NAMES[0],
                        "redis_maxmemory": "256mb",
                        # the run's own CA (the role's default TLS): removed with the work folder
                        "pki_ca_dir": str(workdir / "pki"),
                    },
                }
            }
        )
    )
    secrets_file = workdir / "secrets.json"
    secrets_file.write_text(json.dumps(passwords))
    secrets_file.chmod(0o600)
    playbook = workdir / "converge.yml"
    playbook.write_text(
        json.dumps(
            [
                {
                    "name": "Converge strata.deploy.redis for the benchmark",
                    "hosts": "redis",
                    "become": True,
                    "roles": [{"role": "strata.deploy.redis"}],
                }
            ]
        )
    )
    env = ansible_env()
    log("converging strata.deploy.redis on the 3 containers (installs packages the first time)")
    start = time.monotonic()
    done = subprocess.run(
        ["ansible-playbook", "-i", str(inventory), str(playbook), "-e", f"@{secrets_file}"],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        env=env,
    )
    took = time.monotonic() - start
    recap = [line for line in done.stdout.splitlines() if " : ok=" in line]
    if done.returncode != 0:
        sys.stdout.write(done.stdout[-4000:] + done.stderr[-2000:])
        raise SystemExit("the converge failed")
    log(f"converged in {took:.0f} s: " + " | ".join(" ".join(r.split()) for r in recap))
    return took


# -- talking to Redis from this machine ---------------------------------------------------------------------------
class Cluster:
    def __init__(self, names: list[str], passwords: dict[str, str], ca_file: Path) -> None:
        self.names = names
        self.addr = {n: address(n) for n in names}
        self.host_of = {a: n for n, a in self.addr.items()}
        self.admin = passwords["redis_admin_password"]
        self.app = passwords["redis_app_password"]
        self.sentinel_tls = TLSOptions(ca_file=str(ca_file))

    def cmd(self, host: str, port: int, *args: Any, user: str = ADMIN, timeout: float = 1.0) -> Any:
        password = self.admin if user == ADMIN else self.app
        tls = self.sentinel_tls if port == SENTINEL_PORT else None
        with RedisClient(
            host, port, username=user, password=password, timeout=timeout, connect_retries=0, tls=tls
        ) as r:
            return r.execute(*args)

    def advertised(self) -> list[str]:
        """What each Sentinel advertises as master ('' when it does not answer)."""
        seen = []
        for name in self.names:
            try:
                reply = self.cmd(
                    self.addr[name], SENTINEL_PORT, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME, timeout=0.5
                )
                seen.append(reply[0] if reply else "")
            except RedisError:
                seen.append("")
        return seen

    def master(self) -> str:
        seen = [s for s in self.advertised() if s]
        if not seen or len(set(seen)) != 1:
            raise RuntimeError(f"the Sentinels do not agree on the master: {seen}")
        return seen[0]

    def sentinel_set(self, options: dict[str, int]) -> None:
        for name in self.names:
            args: list[Any] = ["SENTINEL", "SET", MASTER_NAME]
            for key, value in options.items():
                args += [key, value]
            self.cmd(self.addr[name], SENTINEL_PORT, *args)

    def healthy(self, master_ip: str, deadline: float) -> bool:
        """Every other node replicates from master_ip with its link up (bounded by deadline)."""
        while time.monotonic() < deadline:
            try:
                ok = 0
                for ip in self.addr.values():
                    if ip == master_ip:
                        continue
                    role = self.cmd(ip, 6379, "ROLE")
                    if role[0] == "slave" and role[1] == master_ip and role[3] == "connected":
                        ok += 1
                if ok == len(self.addr) - 1 and self.master() == master_ip:
                    return True
            except (RedisError, RuntimeError, IndexError):
                pass
            time.sleep(0.2)
        return False


class Writer(threading.Thread):
    """Writes app:bench:<tag>:<n> to whatever the Sentinels advertise, at most `rate` per second, and keeps
    the keys it counts as acknowledged: every OK, or (wait=True) only those WAIT 1 confirms on a replica."""

    def __init__(self, cluster: Cluster, tag: str, wait: bool, rate: float, wait_ms: int) -> None:
        super().__init__(daemon=True)
        self.cluster, self.tag, self.wait, self.rate, self.wait_ms = cluster, tag, wait, rate, wait_ms
        self.stop = threading.Event()
        self.acked: list[str] = []
        self.attempts = 0
        self.refused = 0

    def run(self) -> None:
        client: RedisClient | None = None
        n = 0
        interval = 1.0 / self.rate
        while not self.stop.is_set():
            started = time.monotonic()
            n += 1
            key = f"app:bench:{self.tag}:{n}"
            self.attempts += 1
            try:
                if client is None:
                    master = self.cluster.master()
                    client = RedisClient(
                        master, 6379, username=APP, password=self.cluster.app, timeout=0.5, connect_retries=0
                    )
                    client.connect()
                if self.wait:
                    replies = client.pipeline([("SET", key, n), ("WAIT", 1, self.wait_ms)])
                    if replies[0] == "OK" and isinstance(replies[1], int) and replies[1] >= 1:
                        self.acked.append(key)
                    else:
                        self.refused += 1
                elif client.execute("SET", key, n) == "OK":
                    self.acked.append(key)
            except (RedisError, RuntimeError):
                self.refused += 1
                if client is not None:
                    client.close()
                client = None
            self.stop.wait(max(0.0, interval - (time.monotonic() - started)))
        if client is not None:
            client.close()


def lost(cluster: Cluster, master_ip: str, keys: list[str]) -> int:
    missing = 0
    with RedisClient(master_ip, 6379, username=ADMIN, password=cluster.admin, timeout=5) as r:
        for start in range(0, len(keys), 500):
            batch = keys[start : start + 500]
            replies = r.pipeline([("EXISTS", k) for k in batch])
            missing += sum(1 for x in replies if x != 1)
        if keys:
            for start in range(0, len(keys), 500):
                r.execute("UNLINK", *keys[start : start + 500])
    return missing


# -- one kill ------------------------------------------------------------------------------------------------------
def one_kill(cluster: Cluster, index: int, label: str, limit: float, args: argparse.Namespace) -> dict[str, Any]:
    old_ip = cluster.master()
    old = cluster.host_of[old_ip]
    plain = Writer(cluster, f"{label}{index}:plain", False, args.rate, args.wait_ms)
    waited = Writer(cluster, f"{label}{index}:wait", True, args.rate, args.wait_ms)
    plain.start()
    waited.start()
    time.sleep(1.0)  # writes in flight before the kill
    out = podman("exec", old, "sh", "-c", "date +%s.%N; systemctl kill --signal=SIGKILL redis-server")
    killed_at = float(out.split()[0])
    # Hold back systemd's automatic restart, so the measurement is Sentinel's alone.
    podman("exec", old, "systemctl", "stop", "redis-server")
    result: dict[str, Any] = {"phase": label, "kill": index, "old": old}
    deadline = time.monotonic() + limit
    new_ip = None
    while time.monotonic() < deadline:
        seen = cluster.advertised()
        moved = [s for s in seen if s and s != old_ip]
        now = time.time() - killed_at
        if moved and "first_sentinel" not in result:
            result["first_sentinel"] = round(now, 2)
        if len(moved) == len(seen) and len(set(moved)) == 1:
            result["all_sentinels"] = round(now, 2)
            new_ip = moved[0]
            break
        time.sleep(POLL)
    if new_ip is not None:
        while time.monotonic() < deadline:
            try:
                if cluster.cmd(new_ip, 6379, "SET", "app:bench:probe", index, user=APP, timeout=0.5) == "OK":
                    result["writable"] = round(time.time() - killed_at, 2)
                    break
            except RedisError as exc:
                result["last_refusal"] = str(exc)[:120]
            time.sleep(POLL)
    time.sleep(1.0)  # writes on the new master
    plain.stop.set()
    waited.stop.set()
    plain.join(5)
    waited.join(5)
    if new_ip is None or "writable" not in result:
        result["error"] = f"no new master accepting writes within {limit:.0f} s"
        return result
    result["new"] = cluster.host_of[new_ip]
    result["plain_acked"], result["plain_lost"] = len(plain.acked), lost(cluster, new_ip, plain.acked)
    result["wait_acked"], result["wait_lost"] = len(waited.acked), lost(cluster, new_ip, waited.acked)
    # Bring the killed node back; it must rejoin as a replica of the new master before the next kill.
    podman("exec", old, "systemctl", "start", "redis-server")
    rejoin_start = time.monotonic()
    if not cluster.healthy(new_ip, time.monotonic() + args.rejoin_timeout):
        result["error"] = f"{old} did not rejoin as a replica of {result['new']} within {args.rejoin_timeout} s"
        return result
    result["rejoin"] = round(time.monotonic() - rejoin_start, 1)
    return result


def summary(rows: list[dict[str, Any]], label: str, timing: str) -> dict[str, Any]:
    good = [r for r in rows if "error" not in r]
    out: dict[str, Any] = {"phase": label, "timing": timing, "kills": len(rows), "failed": len(rows) - len(good)}
    for key in ("first_sentinel", "all_sentinels", "writable"):
        values = [r[key] for r in good]
        out[key] = {p: percentile(values, q) for p, q in (("p50", 50), ("p95", 95), ("p99", 99))}
        out[key]["max"] = max(values) if values else None
    for kind in ("plain", "wait"):
        out[f"{kind}_acked"] = sum(r[f"{kind}_acked"] for r in good)
        out[f"{kind}_lost"] = sum(r[f"{kind}_lost"] for r in good)
        out[f"{kind}_lost_per_kill_max"] = max((r[f"{kind}_lost"] for r in good), default=None)
    return out


def show(s: dict[str, Any]) -> None:
    log(f"== {s['phase']} ({s['timing']}): {s['kills']} kills, {s['failed']} failed")
    for key, what in (
        ("first_sentinel", "first Sentinel advertises a new master"),
        ("all_sentinels", "every Sentinel advertises it"),
        ("writable", "new master accepts a write"),
    ):
        v = s[key]
        log(f"   {what:<42} p50 {v['p50']} s  p95 {v['p95']} s  p99 {v['p99']} s  max {v['max']} s")
    log(
        f"   acknowledged writes lost without WAIT: {s['plain_lost']} of {s['plain_acked']} "
        f"(max {s['plain_lost_per_kill_max']} per kill)"
    )
    log(
        f"   acknowledged writes lost with WAIT 1:  {s['wait_lost']} of {s['wait_acked']} "
        f"(max {s['wait_lost_per_kill_max']} per kill)"
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=10, help="kills with the role's timing (1-50, default 10)")
    parser.add_argument(
        "--default-kills", type=int, default=3, help="kills with Redis's default Sentinel timing (0-20, default 3)"
    )
    parser.add_argument(
        "--budget", type=float, default=600, help="seconds the default-timing kills may take in all (default 600)"
    )
    parser.add_argument("--rate", type=float, default=200, help="writes per second of each writer (default 200)")
    parser.add_argument("--wait-ms", type=int, default=100, help="WAIT timeout in ms (default 100)")
    parser.add_argument("--rejoin-timeout", type=float, default=90, help="seconds for the old master to rejoin")
    parser.add_argument(
        "--reuse",
        help="comma-separated names of 3 existing containers of the lab image "
        "(the role is converged on them again, with new passwords)",
    )
    add_container_args(parser)
    args = parser.parse_args()
    if not 1 <= args.kills <= 50 or not 0 <= args.default_kills <= 20:
        parser.error("--kills must be 1-50 and --default-kills 0-20")
    require_podman(parser)
    if args.reuse and len(args.reuse.split(",")) != 3:
        parser.error("--reuse takes exactly 3 container names")
    return args


def tuned_phase(cluster: Cluster, args: argparse.Namespace, rows: list[dict[str, Any]]) -> dict[str, Any]:
    info = cluster.cmd(cluster.master(), SENTINEL_PORT, "SENTINEL", "MASTER", MASTER_NAME)
    fields = dict(zip(info[::2], info[1::2], strict=True))
    tuned = f"down-after {fields['down-after-milliseconds']} ms, failover-timeout {fields['failover-timeout']} ms"
    log(f"master {cluster.host_of[cluster.master()]}; the role's Sentinel timing: {tuned}")
    for i in range(1, args.kills + 1):
        row = one_kill(cluster, i, "tuned", 60, args)
        rows.append(row)
        log(f"kill {i}/{args.kills}: {json.dumps(row)}")
        if "error" in row:
            break
    return summary([r for r in rows if r["phase"] == "tuned"], "tuned", tuned)


def default_phase(cluster: Cluster, args: argparse.Namespace, rows: list[dict[str, Any]]) -> dict[str, Any]:
    cluster.sentinel_set(DEFAULT_TIMING)
    default = "Redis defaults: down-after 30000 ms, failover-timeout 180000 ms"
    log(f"Sentinel timing set to {default}; budget {args.budget:.0f} s")
    phase_start = time.monotonic()
    for i in range(1, args.default_kills + 1):
        row = one_kill(cluster, i, "default", 120, args)
        rows.append(row)
        log(f"default kill {i}/{args.default_kills}: {json.dumps(row)}")
        spent = time.monotonic() - phase_start
        if "error" in row:
            break
        if i < args.default_kills and spent / i * (i + 1) > args.budget:
            log(
                f"stopping the default-timing phase after {i} kill(s): {spent:.0f} s spent, "
                f"the next would exceed the {args.budget:.0f} s budget"
            )
            break
    return summary([r for r in rows if r["phase"] == "default"], "default", default)


def main() -> int:
    global NAMES  # noqa: PLW0603 - the container names are chosen once, here
    args = parse_args()
    # The podman settings this kind of machine needs (runc, cgroupfs, ulimits), as `make lab` uses them.
    os.environ.setdefault("CONTAINERS_CONF", str(ROOT / "lab" / "containers.conf"))
    if args.reuse:
        NAMES = args.reuse.split(",")
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="strata-redis-bench."))
    rows: list[dict[str, Any]] = []
    results: dict[str, Any] = {}
    try:
        if not args.reuse:
            bring_up()
        # Throwaway passwords of this run only (hex: valid for the role's preflight).
        passwords = {
            f"redis_{u}_password": secrets.token_hex(16)
            for u in ("admin", "app", "replication", "sentinel", "exporter")
        }
        results["converge_seconds"] = round(converge(workdir, passwords), 1)
        cluster = Cluster(NAMES, passwords, workdir / "pki" / "ca.crt")
        if not cluster.healthy(cluster.master(), time.monotonic() + 60):
            raise SystemExit("the deployment is not healthy after the converge")
        results["tuned"] = tuned_phase(cluster, args, rows)
        if args.default_kills and "error" not in rows[-1]:
            results["default"] = default_phase(cluster, args, rows)
        else:
            log("Redis's default timing was NOT measured in this run (--default-kills 0 or a tuned kill failed)")
        results["rows"] = rows
        results["wall_seconds"] = round(time.monotonic() - started)
        show(results["tuned"])
        if "default" in results:
            show(results["default"])
        log(f"wall time {results['wall_seconds']} s")
        if args.json:
            args.json.write_text(json.dumps(results, indent=2))
            log(f"raw figures in {args.json}")
        return 0 if all("error" not in r for r in rows) else 1
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if not args.reuse and not args.keep:
            tear_down()


if __name__ == "__main__":
    sys.exit(main())
