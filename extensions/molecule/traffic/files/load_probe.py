"""Bounded HTTPS load through the load balancers, counting every request: verify.yml's witness of lost traffic.

    python3 load_probe.py --url https://10.89.0.2/ --url https://10.89.0.3/ --cafile ca.crt \
        --rate 10 --max-seconds 300 --stop-file /tmp/stop --out /tmp/probe.json

One thread per URL sends ``--rate`` requests a second (a new TLS connection each, as a browser behind a fresh
connection would) until the stop file appears or ``--max-seconds`` pass, whichever comes first. Every answer is
classified: 200, another HTTP status (with the ``X-App-Version`` that served it), or a transport error (refused,
reset, timeout, TLS). The JSON summary holds the counts per URL, per version and per status, the first error
messages, and for each version the first and last time (epoch seconds) it answered, so a caller can check that a
rolled-back version served nothing after the rollback ended.
"""

from __future__ import annotations

import argparse
import json
import os
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass
from typing import Any


class Tally:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.total = 0
        self.ok = 0
        self.status: Counter[str] = Counter()
        self.versions: Counter[str] = Counter()
        self.non_200: Counter[str] = Counter()
        self.transport_errors = 0
        self.first_errors: list[str] = []
        self.per_url: Counter[str] = Counter()
        self.seen: dict[str, list[float]] = {}

    def record(self, url: str, code: int | None, version: str, error: str = "") -> None:
        now = time.time()
        with self.lock:
            self.total += 1
            self.per_url[url] += 1
            if code is None:
                self.transport_errors += 1
                if len(self.first_errors) < 10:
                    self.first_errors.append(f"{url}: {error}")
                return
            self.status[str(code)] += 1
            self.versions[version] += 1
            first_last = self.seen.setdefault(version, [now, now])
            first_last[1] = now
            if code == 200:
                self.ok += 1
            else:
                self.non_200[f"{code} {version}"] += 1
                if len(self.first_errors) < 10:
                    self.first_errors.append(f"{url}: HTTP {code} from version {version}")

    def as_dict(self, started: float, ended: float) -> dict[str, Any]:
        with self.lock:
            return {
                "started": started,
                "ended": ended,
                "seconds": round(ended - started, 2),
                "total": self.total,
                "ok": self.ok,
                "failed": self.total - self.ok,
                "transport_errors": self.transport_errors,
                "status": dict(self.status),
                "versions": dict(self.versions),
                "non_200": dict(self.non_200),
                "first_errors": self.first_errors,
                "per_url": dict(self.per_url),
                "version_first_last": {v: [round(a, 3), round(b, 3)] for v, (a, b) in self.seen.items()},
            }


@dataclass(frozen=True)
class Load:
    context: ssl.SSLContext
    rate: float
    deadline: float
    stop_file: str


def hammer(url: str, load: Load, tally: Tally) -> None:
    interval = 1.0 / load.rate
    next_at = time.monotonic()
    while time.monotonic() < load.deadline and not os.path.exists(load.stop_file):
        try:
            with urllib.request.urlopen(url, context=load.context, timeout=5) as answer:  # noqa: S310 - https checked
                answer.read()
                tally.record(url, answer.status, answer.headers.get("X-App-Version", "?"))
        except urllib.error.HTTPError as exc:
            tally.record(url, exc.code, exc.headers.get("X-App-Version", "?") if exc.headers else "?")
        except (OSError, ssl.SSLError) as exc:
            tally.record(url, None, "", f"{type(exc).__name__}: {exc}")
        next_at += interval
        time.sleep(max(0.0, next_at - time.monotonic()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", action="append", required=True)
    parser.add_argument("--cafile", required=True)
    parser.add_argument("--rate", type=float, default=10.0, help="requests per second per URL (at most 100)")
    parser.add_argument("--max-seconds", type=float, default=300.0, help="hard stop (at most 900)")
    parser.add_argument("--stop-file", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    if not 0 < args.rate <= 100 or not 0 < args.max_seconds <= 900:
        parser.error("--rate must be in (0, 100] and --max-seconds in (0, 900]")
    if not all(url.startswith("https://") for url in args.url):
        parser.error("--url must be https:// URLs")
    load = Load(
        ssl.create_default_context(cafile=args.cafile), args.rate, time.monotonic() + args.max_seconds, args.stop_file
    )
    tally = Tally()
    started = time.time()
    threads = [threading.Thread(target=hammer, args=(url, load, tally), daemon=True) for url in args.url]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(args.max_seconds + 10)
    summary = tally.as_dict(started, time.time())
    summary["stopped_by"] = "stop-file" if os.path.exists(args.stop_file) else "max-seconds"
    with open(args.out, "w", encoding="utf-8") as handle:
        json.dump(summary, handle, indent=2)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
