"""PostgreSQL backup and restore benchmark for strata.deploy.pgbackrest (a measurement, not a test).

What it does, in order:

1. brings up 3 containers of the lab image (systemd inside) on a podman network it creates, all labelled
   ``io.strata.bench=pgbackrest``: two PostgreSQL hosts (group ``postgresql``) and the repository host (group
   ``monitoring``, the role's default repository group);
2. converges the Molecule scenario's converge playbook (``strata.deploy.postgresql`` with WAL archiving, then
   ``strata.deploy.pgbackrest``: stanza, first full backup from the standby) with ``ansible-playbook`` (podman
   connection, throwaway passwords in a 0600 vars file, the run's own CA in its work folder); no S3 repository;
3. fills the database with ``--fill-mb`` MiB of rows and times a full backup by the timers' own unit
   (``pgbackrest-backup@full.service`` on the repository host, copied from the standby);
4. WAL archive lag, ``--segments`` times: on the primary, switch to a new WAL segment and poll
   ``pg_stat_archiver`` every 50 ms (inside the primary, one process) until that segment is archived;
5. ``--restores`` restore drills: 100 rows written, a timestamp T noted, 50 more rows written, then
   ``playbooks/postgresql_restore.yml`` to T onto the host that is NOT the primary (so the primary alternates).
   Per drill: the playbook's wall time, its own phases (files, WAL replay and promotion, replicas cloned), and
   whether the restored host holds exactly the rows written before T (a drill that loses or keeps extra rows
   counts as a failure, whatever its time);
6. prints a markdown table (machine, cores, memory, load, runs, p50 / max) and writes every figure as JSON.

Traffic goes only to the containers it created; every loop and wait is bounded. The containers and the network
are removed at the end unless ``--keep``.

    sudo python3 bench/postgresql_restore.py                          # 10 segments, 3 restores, 100 MiB
    sudo python3 bench/postgresql_restore.py --quick --json /tmp/pgb.json   # 3 segments, 1 restore, no fill
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlab import (  # bench/benchlab.py
    MACHINE_COLUMNS,
    Containers,
    add_container_args,
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
SCENARIO = ROOT / "extensions" / "molecule" / "pgbackrest"
LABEL = "io.strata.bench=pgbackrest"
NETWORK = "strata-bench-pgbackrest"
PG = ["strata-bench-pgb-pg1", "strata-bench-pgb-pg2"]
REPO = "strata-bench-pgb-repo"
HOSTS = Containers([*PG, REPO], NETWORK, LABEL)

# One process inside the primary: switch WAL, then poll pg_stat_archiver every 50 ms (at most 60 s).
LAG_SCRIPT = r"""
set -eu
q() { runuser -u postgres -- psql -h /run/postgresql -XAtq -d postgres -c "$1"; }
# A committed write first: without new WAL since the last switch, pg_switch_wal() switches nothing and returns
# the segment already archived (a lag of 0 that was never a lag).
q "CREATE TABLE IF NOT EXISTS lag_probe (at timestamptz DEFAULT now()); INSERT INTO lag_probe DEFAULT VALUES" >/dev/null
seg=$(q "SELECT pg_walfile_name(pg_switch_wal())")
start=$(date +%s%N)
for _ in $(seq 1 1200); do
  if [ "$(q "SELECT coalesce(last_archived_wal >= '$seg', false) FROM pg_stat_archiver")" = t ]; then
    echo "$seg $(( ($(date +%s%N) - start) / 1000000 ))"; exit 0
  fi
  sleep 0.05
