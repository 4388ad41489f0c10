"""Kill the master's redis-server and measure the failover: with --kill (run on the master's host) the probe
itself takes the time, sends SIGKILL to redis-server and holds back systemd's restart (systemctl stop), so
no Ansible task latency sits between the kill and the first poll; then it polls every Sentinel every 100 ms
(bounded) over the network until one, then all, advertise a master other than OLD, and writes with the
application user on the new master until a write succeeds. Prints one JSON object. Times are seconds since
the kill (or since --killed-at, epoch seconds, when another process killed it). redis-cli does the talking;
passwords come from the environment (REDISCLI_AUTH_ADMIN, REDISCLI_AUTH_APP), never from the command line.
With --cacert, Sentinels and the new master are reached over TLS
(the master on --port, the port the Sentinels advertise).

    python3 failover_probe.py [--port 6380] [--cacert CA] (--kill | --killed-at T) OLD_HOST SENTINEL_HOST [...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

POLL = 0.1
LIMIT = 60.0
SENTINEL_PORT = 26379


def cli(tls: list[str], host: str, port: int, user: str, password: str, *args: str) -> list[str]:
    env = dict(os.environ, REDISCLI_AUTH=password)
    done = subprocess.run(
        ["redis-cli", "-h", host, "-p", str(port), *tls, "--user", user, *args],
        capture_output=True,
        text=True,
        timeout=2,
        env=env,
        check=False,
    )
    return done.stdout.split()


def kill_here() -> float:
    """SIGKILL this host's redis-server and hold back systemd's restart; returns the time just before the kill."""
    killed_at = time.time()
    subprocess.run(["systemctl", "kill", "--signal=SIGKILL", "redis-server"], check=True, timeout=30)
    # systemd would start it again after RestartSec: the test starts it itself, later
    subprocess.run(["systemctl", "stop", "redis-server"], check=True, timeout=60)
    return killed_at


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=6379, help="the Redis port the Sentinels advertise")
    parser.add_argument("--cacert", help="CA of the servers' certificates: speak TLS to Sentinels and Redis")
    when = parser.add_mutually_exclusive_group(required=True)
    when.add_argument("--kill", action="store_true", help="SIGKILL this host's redis-server, hold back its restart")
    when.add_argument("--killed-at", type=float, help="epoch seconds of a kill done by another process")
    parser.add_argument("old")
    parser.add_argument("sentinels", nargs="+")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    tls = ["--tls", "--cacert", args.cacert] if args.cacert else []
    old, sentinels = args.old, args.sentinels
    killed_at = kill_here() if args.kill else args.killed_at
    admin, app = os.environ["REDISCLI_AUTH_ADMIN"], os.environ["REDISCLI_AUTH_APP"]
    result: dict[str, object] = {"old": old, "polls": 0, "tls": bool(tls), "killed_at": killed_at}
    deadline = time.monotonic() + LIMIT
    new = None
    while time.monotonic() < deadline:
        result["polls"] = int(result["polls"]) + 1
        seen = []
        for sentinel in sentinels:
            try:
                answer = cli(
                    tls,
                    sentinel,
                    SENTINEL_PORT,
                    "strata-admin",
                    admin,
                    "SENTINEL",
                    "GET-MASTER-ADDR-BY-NAME",
                    "mymaster",
                )
            except subprocess.TimeoutExpired:
                answer = []
            seen.append(answer[0] if answer else "")
        moved = [s for s in seen if s and s != old]
        now = time.time() - killed_at
        if moved and "first_sentinel_advertises" not in result:
            result["first_sentinel_advertises"] = round(now, 2)
        if len(moved) == len(sentinels) and len(set(moved)) == 1:
            result["all_sentinels_advertise"] = round(now, 2)
            new = moved[0]
            break
        time.sleep(POLL)
    if new is None:
        result["error"] = f"no agreement on a new master within {LIMIT}s"
        print(json.dumps(result))
        return 1
    result["new"] = new
    while time.monotonic() < deadline:
        try:
            answer = cli(tls, new, args.port, "app", app, "SET", "app:failover-probe", str(time.time()))
        except subprocess.TimeoutExpired:
            answer = ["(timed out)"]
        if answer == ["OK"]:
            result["writable"] = round(time.time() - killed_at, 2)
            break
        result["last_write_answer"] = " ".join(answer)
        time.sleep(POLL)
    print(json.dumps(result))
    return 0 if "writable" in result else 1


if __name__ == "__main__":
    sys.exit(main())
