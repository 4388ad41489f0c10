# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bounded HTTPS load for the nginx scenario: COUNT sequential GETs, a new connection each, at most SECONDS.

    python3 load.py URL CAFILE COUNT SECONDS OUT

Writes one line per request to OUT: "<unix time of the start> <HTTP status or 000> <hostname from the JSON body or ->".
"""

from __future__ import annotations

import http.client
import json
import ssl
import sys
import time
import urllib.parse


def one(url: urllib.parse.SplitResult, context: ssl.SSLContext) -> tuple[int, str]:
    conn = http.client.HTTPSConnection(url.hostname, url.port or 443, context=context, timeout=5)
    try:
        conn.request("GET", url.path or "/")
        response = conn.getresponse()
        body = response.read()
        try:
            host = str(json.loads(body)["hostname"])
        except (ValueError, KeyError, TypeError):
            host = "-"
        return response.status, host
    except (OSError, http.client.HTTPException):
        return 0, "-"
    finally:
        conn.close()


def main() -> int:
    url, cafile, count, seconds, out = sys.argv[1:6]
    target = urllib.parse.urlsplit(url)
    context = ssl.create_default_context(cafile=cafile)
    deadline = time.monotonic() + float(seconds)
    with open(out, "w", encoding="utf-8") as log:
        for _request in range(int(count)):
            if time.monotonic() > deadline:
                break
            started = time.time()
            status, host = one(target, context)
            log.write(f"{started:.6f} {status:03d} {host}\n")
            log.flush()
            time.sleep(0.01)
    return 0


if __name__ == "__main__":
    sys.exit(main())