done
echo "$seg not archived within 60 s" >&2; exit 1
"""


def sql(host: str, query: str) -> str:
    return podman(
        "exec", host, "runuser", "-u", "postgres", "--", "psql", "-h", "/run/postgresql", "-XAtq", "-d", "postgres",
        "-v", "ON_ERROR_STOP=1", "-c", query,
    ).strip()  # fmt: skip


def primary() -> str:
    for host in PG:
        if sql(host, "SELECT pg_is_in_recovery()") == "f":
            return host
    raise SystemExit("no primary among " + ", ".join(PG))


def write_inventory(workdir: Path, passwords: dict[str, str]) -> None:
    common = {"ansible_connection": "containers.podman.podman", "ansible_python_interpreter": "/usr/bin/python3"}
    inventory = {
        "all": {"vars": {**common, "pki_ca_dir": str(workdir / "pki")}},
        "postgresql": {
            "hosts": {n: {} for n in PG},
            "vars": {
                "postgresql_primary": PG[0],
                "postgresql_memory_mb": 512,
                "postgresql_exporter_enabled": False,
                "postgresql_archive_command": "pgbackrest --stanza=main archive-push %p",
            },
        },
        "monitoring": {"hosts": {REPO: {}}},
    }
    (workdir / "inventory.json").write_text(json.dumps(inventory))
    secrets_file = workdir / "secrets.json"
    secrets_file.write_text(json.dumps(passwords))
    secrets_file.chmod(0o600)


def fill_and_backup(mb: int) -> dict[str, Any]:
    """mb MiB of 1 KiB rows on the primary, then a full backup by the timers' unit, timed."""
    out: dict[str, Any] = {"fill_mb": mb}
    if mb > 0:
        start = time.monotonic()
        sql(
            primary(),
            f"CREATE TABLE filler AS SELECT g AS id, repeat('x', 1000) AS pad FROM generate_series(1, {mb * 1024}) g",  # noqa: S608
        )
        out["fill_s"] = round(time.monotonic() - start, 1)
    out["database_mb"] = round(int(sql(primary(), "SELECT pg_database_size('postgres')")) / 1048576, 1)
    start = time.monotonic()
    podman("exec", REPO, "systemctl", "start", "pgbackrest-backup@full.service")  # oneshot: returns when done
    out["full_backup_s"] = round(time.monotonic() - start, 1)
    info = json.loads(podman("exec", REPO, "runuser", "-u", "postgres", "--", "pgbackrest", "--stanza=main",
                             "--output=json", "info"))[0]  # fmt: skip
    newest = info["backup"][-1]
    out["full_backup_label"] = newest["label"]
    out["full_backup_repo_mb"] = round(newest["info"]["repository"]["delta"] / 1048576, 1)
    out["from_standby"] = "option-backup-standby=true" in podman(
        "exec", REPO, "cat", f"/var/lib/pgbackrest/backup/main/{newest['label']}/backup.manifest"
    )
    return out


