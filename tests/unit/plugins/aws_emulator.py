"""An AWS EMULATOR for the ALB tests: moto's server mode (``moto_server`` from requirements.txt) on 127.0.0.1, and a
tiny HTTP proxy in front of it that the tests use to inject throttling (moto cannot).

This is an emulator, not AWS: it proves the calls, their order, the compare-and-set and the retries, not AWS's own
limits (moto accepts a weight of 1000, for instance; the client checks 0..999 itself). docs/traffic-cloud.md says
how to run the same module against a real account.

``start_emulator(folder)`` starts ``moto_server`` on a free port (its own process group, stopped by ``close``) and
the proxy; ``build_alb(emulator)`` creates a VPC, two subnets, an ALB, a listener, three target groups and two
rules: ``rule`` (blue 999 / green 0, the one the tests weigh) and ``other_rule`` (forwarding to ``other``).
"""

from __future__ import annotations

import http.client
import importlib.util
import sys
import threading
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3

REGION = "us-east-1"
ACCESS_KEY = "emulator-access-key"
SECRET_KEY = "emulator-secret-key"  # noqa: S105 - moto accepts any key; not a secret
THROTTLE_BODY = (
    '<ErrorResponse xmlns="http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/"><Error><Type>Sender</Type>'
    "<Code>Throttling</Code><Message>Rate exceeded</Message></Error><RequestId>emulator-throttle</RequestId>"
    "</ErrorResponse>"
)


def _load_root() -> Any:
    name = "strata_unit_conftest"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parents[1] / "conftest.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


root = _load_root()


