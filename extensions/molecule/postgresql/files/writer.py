"""Write unique ids at a steady rate through a switchover and report what was acknowledged and lost.

Runs on a client host until STOP_FILE exists, AFTER_RECOVERY seconds after writes recovered from a failure,
or LIMIT seconds passed (bounded in every case). Each attempt inserts a new id in its own autocommitted
statement over the libpq multi-host string (target_session_attrs=read-write, so it follows the primary); every
acknowledged id is appended to LOG and flushed. On an error the connection is dropped and the next attempt
reconnects. At the end the ids present on the (new) primary are compared with the acknowledged ones. Prints
one JSON object. The password comes from PGPASSWORD.

    python3 writer.py CONNINFO RATE LIMIT STOP_FILE LOG
"""

from __future__ import annotations

import json
import os
import sys
import time

import psycopg2

AFTER_RECOVERY = 3.0


def connect(conninfo: str, wait: float = 0.0):
    deadline = time.monotonic() + wait
    while True:
        try:
            conn = psycopg2.connect(conninfo, options="-c statement_timeout=3000")
            conn.autocommit = True
            return conn
        except psycopg2.OperationalError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.5)


class Writer:
    """Acknowledged ids and the timing of failures and recoveries."""

    def __init__(self, conninfo: str) -> None:
        self.conninfo = conninfo
        self.conn = None
        self.start = time.monotonic()
        self.next_id = int(time.time() * 1000)  # unique across runs on the same table
        self.first_id = self.next_id
        self.acked: list[int] = []
        self.failures = 0
        self.last_ok: float | None = None
        self.failing_since: float | None = None
        self.recovered_at: float | None = None
        self.worst_gap = 0.0
        self.worst_window = (0.0, 0.0)
        self.longest_between_acks = 0.0

    def attempt(self) -> int | None:
        ident = self.next_id
        self.next_id += 1
        try:
            if self.conn is None:
                self.conn = connect(self.conninfo)
            with self.conn.cursor() as cur:
                cur.execute("INSERT INTO writer_ids (id) VALUES (%s)", (ident,))
        except psycopg2.Error:
            self.failures += 1
            if self.failing_since is None and self.last_ok is not None:
                self.failing_since = time.monotonic()
            if self.conn is not None:
                self.conn.close()
                self.conn = None
            return None
        now = time.monotonic()
        if self.last_ok is not None:
            self.longest_between_acks = max(self.longest_between_acks, now - self.last_ok)
        if self.failing_since is not None:
            self.recovered_at = now
            if now - self.failing_since > self.worst_gap:
                self.worst_gap = now - self.failing_since
                self.worst_window = (self.failing_since - self.start, now - self.start)
            self.failing_since = None
        self.last_ok = now
        self.acked.append(ident)
        return ident

    def report(self) -> dict[str, object]:
        if self.conn is not None:
            self.conn.close()
        check = connect(self.conninfo, wait=10)
        with check.cursor() as cur:
            cur.execute("SELECT id FROM writer_ids WHERE id = ANY(%s)", (self.acked,))
            present = {row[0] for row in cur.fetchall()}
            cur.execute("SELECT host(inet_server_addr())")
            server = cur.fetchone()[0]
        check.close()
        lost = sorted(set(self.acked) - present)
        return {
            "attempts": self.next_id - self.first_id,
            "acknowledged": len(self.acked),
            "failed_attempts": self.failures,
            "lost": len(lost),
            "lost_ids": lost[:20],
            "write_unavailable_s": round(self.worst_gap, 2),
            "longest_between_acks_s": round(self.longest_between_acks, 2),
            "unavailable_window_s": [round(self.worst_window[0], 2), round(self.worst_window[1], 2)],
            "ran_s": round(time.monotonic() - self.start, 1),
            "checked_on": server,
        }


def main() -> int:
    conninfo, stop_file, log_path = sys.argv[1], sys.argv[4], sys.argv[5]
    interval, limit = 1.0 / float(sys.argv[2]), float(sys.argv[3])
    writer = Writer(conninfo)
    with open(log_path, "a", encoding="ascii") as log:
        while time.monotonic() - writer.start < limit and not os.path.exists(stop_file):
            if writer.recovered_at is not None and time.monotonic() - writer.recovered_at > AFTER_RECOVERY:
                break
            tick = time.monotonic()
            ident = writer.attempt()
            if ident is not None:
                log.write(f"{ident}\n")
                log.flush()
            time.sleep(max(0.0, interval - (time.monotonic() - tick)))
    print(json.dumps(writer.report()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
