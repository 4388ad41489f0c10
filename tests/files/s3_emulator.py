"""An S3 EMULATOR for tests: moto's server behind HAProxy's TLS, on an address the test's containers reach.

This is not AWS. pgBackRest's S3 repository is tested against it because no real S3 is reachable here; the
emulator answers the S3 API (signatures are not checked, any key works). moto's own TLS (werkzeug) closes
connections without a TLS close_notify, which OpenSSL 3 clients such as pgBackRest report as "unexpected eof
while reading"; so moto listens in plain HTTP on 127.0.0.1 and this machine's HAProxy terminates TLS for it.

  s3_emulator.py start --host ADDR --port PORT --cert CRT --key KEY --ca CA --bucket NAME --pidfile F --log F
                       [--endpoint-name NAME ...]
      stops servers left by an earlier run (same pidfile), starts moto_server of this Python's environment on
      127.0.0.1:PORT+1 and HAProxy on ADDR:PORT (TLS with CRT/KEY), each in its own session; waits until the
      S3 API answers through TLS (at most 30 s), creates the bucket; prints one JSON line.
  s3_emulator.py ls --host ADDR --port PORT --ca CA --bucket NAME [--prefix P]
      lists the objects under a prefix; prints JSON {"count": N, "keys": [...]} (at most 1000 keys).
  s3_emulator.py stop --pidfile F
      stops both servers (their process groups); nothing to stop is not an error.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def _client(args: argparse.Namespace):
    import boto3  # noqa: PLC0415 - only the commands that talk S3 need it

    return boto3.client(
        "s3",
        endpoint_url=f"https://{args.host}:{args.port}",
        region_name="us-east-1",
        aws_access_key_id="emulator",
        aws_secret_access_key="emulator",  # noqa: S106 - the emulator checks no signature
        verify=args.ca,
    )


def _stop(pidfile: Path) -> bool:
    """Stop the process groups named in pidfile (one pid a line); True when one was running."""
    try:
        pids = [int(line) for line in pidfile.read_text().split()]
    except (OSError, ValueError):
        return False
    pidfile.unlink(missing_ok=True)
    stopped = False
    for pid in pids:
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
        stopped = True
        for _attempt in range(50):
            try:
                os.killpg(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            os.killpg(pid, signal.SIGKILL)
    return stopped


HAPROXY_CFG = """global
    log stderr format raw local0 notice
defaults
    mode http
    log global
    timeout connect 5s
    timeout client 120s
    timeout server 120s
frontend s3
    bind {host}:{port} ssl crt {pem}
    default_backend moto
backend moto
    server moto 127.0.0.1:{moto_port}
"""


def _spawn(argv: list[str], log_path: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env
        )


def start(args: argparse.Namespace) -> dict:
    from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415 - with boto3, only here

    pidfile = Path(args.pidfile)
    stale = _stop(pidfile)
    work = pidfile.parent
    moto_port = args.port + 1
    # Requests for these hosts name the bucket in the path (pgBackRest's uri-style=path), not in the host name.
    names = [args.host, *args.endpoint_name]
    endpoints = ",".join(f"https://{n}{p}" for n in names for p in ("", f":{args.port}"))
    moto = _spawn(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(moto_port)],
        args.log,
        dict(os.environ, MOTO_S3_CUSTOM_ENDPOINTS=endpoints),
    )
    pem = work / "s3-emulator.pem"
    pem.write_text(Path(args.cert).read_text() + Path(args.key).read_text())
    pem.chmod(0o600)
    cfg = work / "s3-emulator-haproxy.cfg"
    cfg.write_text(HAPROXY_CFG.format(host=args.host, port=args.port, pem=pem, moto_port=moto_port))
    haproxy = _spawn(["haproxy", "-db", "-f", str(cfg)], args.log)
    pidfile.write_text(f"{moto.pid}\n{haproxy.pid}\n")
    client = _client(args)
    deadline = time.monotonic() + 30
    while True:
        for name, proc in (("moto_server", moto), ("haproxy", haproxy)):
            if proc.poll() is not None:
                _stop(pidfile)
                raise SystemExit(f"{name} exited with {proc.returncode}; see {args.log}")
        try:
            client.list_buckets()
            break
        except (BotoCoreError, ClientError) as exc:  # "not up yet" until the deadline
            if time.monotonic() > deadline:
                _stop(pidfile)
                raise SystemExit(
                    f"the S3 API did not answer over TLS on {args.host}:{args.port} in 30 s: {exc}"
                ) from exc
            time.sleep(0.3)
    client.create_bucket(Bucket=args.bucket)
    return {
        "pids": [moto.pid, haproxy.pid],
        "endpoint": f"https://{args.host}:{args.port}",
        "bucket": args.bucket,
        "replaced_stale": stale,
    }


def ls(args: argparse.Namespace) -> dict:
    reply = _client(args).list_objects_v2(Bucket=args.bucket, Prefix=args.prefix, MaxKeys=1000)
    keys = [obj["Key"] for obj in reply.get("Contents", [])]
    return {"count": len(keys), "keys": keys}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("start", "ls"):
        cmd = sub.add_parser(name)
        cmd.add_argument("--host", required=True)
        cmd.add_argument("--port", type=int, required=True)
        cmd.add_argument("--ca", required=True, help="CA file that signed the server's certificate")
        cmd.add_argument("--bucket", required=True)
    sub.choices["start"].add_argument("--cert", required=True)
    sub.choices["start"].add_argument("--key", required=True)
    sub.choices["start"].add_argument("--pidfile", required=True)
    sub.choices["start"].add_argument("--log", required=True)
    sub.choices["start"].add_argument(
        "--endpoint-name", action="append", default=[], help="host name the clients use for the server (repeatable)"
    )
    sub.choices["ls"].add_argument("--prefix", default="")
    stop_cmd = sub.add_parser("stop")
    stop_cmd.add_argument("--pidfile", required=True)
    args = parser.parse_args()
    if args.command == "start":
        result = start(args)
    elif args.command == "ls":
        result = ls(args)
    else:
        result = {"stopped": _stop(Path(args.pidfile))}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