class ThrottlingProxy:
    """Forwards every request to moto; ``throttle(action, n)`` answers the next ``n`` calls of ``action`` (n < 0:
    all of them) with AWS's ``Throttling`` error instead. ``calls`` counts the calls per action that reached moto."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.lock = threading.Lock()
        self.pending: dict[str, int] = {}
        self.calls: Counter[str] = Counter()
        self.throttled: Counter[str] = Counter()
        self.canned: dict[str, list[Any]] = {}  # action -> [calls to let through first, answers left, XML body]
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                action = urllib.parse.parse_qs(body.decode(errors="replace")).get("Action", [""])[0]
                canned = proxy.canned_answer(action)
                if canned is not None:
                    data = canned.encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "text/xml")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                if proxy.take(action):
                    data = THROTTLE_BODY.encode()
                    self.send_response(400)
                    self.send_header("Content-Type", "text/xml")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                conn = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=10)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                    conn.request(self.command, self.path, body=body, headers=headers)
                    answer = conn.getresponse()
                    data = answer.read()
                    self.send_response(answer.status)
                    for key, value in answer.getheaders():
                        if key.lower() not in ("content-length", "connection", "transfer-encoding", "server", "date"):
                            self.send_header(key, value)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                finally:
                    conn.close()

            do_POST = _forward
            do_GET = _forward

            def log_message(self, format: str, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def take(self, action: str) -> bool:
        with self.lock:
            left = self.pending.get(action, 0)
            if left == 0:
                self.calls[action] += 1
                return False
            if left > 0:
                self.pending[action] = left - 1
            self.throttled[action] += 1
            return True

    def canned_answer(self, action: str) -> str | None:
        with self.lock:
            entry = self.canned.get(action)
            if entry is None:
                return None
            if entry[0] > 0:
                entry[0] -= 1
                return None
            if entry[1] == 0:
                return None
            entry[1] -= 1 if entry[1] > 0 else 0
            return entry[2]

    def answer(self, action: str, body: str, *, skip: int = 0, count: int = -1) -> None:
        """Answer ``action`` with ``body`` (after letting ``skip`` calls through), ``count`` times (< 0: always)."""
        with self.lock:
            self.canned[action] = [skip, count, body]

    def throttle(self, action: str, count: int) -> None:
        with self.lock:
            self.pending[action] = count

    def reset(self) -> None:
        with self.lock:
            self.pending.clear()
            self.canned.clear()
            self.calls.clear()
            self.throttled.clear()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=2)


@dataclass
class Emulator:
    proc: Any
    port: int
    proxy: ThrottlingProxy
    log: Path

    @property
    def direct_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The proxy's URL: what the modules under test are given."""
        return f"http://127.0.0.1:{self.proxy.port}"

    def client(self, service: str) -> Any:
        """A boto3 client straight to moto (the tests' own independent reads and fixtures)."""
        return boto3.client(
            service,
            region_name=REGION,
            endpoint_url=self.direct_url,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        )

    def options(self, **extra: Any) -> dict[str, Any]:
        """The module options that reach the emulator through the proxy."""
        return {
            "region": REGION,
            "endpoint_url": self.url,
            "access_key": ACCESS_KEY,
            "secret_key": SECRET_KEY,
            **extra,
        }

    def reset(self) -> None:
        """Forget every resource (moto's reset API) and the proxy's counters and throttles."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("POST", "/moto-api/reset")
            conn.getresponse().read()
        finally:
            conn.close()
        self.proxy.reset()

    def close(self) -> None:
        self.proxy.close()
        root.stop_process_group(self.proc)


def start_emulator(folder: Path) -> Emulator:
    binary = str(Path(sys.executable).parent / "moto_server")
    port = root.free_port()
    log = folder / "moto.log"
    proc = root.start_process([binary, "-H", "127.0.0.1", "-p", str(port)], log, folder)
    try:

        def up() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"moto_server exited with {proc.returncode}: {log.read_text()}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
                conn.request("GET", "/moto-api/")
                conn.getresponse().read()
                conn.close()
                return True
            except OSError:
                return False

        root.wait_until(up, 30.0, f"moto_server (AWS emulator) on 127.0.0.1:{port}", interval=0.1)
    except BaseException:
        root.stop_process_group(proc)
        raise
    return Emulator(proc, port, ThrottlingProxy(port), log)


@dataclass
class AlbFixture:
    lb: str
    listener: str
    rule: str
    other_rule: str
    tgs: dict[str, str] = field(default_factory=dict)  # name -> ARN


def build_alb(emulator: Emulator, prefix: str) -> AlbFixture:
    """An ALB with a listener, target groups ``<prefix>blue``/``green``/``other`` and two weighted rules."""
    ec2 = emulator.client("ec2")
    elb = emulator.client("elbv2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=f"{REGION}{zone}")["Subnet"][
            "SubnetId"
        ]
        for i, zone in ((1, "a"), (2, "b"))
    ]
    lb = elb.create_load_balancer(Name=f"{prefix}web", Subnets=subnets)["LoadBalancers"][0]["LoadBalancerArn"]
    tgs = {
        name: elb.create_target_group(Name=f"{prefix}{name}", Protocol="HTTP", Port=80, VpcId=vpc)["TargetGroups"][0][
            "TargetGroupArn"
        ]
        for name in ("blue", "green", "other")
    }
    listener = elb.create_listener(
        LoadBalancerArn=lb,
        Protocol="HTTP",
        Port=80,
        DefaultActions=[{"Type": "forward", "TargetGroupArn": tgs["blue"]}],
    )["Listeners"][0]["ListenerArn"]

    def rule(priority: int, path: str, groups: dict[str, int]) -> str:
        forward = {
            "TargetGroups": [{"TargetGroupArn": tgs[n], "Weight": w} for n, w in groups.items()],
            "TargetGroupStickinessConfig": {"Enabled": False},
        }
        return elb.create_rule(
            ListenerArn=listener,
            Priority=priority,
            Conditions=[{"Field": "path-pattern", "Values": [path]}],
            Actions=[{"Type": "forward", "ForwardConfig": forward}],
        )["Rules"][0]["RuleArn"]

    main = rule(10, "/app/*", {"blue": 999, "green": 0})
    other = rule(20, "/other/*", {"other": 1})
    return AlbFixture(lb=lb, listener=listener, rule=main, other_rule=other, tgs=tgs)


def rule_weights(emulator: Emulator, rule_arn: str) -> dict[str, int]:
    """``target group name -> weight`` of a rule, read straight from moto (independently of the code under test)."""
    rule = emulator.client("elbv2").describe_rules(RuleArns=[rule_arn])["Rules"][0]
    forward = next(a for a in rule["Actions"] if a["Type"] == "forward")
    return {
        g["TargetGroupArn"].split(":targetgroup/")[1].split("/")[0]: g["Weight"]
        for g in forward["ForwardConfig"]["TargetGroups"]
    }


def all_rules(emulator: Emulator, listener: str) -> list[dict[str, Any]]:
    return emulator.client("elbv2").describe_rules(ListenerArn=listener)["Rules"]


def draining_answer(target_id: str, port: int) -> str:
    """A DescribeTargetHealth answer where ``target_id:port`` is draining (moto deregisters at once)."""
    return (
        '<DescribeTargetHealthResponse xmlns="http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/">'
        "<DescribeTargetHealthResult><TargetHealthDescriptions><member>"
        f"<Target><Id>{target_id}</Id><Port>{port}</Port></Target><HealthCheckPort>{port}</HealthCheckPort>"
        "<TargetHealth><State>draining</State><Reason>Target.DeregistrationInProgress</Reason></TargetHealth>"
        "</member></TargetHealthDescriptions></DescribeTargetHealthResult>"
        "<ResponseMetadata><RequestId>emulator-draining</RequestId></ResponseMetadata></DescribeTargetHealthResponse>"
    )
