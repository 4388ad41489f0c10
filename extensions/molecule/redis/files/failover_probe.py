"""Measure a failover from a client host: poll every Sentinel every 100 ms (bounded) until one, then all,
advertise a master other than OLD; then write with the application user on the new master until a write
succeeds. Prints one JSON object. Times are seconds since KILLED_AT (epoch seconds, taken on the killed host
just before the kill; the containers share the machine's clock). redis-cli does the talking; passwords come
from the environment (REDISCLI_AUTH_ADMIN, REDISCLI_AUTH_APP), never from the command line.

    python3 failover_probe.py OLD_HOST KILLED_AT SENTINEL_HOST [SENTINEL_HOST ...]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

POLL = 0.1
LIMIT = 60.0


def cli(host: str, port: int, user: str, password: str, *args: str) -> list[str]:
    env = dict(os.environ, REDISCLI_AUTH=password)
    done = subprocess.run(
        ["redis-cli", "-h", host, "-p", str(port), "--user", user, *args],
        capture_output=True,
        text=True,
        timeout=2,
        env=env,
        check=False,
    )
    return done.stdout.split()


def main() -> int:
    old, killed_at, sentinels = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
    admin, app = os.environ["REDISCLI_AUTH_ADMIN"], os.environ["REDISCLI_AUTH_APP"]
    result: dict[str, object] = {"old": old, "polls": 0}
    deadline = time.monotonic() + LIMIT
    new = None
    while time.monotonic() < deadline:
        result["polls"] = int(result["polls"]) + 1
        seen = []
        for sentinel in sentinels:
            try:
                answer = cli(sentinel, 26379, "strata-admin", admin, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster")
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
        answer = cli(new, 6379, "app", app, "SET", "app:failover-probe", str(time.time()))
        if answer == ["OK"]:
            result["writable"] = round(time.time() - killed_at, 2)
            break
        result["last_write_answer"] = " ".join(answer)
        time.sleep(POLL)
    print(json.dumps(result))
    return 0 if "writable" in result else 1


if __name__ == "__main__":
    sys.exit(main())