def archive_lag(count: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for _attempt in range(2 * count):  # bounded: a segment seen twice is not counted
        if len(rows) == count:
            break
        seg, ms = podman("exec", primary(), "bash", "-c", LAG_SCRIPT).split()
        if rows and seg == rows[-1]["segment"]:
            log(f"pg_switch_wal() returned {seg} again (already archived): not counted")
            continue
        rows.append({"segment": seg, "lag_ms": int(ms)})
        log(f"archive lag {len(rows)}/{count}: {seg} archived after {ms} ms")
    return rows


PHASES = re.compile(
    r"restored (\S+) to time .*?: ([0-9.]+) s in all\s+\(files ([0-9.]+) s, WAL replay and promotion ([0-9.]+) s, "
    r"replicas cloned and streaming ([0-9.]+) s\)"
)


def one_restore(index: int, workdir: Path, timeout: float) -> dict[str, Any]:
    source = primary()
    target = next(h for h in PG if h != source)
    table = f"drill{index}"  # the SQL below holds only this name, ints and a timestamp PostgreSQL printed
    sql(source, f"CREATE TABLE {table} (id int PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp())")
    sql(source, f"INSERT INTO {table} (id) SELECT g FROM generate_series(1, 100) g")  # noqa: S608
    time.sleep(1)
    at = sql(source, "SELECT clock_timestamp()")
    time.sleep(1)
    sql(source, f"INSERT INTO {table} (id) SELECT g FROM generate_series(101, 150) g")  # noqa: S608
    expected = int(sql(source, f"SELECT count(*) FROM {table} WHERE at <= '{at}'"))  # noqa: S608
    row: dict[str, Any] = {"restore": index, "from_primary": source, "restore_host": target, "target": at}
    took, out = playbook(
        workdir, ROOT / "playbooks" / "postgresql_restore.yml",
        "-e", f"restore_host={target}", "-e", "restore_target_type=time", "-e", json.dumps({"restore_target": at}),
        timeout=timeout,
    )  # fmt: skip
    row["playbook_s"] = round(took, 1)
    phases = PHASES.search(" ".join(out.split()))
    if phases:
        row.update(
            in_all_s=float(phases[2]), files_s=float(phases[3]), replay_s=float(phases[4]), reclone_s=float(phases[5])
        )
    got = int(sql(target, f"SELECT count(*) FROM {table}"))  # noqa: S608
    row.update(rows_expected=expected, rows_restored=got, correct=got == expected and primary() == target)
    if not row["correct"]:
        row["error"] = f"{target} holds {got} rows of {table}, expected {expected} (or it is not the primary)"
    return row


def stats(values: list[float]) -> dict[str, Any]:
    return {"p50": percentile(values, 50), "p95": percentile(values, 95), "max": max(values, default=None)}


def table(r: dict[str, Any]) -> str:
    m, lag, rs = r["machine"], r["archive_lag_ms"], r["restore"]
    b = r["backup"]
    return "\n".join(
        [
            MACHINE_COLUMNS + "| Database | Full backup (from standby) "
            "| WAL archive lag p50 / p95 / max | Restores correct | Restore in all p50 / max "
            "| files / replay / re-clone p50 |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
            machine_cells(m) + f"| {b['database_mb']} MiB | {b['full_backup_s']} s ({b['from_standby']}) "
            f"| {lag['p50']} / {lag['p95']} / {lag['max']} ms ({lag['runs']} segments) "
            f"| {rs['correct']} of {rs['runs']} | {rs['in_all_s']['p50']} / {rs['in_all_s']['max']} s "
            f"| {rs['files_s']['p50']} / {rs['replay_s']['p50']} / {rs['reclone_s']['p50']} s |",
        ]
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="3 segments, 1 restore, no fill")
    parser.add_argument("--segments", type=int, help="WAL segments whose archive lag is measured (1-100, default 10)")
    parser.add_argument("--restores", type=int, help="restore drills (1-10, default 3)")
    parser.add_argument(
        "--fill-mb", type=int, help="MiB of rows written before the timed full backup (0-4096, default 100)"
    )
    parser.add_argument("--playbook-timeout", type=float, default=1200, help="seconds per restore playbook")
    add_container_args(parser)
    args = parser.parse_args()
    defaults = (3, 1, 0) if args.quick else (10, 3, 100)
    args.segments = defaults[0] if args.segments is None else args.segments
    args.restores = defaults[1] if args.restores is None else args.restores
    args.fill_mb = defaults[2] if args.fill_mb is None else args.fill_mb
    if not (1 <= args.segments <= 100 and 1 <= args.restores <= 10 and 0 <= args.fill_mb <= 4096):
        parser.error("--segments must be 1-100, --restores 1-10 and --fill-mb 0-4096")
    require_podman(parser)
    return args


def main() -> int:
    args = parse_args()
    info = machine()
    started = time.monotonic()
    results: dict[str, Any] = {"machine": info}
    with converged(HOSTS, "strata-pgb-bench.", write_inventory, SCENARIO / "converge.yml", keep=args.keep) as (
        workdir,
        _pw,
        took,
    ):
        results["converge_seconds"] = took
        log(f"filling {args.fill_mb} MiB and timing a full backup from the standby")
        results["backup"] = fill_and_backup(args.fill_mb)
        log(f"backup: {json.dumps(results['backup'])}")
        lags = archive_lag(args.segments)
        results["archive_lag"] = lags
        results["archive_lag_ms"] = {**stats([r["lag_ms"] for r in lags]), "runs": len(lags)}
        restores: list[dict[str, Any]] = []
        for i in range(1, args.restores + 1):
            row = one_restore(i, workdir, args.playbook_timeout)
            restores.append(row)
            log(f"restore {i}/{args.restores}: {json.dumps(row)}")
            if "error" in row:
                break
    results["restores"] = restores
    results["restore"] = {
        "runs": len(restores),
        "correct": sum(1 for r in restores if r.get("correct")),
        **{
            k: stats([r[k] for r in restores if k in r])
            for k in ("playbook_s", "in_all_s", "files_s", "replay_s", "reclone_s")
        },
    }
    info["load_after"] = round(os.getloadavg()[0], 1)
    results["wall_seconds"] = round(time.monotonic() - started)
    print(table(results), flush=True)
    log(f"wall time {results['wall_seconds']} s")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
        log(f"raw figures in {args.json}")
    return 0 if restores and all(r.get("correct") for r in restores) else 1


if __name__ == "__main__":
    sys.exit(main())
