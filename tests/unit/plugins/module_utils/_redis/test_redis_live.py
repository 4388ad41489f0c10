"""The RESP client against real redis-server and redis-sentinel processes on 127.0.0.1, and the ``redis_lab``
fixture shared with tests/unit/plugins/modules/test_redis_sentinel.py (which loads this file by path).

The lab: three redis-server (ACL file: ``default`` off, an admin, a replication, a Sentinel and an app user; no
replication configured) and three redis-sentinel processes (ACL file too; they monitor nothing yet). Every
process is started in its own process group and stopped at teardown by its id; every wait is bounded; all
traffic stays on 127.0.0.1. Missing binaries FAIL the tests with a message saying what to install.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from ansible_collections.strata.deploy.plugins.module_utils._redis.client import (
    RedisAuthError,
    RedisClient,
    RedisConnectionError,
    RedisPermissionError,
    RedisProtocolError,
    RedisReplyError,
    RedisTLSError,
    TLSOptions,
    encode,
    shown,
)
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

START_TIMEOUT = 10.0
MASTER_NAME = "mymaster"
ADMIN = ("strata-admin", "admin-secret-1")
REPLICATION = ("strata-replication", "replication-secret-1")
SENTINEL = ("strata-sentinel", "sentinel-secret-1")
APP = ("app", "app-secret-1")

SENTINEL_ON_REDIS = (
    "resetchannels &__sentinel__:hello -@all +multi +exec +slaveof +replicaof +ping +subscribe +config|rewrite +role "
    "+publish +info +client|setname +client|kill +script|kill"
)
SENTINEL_ON_SENTINEL = (
    "-@all +auth +hello +ping +role +command +client|getname +client|id +client|setname "
    "+sentinel|get-master-addr-by-name +sentinel|master +sentinel|myid +sentinel|replicas +sentinel|sentinels "
    "+sentinel|is-master-down-by-addr"
)


def find_binary(name: str) -> str:
    path = shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/bin", "/usr/sbin"]))
    if not path:
        pytest.fail(
            f"{name} not found: install Debian's redis-server and redis-sentinel (`apt-get install "
            "--no-install-recommends redis-server redis-sentinel redis-tools`; lab/host-deps.sh should list them)",
            pytrace=False,
        )
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.05) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def sha(password: str) -> str:
    return hashlib.sha256(password.encode()).hexdigest()


def acl_user(user: tuple[str, str], rules: str) -> str:
    return f"user {user[0]} on #{sha(user[1])} {rules}\n"


@dataclass
class Process:
    name: str
    port: int
    root: Path
    argv: list[str]
    proc: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.root / "out.log"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                self.argv, stdout=out, stderr=subprocess.STDOUT, cwd=self.root, start_new_session=True
            )

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop this process (by its own process group id); SIGKILL when it lingers."""
        if self.proc is None:
            return
        for signum, grace in ((sig, 5.0), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signum)
            try:
                self.proc.wait(timeout=grace)
                break
            except subprocess.TimeoutExpired:
                continue
        self.proc = None

    def running(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            tail = self.log.read_text()[-2000:]
            pytest.fail(f"{self.name} exited with {self.proc.returncode}: {tail}", pytrace=False)
        return self.proc is not None


@dataclass
class RedisLab:
    root: Path
    cli_binary: str
    nodes: list[Process] = field(default_factory=list)
    sentinels: list[Process] = field(default_factory=list)

    # -- an independent view (redis-cli), so assertions do not trust the code under test ------------------

    def cli(self, port: int, *args: str, user: tuple[str, str] = ADMIN, timeout: float = 5) -> str:
        env = dict(os.environ, REDISCLI_AUTH=user[1])
        done = subprocess.run(
            [self.cli_binary, "-h", "127.0.0.1", "-p", str(port), "--user", user[0], *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            check=False,
        )
        return (done.stdout + done.stderr).strip()

    def ready(self, process: Process) -> bool:
        process.running()
        try:
            return self.cli(process.port, "PING", timeout=2) == "PONG"
        except subprocess.TimeoutExpired:
            return False

    def start(self, process: Process) -> None:
        process.start()
        wait_until(lambda: self.ready(process), START_TIMEOUT, f"{process.name} to answer PING")

    def role(self, node: Process) -> list[str]:
        return self.cli(node.port, "ROLE").splitlines()

    def master_of(self, sentinel: Process) -> str:
        answer = self.cli(sentinel.port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME).splitlines()
        return ":".join(answer) if len(answer) == 2 else ""

    def sentinel_field(self, sentinel: Process, name: str) -> str:
        lines = self.cli(sentinel.port, "SENTINEL", "MASTER", MASTER_NAME).splitlines()
        info = dict(zip(lines[::2], lines[1::2], strict=False))
        return info.get(name, "")

    def node_by_address(self, address: str) -> Process:
        return next(n for n in self.nodes if n.address == address)

    def sentinel_list(self) -> list[str]:
        return [s.address for s in self.sentinels]

    def bootstrap(self, master: int = 0, down_after: int = 1000) -> None:
        """Replication and monitoring set up by hand (redis-cli), for tests of what comes after."""
        primary = self.nodes[master]
        for node in self.nodes:
            if node is not primary:
                assert self.cli(node.port, "REPLICAOF", "127.0.0.1", str(primary.port)) == "OK"
        for sentinel in self.sentinels:
            monitor = ("SENTINEL", "MONITOR", MASTER_NAME, "127.0.0.1", str(primary.port), "2")
            assert self.cli(sentinel.port, *monitor) == "OK"
            assert (
                self.cli(
                    sentinel.port,
                    "SENTINEL",
                    "SET",
                    MASTER_NAME,
                    "down-after-milliseconds",
                    str(down_after),
                    "failover-timeout",
                    "10000",
                    "auth-user",
                    SENTINEL[0],
                    "auth-pass",
                    SENTINEL[1],
                )
                == "OK"
            )
        self.wait_settled(primary)

    def wait_settled(self, master: Process, timeout: float = 30) -> None:
        """Until every replica's link is up and every Sentinel sees both replicas as healthy and its 2 peers."""

        def settled() -> bool:
            for node in self.nodes:
                if node is not master and node.proc is not None:
                    role = self.role(node)
                    if role[:4] != ["slave", "127.0.0.1", str(master.port), "connected"]:
                        return False
            for sentinel in self.sentinels:
                if self.master_of(sentinel) != master.address:
                    return False
                if self.sentinel_field(sentinel, "num-other-sentinels") != "2":
                    return False
                replicas = self.cli(sentinel.port, "SENTINEL", "REPLICAS", MASTER_NAME)
                up = [n for n in self.nodes if n is not master and n.proc is not None]
                if replicas.count("master-link-status\nok") < len(up):
                    return False
            return True

        wait_until(settled, timeout, f"replication from {master.address} and Sentinel discovery", interval=0.2)


REDIS_CONFIG = """\
port {port}
bind 127.0.0.1
protected-mode yes
dir {root}
save ""
appendonly no
aclfile {acl}
masteruser {repl_user}
masterauth {repl_pass}
repl-diskless-sync yes
repl-diskless-sync-delay 0
"""

SENTINEL_CONFIG = """\
port {port}
bind 127.0.0.1
dir {root}
aclfile {acl}
sentinel resolve-hostnames no
sentinel sentinel-user {user}
sentinel sentinel-pass {password}
"""


def make_lab(root: Path) -> RedisLab:
    server, sentinel_binary, cli = find_binary("redis-server"), find_binary("redis-sentinel"), find_binary("redis-cli")
    redis_acl = root / "users.acl"
    redis_acl.write_text(
        "user default off\n"
        + acl_user(ADMIN, "~* &* +@all")
        + acl_user(REPLICATION, "-@all +psync +replconf +ping")
        + acl_user(SENTINEL, SENTINEL_ON_REDIS)
        + acl_user(APP, "resetkeys ~app:* resetchannels &app:* +@all -@dangerous +role")
    )
    sentinel_acl = root / "sentinel-users.acl"
    sentinel_acl.write_text(
        "user default off\n"
        + acl_user(ADMIN, "~* &* +@all")
        + acl_user(SENTINEL, SENTINEL_ON_SENTINEL)
        + acl_user(APP, "-@all +auth +hello +ping +sentinel|get-master-addr-by-name +sentinel|sentinels")
    )
    lab = RedisLab(root, cli)
    for i in range(1, 4):
        folder = root / f"redis{i}"
        folder.mkdir()
        port = free_port()
        conf = folder / "redis.conf"
        conf.write_text(
            REDIS_CONFIG.format(
                port=port, root=folder, acl=redis_acl, repl_user=REPLICATION[0], repl_pass=REPLICATION[1]
            )
        )
        lab.nodes.append(Process(f"redis{i}", port, folder, [server, str(conf)]))
    for i in range(1, 4):
        folder = root / f"sentinel{i}"
        folder.mkdir()
        port = free_port()
        conf = folder / "sentinel.conf"
        conf.write_text(
            SENTINEL_CONFIG.format(port=port, root=folder, acl=sentinel_acl, user=SENTINEL[0], password=SENTINEL[1])
        )
        lab.sentinels.append(Process(f"sentinel{i}", port, folder, [sentinel_binary, str(conf)]))
    return lab


@pytest.fixture
def redis_lab(tmp_path: Path) -> Iterator[RedisLab]:
    """Three redis-server and three redis-sentinel on free ports of 127.0.0.1, nothing replicated or monitored."""
    lab = make_lab(tmp_path)
    try:
        for process in lab.nodes + lab.sentinels:
            lab.start(process)
        yield lab
    finally:
        for process in lab.sentinels + lab.nodes:
            process.stop()


@pytest.fixture
def node(redis_lab: RedisLab) -> Process:
    return redis_lab.nodes[0]


def admin_client(port: int, **kwargs) -> RedisClient:
    return RedisClient("127.0.0.1", port, username=ADMIN[0], password=ADMIN[1], **kwargs)


# -- the client against a real server ---------------------------------------------------------------------


def test_auth_and_the_reply_types(node):
    with admin_client(node.port) as client:
        assert client.execute("PING") == "PONG"
        assert client.execute("SET", "app:k", "x" * 100_000) == "OK"
        assert client.execute("GET", "app:k") == "x" * 100_000
        assert client.execute("GET", "app:missing") is None
        assert client.execute("INCR", "app:n") == 1
        assert client.execute("RPUSH", "app:l", "a", "b") == 2
        assert client.execute("LRANGE", "app:l", 0, -1) == ["a", "b"]
        assert client.execute("ROLE")[0] == "master"
        replies = client.pipeline([("INCR", "app:n"), ("LPOP", "app:k"), ("INCR", "app:n")])
        assert replies[0] == 2 and isinstance(replies[1], RedisReplyError) and replies[1].code == "WRONGTYPE"
        assert replies[2] == 3, "an error reply in a pipeline does not break the next reply"


def test_wrong_password_is_an_auth_error_that_does_not_show_the_password(node):
    wrong = "not-the-password"
    with pytest.raises(RedisAuthError) as failed:
        RedisClient("127.0.0.1", node.port, username=ADMIN[0], password=wrong).connect()
    assert failed.value.code == "WRONGPASS"
    assert wrong not in str(failed.value)
    assert node.address in str(failed.value)


def test_default_user_is_off_so_no_auth_means_noauth(node):
    with RedisClient("127.0.0.1", node.port) as client, pytest.raises(RedisAuthError) as failed:
        client.execute("GET", "app:k")
    assert failed.value.code == "NOAUTH"


def test_acl_refusals_are_permission_errors(node):
    with RedisClient("127.0.0.1", node.port, username=APP[0], password=APP[1]) as client:
        assert client.execute("SET", "app:ok", "1") == "OK"
        for command in (("FLUSHALL",), ("CONFIG", "GET", "maxmemory"), ("KEYS", "*"), ("SET", "other:key", "1")):
            with pytest.raises(RedisPermissionError) as refused:
                client.execute(*command)
            assert refused.value.code == "NOPERM", command


def test_refused_port_is_a_connection_error_after_bounded_retries():
    port = free_port()
    sleeps: list[float] = []
    client = RedisClient("127.0.0.1", port, connect_retries=3, sleep=sleeps.append, jitter=lambda: 1.0)
    with pytest.raises(RedisConnectionError) as failed:
        client.connect()
    assert "after 4 attempt(s)" in str(failed.value)
    assert sleeps == [0.1, 0.2, 0.4], "exponential backoff, bounded by the number of retries"


def test_a_silent_server_times_out():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        accepted: list[socket.socket] = []
        threading.Thread(target=lambda: accepted.append(listener.accept()[0]), daemon=True).start()
        client = RedisClient("127.0.0.1", listener.getsockname()[1], timeout=0.3, connect_retries=0)
        start = time.monotonic()
        with pytest.raises(RedisConnectionError, match=r"no answer within 0\.3s to PING"):
            client.execute("PING")
        assert time.monotonic() - start < 2
        for sock in accepted:
            sock.close()


def test_not_a_redis_port_is_a_protocol_error():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)

        def answer_http() -> None:
            conn, _addr = listener.accept()
            conn.recv(1024)
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
            conn.close()

        threading.Thread(target=answer_http, daemon=True).start()
        with pytest.raises(RedisProtocolError, match="not a RESP2 reply"):
            RedisClient("127.0.0.1", listener.getsockname()[1], timeout=2).execute("PING")


def test_encoding_and_shown_commands_hide_secrets():
    assert encode(("SET", "k", 1)) == b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\n1\r\n"
    with pytest.raises(TypeError):
        encode(("SET", "k", True))
    assert shown(("AUTH", "user", "secret")) == "AUTH user ..."
    assert shown(("SENTINEL", "SET", "m", "auth-pass", "secret")) == "SENTINEL SET ..."
    assert shown(("CONFIG", "SET", "masterauth", "secret")) == "CONFIG SET ..."
    assert shown(("GET", "k")) == "GET k"


# -- TLS -------------------------------------------------------------------------------------------------------


def make_ca_and_server_cert(folder: Path, name: str) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1, valid for one day: (ca, cert, key)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = (folder / f"{name}-ca.pem", folder / f"{name}.pem", folder / f"{name}.key")
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return paths


@pytest.fixture
def tls_node(tmp_path: Path) -> Iterator[tuple[Process, Path, Path]]:
    """redis-server with TLS only (tls-port, port 0) and an ACL file; yields (process, its CA, another CA)."""
    server = find_binary("redis-server")
    ca, cert, key = make_ca_and_server_cert(tmp_path, "server")
    other_ca = make_ca_and_server_cert(tmp_path, "other")[0]
    (tmp_path / "users.acl").write_text("user default off\n" + acl_user(ADMIN, "~* &* +@all"))
    port = free_port()
    argv = [
        server, "--port", "0", "--tls-port", str(port), "--tls-cert-file", str(cert), "--tls-key-file", str(key),
        "--tls-ca-cert-file", str(ca), "--tls-auth-clients", "no", "--bind", "127.0.0.1", "--dir", str(tmp_path),
        "--save", "", "--aclfile", str(tmp_path / "users.acl"),
    ]  # fmt: skip
    process = Process("tls", port, tmp_path, argv)
    process.start()
    try:

        def up() -> bool:
            process.running()
            try:
                with admin_client(port, tls=TLSOptions(ca_file=str(ca)), connect_retries=0) as client:
                    return client.execute("PING") == "PONG"
            except RedisConnectionError:
                return False

        wait_until(up, START_TIMEOUT, "redis-server with TLS")
        yield process, ca, other_ca
    finally:
        process.stop()


def test_tls_with_the_servers_ca(tls_node):
    process, ca, _other = tls_node
    with admin_client(process.port, tls=TLSOptions(ca_file=str(ca))) as client:
        assert client.execute("ROLE")[0] == "master"


def test_tls_with_another_ca_is_a_tls_error(tls_node):
    process, _ca, other = tls_node
    with pytest.raises(RedisTLSError, match="TLS handshake failed"):
        admin_client(process.port, tls=TLSOptions(ca_file=str(other)), connect_retries=0).connect()


def test_plain_text_to_a_tls_port_fails_cleanly(tls_node):
    process, _ca, _other = tls_node
    with pytest.raises(RedisConnectionError):
        admin_client(process.port, timeout=1, connect_retries=0).connect()
