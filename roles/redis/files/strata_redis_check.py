# Installed by strata.deploy.redis (Ansible) - local changes are overwritten.
"""Check a Redis or Sentinel configuration file, or an ACL file, with redis-server/redis-sentinel themselves.

    python3 strata_redis_check.py server FILE         FILE is a redis-server configuration (an include file)
    python3 strata_redis_check.py server-acl FILE     FILE is a redis-server ACL file (aclfile)
    python3 strata_redis_check.py sentinel FILE       FILE is a redis-sentinel configuration
    python3 strata_redis_check.py sentinel-acl FILE   FILE is a redis-sentinel ACL file

Starts a throwaway instance on a unix socket in a temporary folder (no TCP port, no persistence) that loads
FILE. Redis parses the configuration, and loads the ACL file strictly (unknown commands and categories too),
before it serves its first command: an answer to PING proves the file loads; an exit prints Redis's own error.
The instance is then stopped. Exit status 0 when the file loads, 1 when it does not, 2 on usage errors.
At most --timeout seconds (default 10).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

BINARIES = {"server": "redis-server", "server-acl": "redis-server", "sentinel": "redis-sentinel",
            "sentinel-acl": "redis-sentinel"}

# Log lines that say nothing about the file: notices and the machine's overcommit warning.
NOISE = re.compile(r"^\d+:[CMX] .* [*.-] |oO0OoO0OoO0Oo|Redis version=|Memory overcommit")


def quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def instance_config(kind: str, path: str, folder: str, sock: str) -> str:
    lines = []
    if kind in ("server", "sentinel"):
        lines.append(f"include {quote(path)}")
    else:
        lines.append(f"aclfile {quote(path)}")
    # after the include: these win (last line wins), so the check never touches the real instance's files/ports
    lines += [
        "port 0",
        f"unixsocket {quote(sock)}",
        "unixsocketperm 700",
        f"dir {quote(folder)}",
        'logfile ""',
        f"pidfile {quote(os.path.join(folder, 'check.pid'))}",
        "tls-port 0",
        "daemonize no",
    ]
    if kind.startswith("server"):
        lines += ['save ""', "appendonly no", "supervised no"]
    return "\n".join(lines) + "\n"


def answers(sock_path: str) -> bool:
    """True once the instance answers a command (any answer: -NOAUTH counts, it comes from the event loop)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(1)
            sock.connect(sock_path)
            sock.sendall(b"PING\r\n")
            return bool(sock.recv(64))
    except OSError:
        return False


def check(kind: str, path: str, timeout: float) -> int:
    binary = shutil.which(BINARIES[kind], path=os.environ.get("PATH", "") + ":/usr/bin:/usr/sbin")
    if not binary:
        print(f"strata-redis-check: {BINARIES[kind]} is not installed", file=sys.stderr)
        return 2
    if not os.path.isfile(path):
        print(f"strata-redis-check: {path} does not exist", file=sys.stderr)
        return 2
    folder = tempfile.mkdtemp(prefix="strata-redis-check.")
    try:
        sock = os.path.join(folder, "check.sock")
        conf = os.path.join(folder, "check.conf")
        with open(conf, "w", encoding="utf-8") as handle:
            handle.write(instance_config(kind, os.path.abspath(path), folder, sock))
        log = os.path.join(folder, "out.log")
        with open(log, "wb") as out:
            proc = subprocess.Popen([binary, conf], stdout=out, stderr=subprocess.STDOUT, cwd=folder,
                                    start_new_session=True)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    with open(log, encoding="utf-8", errors="replace") as handle:
                        output = "\n".join(line for line in handle.read().splitlines() if not NOISE.search(line))
                    print(f"{path}: {BINARIES[kind]} refuses it:\n{output.strip()}", file=sys.stderr)
                    return 1
                if answers(sock):
                    print(f"{path}: loaded by {BINARIES[kind]}")
                    return 0
                time.sleep(0.05)
            print(f"{path}: {BINARIES[kind]} did not answer within {timeout}s", file=sys.stderr)
            return 1
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=sorted(BINARIES))
    parser.add_argument("file")
    parser.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args()
    return check(args.kind, args.file, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
