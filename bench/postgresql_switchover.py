"""PostgreSQL switchover benchmark for strata.deploy.postgresql (a measurement, not a test; not part of `make test`).

What it does, in order:

1. brings up 3 containers of the lab image (systemd inside) on a podman network it creates, all labelled
   ``io.strata.bench=postgresql``: two PostgreSQL hosts (group ``postgresql``) and one client (group ``app``,
   the only kind of host pg_hba lets the application user in from);
2. converges the Molecule scenario's converge playbook (``strata.deploy.postgresql``, TLS and SCRAM, plus the
   client's psql and psycopg2) with ``ansible-playbook`` (podman connection; throwaway passwords of this run,
   handed over in a 0600 vars file, never on a command line; the run's own CA in its work folder);
3. runs ``playbooks/postgresql_switchover.yml`` ``--switchovers`` times (bounded), each time while the
   scenario's writer (``extensions/molecule/postgresql/files/writer.py``) inserts unique ids at ``--rate`` per
   second on the client over the libpq multi-host string with ``target_session_attrs=read-write``, logging
   every acknowledged commit. Per switchover: the write unavailability (first failed write to the next
   acknowledged one; the longest time between two acknowledged commits is kept too), the acknowledged commits
   missing on the new primary afterwards (lost), the playbook's wall time; the primary alternates;
4. prints a markdown table (machine, cores, memory, runs, p50/p95/max of the write unavailability, acknowledged
   commits lost) and writes every figure as JSON (``--json``).

Traffic goes only to the containers it created; every loop and wait is bounded. The containers and the network
are removed at the end unless ``--keep``.

    sudo python3 bench/postgresql_switchover.py                          # 10 switchovers
    sudo python3 bench/postgresql_switchover.py --switchovers 3 --json /tmp/pg-bench.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlab import (  # bench/benchlab.py
    MACHINE_COLUMNS,
    Containers,
    add_container_args,
    address,
    converged,
    log,
    machine,
    machine_cells,
    percentile,
    playbook,
    podman,
    require_podman,
)

ROOT = Path(__file__).resolve().parent.parent
SCENARIO = ROOT / "extensions" / "molecule" / "postgresql"
LABEL = "io.strata.bench=postgresql"
NETWORK = "strata-bench-postgresql"
PG = ["strata-bench-pg1", "strata-bench-pg2"]
CLIENT = "strata-bench-pgclient"
NAMES = [*PG, CLIENT]

HOSTS = Containers(NAMES, NETWORK, LABEL)


WRITER = "/usr/local/lib/strata-pg-writer.py"
STOP, LOG = "/run/strata-bench-writer.stop", "/run/strata-bench-writer.log"  # inside the client container


# -- Ansible -------------------------------------------------------------------------------------------------------
def write_inventory(workdir: Path, passwords: dict[str, str]) -> None:
    common = {"ansible_connection": "containers.podman.podman", "ansible_python_interpreter": "/usr/bin/python3"}
    inventory = {
        "all": {"vars": {**common, "pki_ca_dir": str(workdir / "pki")}},
        "postgresql": {
            "hosts": {n: {} for n in PG},
            "vars": {"postgresql_primary": PG[0], "postgresql_memory_mb": 512},
        },
        "app": {"hosts": {CLIENT: {}}},
    }
    (workdir / "inventory.json").write_text(json.dumps(inventory))
    secrets_file = workdir / "secrets.json"
    secrets_file.write_text(json.dumps(passwords))
    secrets_file.chmod(0o600)


# -- one switchover under the writer -------------------------------------------------------------------------------
def writer_start(conninfo: str, password: str, rate: float, limit: float) -> subprocess.Popen[str]:
    podman("exec", CLIENT, "rm", "-f", STOP, LOG)
    return subprocess.Popen(
        ["podman", "exec", "-e", "PGPASSWORD", "-e", "PGCONNECT_TIMEOUT=5", CLIENT,
         "python3", WRITER, conninfo, str(rate), str(limit), STOP, LOG],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ, PGPASSWORD=password),
    )  # fmt: skip


def acked_lines() -> int:
    out = podman("exec", CLIENT, "sh", "-c", f"wc -l < {LOG} 2>/dev/null || echo 0", check=False).strip()
    return int(out or 0)


def one_switchover(index: int, conninfo: str, workdir: Path, args: argparse.Namespace, pw: str) -> dict[str, Any]:
    writer = writer_start(conninfo, pw, args.rate, args.writer_limit)
    row: dict[str, Any] = {"switchover": index}
    try:
        deadline = time.monotonic() + 30
        while acked_lines() < args.rate and time.monotonic() < deadline:  # one second of writes first
            time.sleep(0.2)
        took, out = playbook(workdir, ROOT / "playbooks" / "postgresql_switchover.yml", timeout=args.playbook_timeout)
        row["playbook_s"] = round(took, 1)
        moved = re.search(r"switched over from\s+(\S+)\s+to\s+(\S+):\s+writes stopped for\s+([0-9.]+)", out)
        if moved:
            row["old"], row["new"], row["fence_to_promote_s"] = moved[1], moved[2], float(moved[3])
        time.sleep(1.0)  # writes on the new primary
        podman("exec", CLIENT, "touch", STOP)
        stdout, stderr = writer.communicate(timeout=60)
    finally:
        if writer.poll() is None:
            writer.kill()
    try:
        report = json.loads(stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        row["error"] = f"no report from the writer: {stderr.strip()[-500:]}"
        return row
    row.update(
        acknowledged=report["acknowledged"],
        lost=report["lost"],
        failed_attempts=report["failed_attempts"],
        unavailable_s=report["write_unavailable_s"],
        longest_between_acks_s=report["longest_between_acks_s"],
    )
    return row


def summary(rows: list[dict[str, Any]], info: dict[str, Any]) -> dict[str, Any]:
    good = [r for r in rows if "error" not in r]
    out: dict[str, Any] = {"runs": len(rows), "failed": len(rows) - len(good), "machine": info}
    for key in ("unavailable_s", "longest_between_acks_s", "playbook_s"):
        values = [r[key] for r in good]
        out[key] = {"p50": percentile(values, 50), "p95": percentile(values, 95), "max": max(values, default=None)}
    out["acknowledged"] = sum(r["acknowledged"] for r in good)
    out["lost"] = sum(r["lost"] for r in good)
    return out


def table(s: dict[str, Any]) -> str:
    m = s["machine"]
    u, g, p = s["unavailable_s"], s["longest_between_acks_s"], s["playbook_s"]
    return "\n".join(
        [
            MACHINE_COLUMNS + "| Switchovers | Write unavailability p50 / p95 / max "
            "| Longest gap between acks p50 / p95 / max | Acknowledged commits lost | Playbook p50 / max |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
            machine_cells(m) + f"| {s['runs'] - s['failed']} of {s['runs']} | {u['p50']} / {u['p95']} / {u['max']} s "
            f"| {g['p50']} / {g['p95']} / {g['max']} s | {s['lost']} of {s['acknowledged']} "
            f"| {p['p50']} / {p['max']} s |",
        ]
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--switchovers", type=int, default=10, help="switchovers to run (1-50, default 10)")
    parser.add_argument("--rate", type=float, default=50, help="writer inserts per second (1-500, default 50)")
    parser.add_argument("--playbook-timeout", type=float, default=600, help="seconds per switchover playbook")
    parser.add_argument("--writer-limit", type=float, default=900, help="seconds a writer may run at most")
    add_container_args(parser)
    args = parser.parse_args()
    if not 1 <= args.switchovers <= 50 or not 1 <= args.rate <= 500:
        parser.error("--switchovers must be 1-50 and --rate 1-500")
    require_podman(parser)
    return args


def main() -> int:
    args = parse_args()
    info = machine()
    started = time.monotonic()
    rows: list[dict[str, Any]] = []
    results: dict[str, Any] = {}
    with converged(
        HOSTS, "strata-pg-bench.", write_inventory, SCENARIO / "converge.yml", keep=args.keep, timeout=1800
    ) as (
        workdir,
        passwords,
        took,
    ):
        results["converge_seconds"] = took
        podman("cp", str(SCENARIO / "files" / "writer.py"), f"{CLIENT}:{WRITER}")
        addr = [address(n) for n in PG]
        conninfo = (
            f"host={','.join(addr)} dbname=app user=app sslmode=verify-full sslrootcert=/etc/ssl/strata/ca.crt "
            "target_session_attrs=read-write connect_timeout=2"
        )
        sql = "CREATE TABLE IF NOT EXISTS writer_ids (id bigint PRIMARY KEY, at timestamptz NOT NULL DEFAULT now())"
        podman("exec", "-e", f"PGPASSWORD={passwords['postgresql_app_password']}", CLIENT, "psql", conninfo,
               "-XAtqc", sql)  # fmt: skip
        for i in range(1, args.switchovers + 1):
            row = one_switchover(i, conninfo, workdir, args, passwords["postgresql_app_password"])
            rows.append(row)
            log(f"switchover {i}/{args.switchovers}: {json.dumps(row)}")
            if "error" in row:
                break
        info["load_after"] = round(os.getloadavg()[0], 1)
        results["summary"] = summary(rows, info)
        results["rows"] = rows
        results["wall_seconds"] = round(time.monotonic() - started)
        print(table(results["summary"]), flush=True)
        log(f"wall time {results['wall_seconds']} s")
        if args.json:
            args.json.write_text(json.dumps(results, indent=2))
            log(f"raw figures in {args.json}")
        return 0 if rows and all("error" not in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
