"""Test-only webhook receiver for the monitoring scenario: records every POST body, one JSON line per request.

    webhook_sink.py ADDRESS PORT OUTFILE

Each line is {"received": <unix time>, "path": ..., "body": <the parsed JSON body>}. Started by verify.yml under
systemd-run with RuntimeMaxSec, so it stops by itself.
"""

from __future__ import annotations

import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

MAX_BODY = 1 << 20


def main() -> int:
    address, port, out = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = min(int(self.headers.get("Content-Length", "0")), MAX_BODY)
            raw = self.rfile.read(length)
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode(errors="replace")
            with out.open("a") as handle:
                handle.write(json.dumps({"received": time.time(), "path": self.path, "body": body}) + "\n")
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer((address, port), Handler)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
