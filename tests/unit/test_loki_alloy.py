"""strata.deploy.loki and strata.deploy.alloy, as far as this machine can prove them (no Loki or Alloy binary can be
downloaded here; see the roles' READMEs).

- Loki's configuration, rendered by Ansible's template engine from the role's template: valid YAML with the keys a
  single-binary, filesystem, retention setup needs, listening on loopback only;
- the authenticating proxy: its rendered nginx configuration checked by ``nginx -t`` AND run, in front of a fake
  Loki on 127.0.0.1 - a request without credentials or with a wrong password is refused (401), a user of
  ``loki_proxy_users`` gets Loki's answer, over TLS only;
- Alloy's configuration: rendered for hosts of each tier and parsed by a small parser of the Alloy configuration
  syntax (below): blocks, attributes, and every component reference resolving to a component of the file; labels
  host, tier, environment, job; the sources of each tier; no secret in it;
- each whole role (grafana, loki, alloy) run on this machine in check mode with an unreachable vendor repository
  and no offline folder: it stops in preflight with ONE line naming ``<role>_offline_artifacts_dir``, changed=0;
  the shared vendor_check entry point refuses an offline artifact with a wrong sha256 and accepts a right one.

Traffic stays on 127.0.0.1; every process started here is stopped at teardown.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import find_binary, free_port, start_process, stop_process_group, wait_until
from test_grafana_dashboards import ROOT, render_template

LOKI = ROOT / "roles" / "loki"
ALLOY = ROOT / "roles" / "alloy"
GRAFANA = ROOT / "roles" / "grafana"
PROXY_USERS = [
    {"username": "alloy", "password": "alloy-password-123"},
    {"username": "grafana", "password": "grafana-pw-4567"},
]


# ------------------------------------------------------------------ Loki


def test_rendered_loki_config(tmp_path: Path) -> None:
    text = render_template(
        LOKI,
        tmp_path,
        "config.yml.j2",
        {
            "loki_retention_period": "336h",
            "loki_config_extra": {"limits_config": {"max_streams_per_user": 0}},
        },
    )
    config = yaml.safe_load(text)
    assert config["target"] == "all"
    assert config["auth_enabled"] is False
    assert config["server"]["http_listen_address"] == "127.0.0.1", "Loki has no auth: loopback only"
    assert config["server"]["grpc_listen_address"] == "127.0.0.1"
    assert config["server"]["http_listen_port"] == 3100
    assert config["common"]["storage"]["filesystem"]["chunks_directory"] == "/var/lib/loki/chunks"
    assert config["common"]["ring"]["kvstore"]["store"] == "inmemory"
    (period,) = config["schema_config"]["configs"]
    assert period == {
        "from": "2024-01-01",
        "store": "tsdb",
        "object_store": "filesystem",
        "schema": "v13",
        "index": {"prefix": "index_", "period": "24h"},
    }
    assert config["limits_config"]["retention_period"] == "336h"
    assert config["limits_config"]["max_streams_per_user"] == 0, "loki_config_extra merges"
    assert config["limits_config"]["reject_old_samples"] is True
    assert config["compactor"]["retention_enabled"] is True
    assert config["compactor"]["delete_request_store"] == "filesystem"
    assert config["analytics"]["reporting_enabled"] is False


class FakeLoki:
    """Stands in for Loki on 127.0.0.1: answers every GET with a small JSON naming the path, records pushes."""

    def __init__(self) -> None:
        self.pushes: list[bytes] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, body: bytes, status: int = 200) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                self._answer(json.dumps({"status": "success", "fake_loki_path": self.path}).encode())

            def do_POST(self) -> None:
                outer.pushes.append(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=2)


@dataclass
class Proxy:
    port: int
    ca: Path
    upstream: FakeLoki
    log: Path
    config: Path
    extra: dict[str, Any] = field(default_factory=dict)

    def request(
        self, method: str, path: str, auth: tuple[str, str] | None = None, body: bytes | None = None
    ) -> tuple[int, bytes]:
        context = ssl.create_default_context(cafile=str(self.ca))
        context.check_hostname = False
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=5, context=context)
        headers = {"Connection": "close"}
        if auth:
            headers["Authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()


def make_cert(folder: Path) -> tuple[Path, Path]:
    cert, key = folder / "tls.crt", folder / "tls.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=loki-proxy-test",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


def make_htpasswd(path: Path, users: list[dict[str, str]]) -> None:
    """SHA-512 crypt, the scheme the role asks community.general.htpasswd for."""
    lines = []
    for user in users:
        hashed = subprocess.run(
            ["openssl", "passwd", "-6", "-stdin"],
            input=user["password"],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout.strip()
        lines.append(f"{user['username']}:{hashed}\n")
    path.write_text("".join(lines))


@pytest.fixture(scope="module")
def loki_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    """The proxy's nginx configuration rendered from the role, checked by ``nginx -t``, run in front of a fake Loki
    (one instance for the module's tests; each test reads only what it sent)."""
    tmp_path = tmp_path_factory.mktemp("loki-proxy")
    nginx = find_binary("nginx")
    upstream = FakeLoki()
    cert, key = make_cert(tmp_path)
    htpasswd = tmp_path / "htpasswd"
    make_htpasswd(htpasswd, PROXY_USERS)
    port = free_port()
    render_dir = tmp_path / "render"
    render_dir.mkdir()
    text = render_template(
        LOKI,
        render_dir,
        "proxy-nginx.conf.j2",
        {
            "loki_proxy_listen_address": "127.0.0.1",
            "loki_proxy_port": port,
            "loki_http_port": upstream.port,
            "_loki_proxy_cert": str(cert),
            "_loki_proxy_key": str(key),
            "_loki_proxy_htpasswd": str(htpasswd),
            "_loki_proxy_pid": str(tmp_path / "nginx.pid"),
            # workers must read the temporary folder's files: run them as this test's user
            "_loki_proxy_user": "root",
        },
    )
    # the rendered file as the role writes it, plus temporary-file paths of the test's own (nginx's defaults live
    # under /var/lib/nginx, which may not be writable here)
    temp = tmp_path / "tmp"
    temp.mkdir()
    config = tmp_path / "nginx.conf"
    config.write_text(
        text.replace(
            "http {",
            "http {\n"
            + "".join(
                f"    {kind}_temp_path {temp}/{kind};\n"
                for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
            ),
            1,
        )
    )
    log = tmp_path / "nginx.log"
    checked = subprocess.run([nginx, "-t", "-c", str(config)], capture_output=True, text=True, timeout=30, check=False)
    assert checked.returncode == 0, f"nginx -t refused the rendered proxy configuration:\n{checked.stderr}\n{text}"
    proc = start_process([nginx, "-c", str(config), "-g", "daemon off;"], log, tmp_path)
    proxy = Proxy(port, cert, upstream, log, config)
    try:

        def listening() -> bool:
            if proc.poll() is not None:
                pytest.fail(f"nginx exited with {proc.returncode}: {log.read_text()}", pytrace=False)
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return True
            except OSError:
                return False

        wait_until(listening, 10, f"the Loki proxy on 127.0.0.1:{port}")
        yield proxy
    finally:
        stop_process_group(proc)
        upstream.close()


def test_the_proxy_refuses_requests_without_valid_credentials(loki_proxy: Proxy) -> None:
    status, _body = loki_proxy.request("GET", "/loki/api/v1/labels")
    assert status == 401
    status, _body = loki_proxy.request("GET", "/loki/api/v1/labels", auth=("alloy", "wrong-password"))
    assert status == 401
    before = len(loki_proxy.upstream.pushes)
    status, _body = loki_proxy.request("POST", "/loki/api/v1/push", auth=("nobody", "alloy-password-123"), body=b"{}")
    assert status == 401
    assert len(loki_proxy.upstream.pushes) == before, "nothing unauthenticated reached Loki"


def test_the_proxy_passes_users_of_loki_proxy_users_to_loki(loki_proxy: Proxy) -> None:
    for user in PROXY_USERS:
        status, body = loki_proxy.request("GET", "/loki/api/v1/labels", auth=(user["username"], user["password"]))
        assert status == 200, body
        assert json.loads(body)["fake_loki_path"] == "/loki/api/v1/labels"
    status, _body = loki_proxy.request(
        "POST", "/loki/api/v1/push", auth=("alloy", "alloy-password-123"), body=b'{"streams": []}'
    )
    assert status == 204
    assert loki_proxy.upstream.pushes[-1] == b'{"streams": []}'


def test_the_proxy_speaks_tls_only(loki_proxy: Proxy) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", loki_proxy.port, timeout=5)
    try:
        conn.request("GET", "/loki/api/v1/labels")
        response = conn.getresponse()
        assert response.status == 400, "plain HTTP on the TLS port is refused by nginx"
    finally:
        conn.close()
    context = ssl.create_default_context(cafile=str(loki_proxy.ca))
    context.check_hostname = False
    with (
        socket.create_connection(("127.0.0.1", loki_proxy.port), timeout=5) as raw,
        context.wrap_socket(raw) as tls,
    ):
        assert tls.version() in ("TLSv1.2", "TLSv1.3")


# ------------------------------------------------------------------ Alloy configuration syntax


TOKEN = re.compile(
    r"""(?P<ws>[ \t\r]+)|(?P<nl>\n)|(?P<comment>//[^\n]*|/\*.*?\*/)|(?P<string>"(?:[^"\\\n]|\\.)*")
    |(?P<number>-?[0-9]+(?:\.[0-9]+)?)|(?P<ident>[A-Za-z_][A-Za-z0-9_]*)|(?P<punct>[{}\[\]=,.()])""",
    re.S | re.X,
)


class SyntaxProblem(AssertionError):
    pass


def tokenize(text: str) -> list[tuple[str, str, int]]:
    tokens, pos, line = [], 0, 1
    while pos < len(text):
        match = TOKEN.match(text, pos)
        if not match:
            raise SyntaxProblem(f"line {line}: unexpected {text[pos : pos + 20]!r}")
        kind = match.lastgroup
        value = match.group()
        if kind == "nl":
            tokens.append(("nl", value, line))
        elif kind not in ("ws", "comment"):
            tokens.append((kind, value, line))
        line += value.count("\n")
        pos = match.end()
    tokens.append(("eof", "", line))
    return tokens


@dataclass
class Block:
    name: str
    label: str | None
    attributes: dict[str, Any]
    blocks: list[Block]
    line: int


@dataclass
class Ref:
    path: str


class Parser:
    """Blocks (``a.b "label" { ... }``), attributes (``name = expr``), and expressions: strings, numbers, bools,
    null, lists, objects, and references (``a.b.c``). Enough of Alloy's syntax for the role's configuration, strict
    about everything it accepts."""

    def __init__(self, text: str) -> None:
        self.tokens = tokenize(text)
        self.i = 0

    def peek(self, skip_nl: bool = True) -> tuple[str, str, int]:
        j = self.i
        while skip_nl and self.tokens[j][0] == "nl":
            j += 1
        return self.tokens[j]

    def take(self, kind: str | None = None, value: str | None = None, skip_nl: bool = True) -> tuple[str, str, int]:
        while skip_nl and self.tokens[self.i][0] == "nl":
            self.i += 1
        token = self.tokens[self.i]
        if (kind and token[0] != kind) or (value is not None and token[1] != value):
            raise SyntaxProblem(f"line {token[2]}: expected {value or kind}, found {token[1]!r}")
        self.i += 1
        return token

    def body(self, end: str) -> tuple[dict[str, Any], list[Block]]:
        attributes: dict[str, Any] = {}
        blocks: list[Block] = []
        while self.peek()[0] != end and self.peek()[1] != end:
            _k, name, line = self.take("ident")
            while self.peek(skip_nl=False)[1] == ".":
                self.take("punct", ".", skip_nl=False)
                name += "." + self.take("ident", skip_nl=False)[1]
            nxt = self.peek(skip_nl=False)
            if nxt[1] == "=":
                self.take("punct", "=")
                if name in attributes:
                    raise SyntaxProblem(f"line {line}: attribute {name} set twice")
                attributes[name] = self.expr()
                if self.peek(skip_nl=False)[0] not in ("nl", "eof") and self.peek(skip_nl=False)[1] != "}":
                    raise SyntaxProblem(f"line {line}: one attribute per line")
            else:
                label = None
                if nxt[0] == "string":
                    label = json.loads(self.take("string", skip_nl=False)[1])
                self.take("punct", "{", skip_nl=False)
                inner_attributes, inner_blocks = self.body("}")
                self.take("punct", "}")
                blocks.append(Block(name, label, inner_attributes, inner_blocks, line))
        return attributes, blocks

    def expr(self) -> Any:
        kind, value, line = self.take()
        if kind == "string":
            return json.loads(value)
        if kind == "number":
            return float(value) if "." in value else int(value)
        if kind == "ident":
            return self.word(value)
        if value == "[":
            return self.list_rest()
        if value == "{":
            return self.object_rest(line)
        raise SyntaxProblem(f"line {line}: unexpected {value!r}")

    def word(self, value: str) -> Any:
        """true, false, null, or a reference such as loki.write.loki.receiver."""
        if value in ("true", "false"):
            return value == "true"
        if value == "null":
            return None
        path = value
        while self.peek(skip_nl=False)[1] == ".":
            self.take("punct", ".", skip_nl=False)
            path += "." + self.take("ident", skip_nl=False)[1]
        return Ref(path)

    def list_rest(self) -> list[Any]:
        items = []
        while self.peek()[1] != "]":
            items.append(self.expr())
            if self.peek()[1] != "]":
                self.take("punct", ",")
        self.take("punct", "]")
        return items

    def object_rest(self, line: int) -> dict[str, Any]:
        obj: dict[str, Any] = {}
        while self.peek()[1] != "}":
            key_kind, key, _line = self.take()
            if key_kind == "string":
                key = json.loads(key)
            elif key_kind != "ident":
                raise SyntaxProblem(f"line {line}: bad object key {key!r}")
            self.take("punct", "=")
            obj[key] = self.expr()
            if self.peek()[1] != "}":
                self.take("punct", ",")
        self.take("punct", "}")
        return obj

    def parse(self) -> list[Block]:
        attributes, blocks = self.body("eof")
        self.take("eof")
        if attributes:
            raise SyntaxProblem(f"top-level attributes are not allowed: {sorted(attributes)}")
        return blocks


def refs_in(value: Any) -> list[str]:
    if isinstance(value, Ref):
        return [value.path]
    if isinstance(value, list):
        return [r for item in value for r in refs_in(item)]
    if isinstance(value, dict):
        return [r for item in value.values() for r in refs_in(item)]
    return []


EXPORTS = {"loki.write": {"receiver"}, "loki.relabel": {"receiver", "rules"}, "local.file_match": {"targets"}}


def check_alloy(text: str) -> dict[tuple[str, str], Block]:
    components = {}
    for block in Parser(text).parse():
        assert block.label, f"line {block.line}: component {block.name} needs a label"
        key = (block.name, block.label)
        assert key not in components, f'component {block.name} "{block.label}" declared twice'
        components[key] = block
    for block in components.values():
        refs = refs_in(block.attributes) + [r for b in block.blocks for r in refs_in(b.attributes)]
        for ref in refs:
            *component, label, export = ref.split(".")
            name = ".".join(component)
            assert (name, label) in components, f'{block.name} "{block.label}" refers to {ref}: no such component'
            assert export in EXPORTS.get(name, set()), f"{ref}: {name} exports no {export}"
    return components


def test_the_parser_rejects_broken_configurations() -> None:
    with pytest.raises(SyntaxProblem):
        check_alloy('loki.write "x" {\n  endpoint {\n    url = "https://a"\n}\n')
    with pytest.raises(AssertionError, match="no such component"):
        check_alloy('loki.source.file "x" {\n  targets = []\n  forward_to = [loki.write.missing.receiver]\n}\n')
    with pytest.raises(SyntaxProblem):
        check_alloy('loki.write "x" {\n  external_labels = {"a" = "b" "c" = "d"}\n}\n')


INVENTORY = """\
[lb]
lb1 ansible_connection=local
[app]
app1 ansible_connection=local
[postgresql]
pg1 ansible_connection=local
[redis]
redis1 ansible_connection=local
[monitoring]
mon1 ansible_connection=local
"""
ALLOY_VARS = {
    "alloy_loki_password": "alloy-secret-from-vault",
    "alloy_loki_ca_file": "/controller/ca.crt",
    "alloy_extra_labels": {"datacenter": "lab-1"},
}
EXPECTED_JOBS = {
    "lb1": {"haproxy": "journal", "nginx": "file"},
    "app1": {"app": "journal"},
    "pg1": {"postgresql": "file"},
    "redis1": {"redis": "journal", "redis_sentinel": "journal", "redis_files": "file"},
    "mon1": {"loki": "journal", "grafana": "journal", "prometheus": "journal"},
}
TIERS = {"lb1": "lb", "app1": "app", "pg1": "postgresql", "redis1": "redis", "mon1": "monitoring"}


@pytest.fixture(scope="module")
def alloy_configs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """config.alloy rendered for one host of each tier, in one ansible-playbook run."""
    tmp_path = tmp_path_factory.mktemp("alloy")
    render_template(ALLOY, tmp_path, "config.alloy.j2", ALLOY_VARS, hostname="all", inventory=INVENTORY)
    return {p.suffix.lstrip("."): p.read_text() for p in (tmp_path / "out").glob("config.alloy.j2.*")}


@pytest.mark.parametrize("host", sorted(EXPECTED_JOBS))
def test_rendered_alloy_config(alloy_configs: dict[str, str], host: str) -> None:
    text = alloy_configs[host]
    assert "alloy-secret-from-vault" not in text, "the password stays in its own file"
    components = check_alloy(text)
    write = components[("loki.write", "loki")]
    (endpoint,) = write.blocks
    assert endpoint.attributes["url"] == "https://mon1:3101/loki/api/v1/push", "the first monitoring host's proxy"
    (auth,) = [b for b in endpoint.blocks if b.name == "basic_auth"]
    assert auth.attributes == {"username": "alloy", "password_file": "/etc/alloy/loki.password"}
    (tls,) = [b for b in endpoint.blocks if b.name == "tls_config"]
    assert tls.attributes == {"ca_file": "/etc/alloy/loki-ca.crt"}
    assert write.attributes["external_labels"] == {
        "environment": "lab",
        "host": host,
        "tier": TIERS[host],
        "datacenter": "lab-1",
    }
    jobs = {}
    for (name, label), block in components.items():
        if name == "loki.source.journal":
            assert block.attributes["labels"] == {"job": label}
            assert isinstance(block.attributes["relabel_rules"], Ref)
            assert re.match(r"^[A-Za-z0-9_]+=\S+$", block.attributes["matches"])
            jobs[label] = "journal"
        elif name == "loki.source.file":
            match = components[("local.file_match", label)]
            assert all(
                t["job"] == label and t["__path__"].startswith("/var/log/") for t in match.attributes["path_targets"]
            )
            jobs[label] = "file"
        if name.startswith("loki.source."):
            assert [r.path for r in block.attributes["forward_to"]] == ["loki.write.loki.receiver"]
    assert jobs == EXPECTED_JOBS[host]
    if host == "app1":
        assert components[("loki.source.journal", "app")].attributes["matches"] == "_SYSTEMD_UNIT=strata-app.service"


def test_rendered_alloy_defaults_file(tmp_path: Path) -> None:
    text = render_template(ALLOY, tmp_path, "alloy.default.j2", ALLOY_VARS)
    values = dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    assert values["CONFIG_FILE"] == '"/etc/alloy/config.alloy"'
    assert "--server.http.listen-addr=127.0.0.1:12345" in values["CUSTOM_ARGS"]
    assert "--disable-reporting" in values["CUSTOM_ARGS"]


# ------------------------------------------------------------------ vendor package: repository or offline artifacts


def run_vendor_check(tmp_path: Path, variables: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    playbook = tmp_path / "vendor.yml"
    playbook.write_text(
        yaml.safe_dump(
            [
                {
                    "name": "Decide where a vendor package comes from",
                    "hosts": "localhost",
                    "gather_facts": False,
                    "tasks": [
                        {
                            "name": "Check",
                            "ansible.builtin.include_role": {
                                "name": "strata.deploy.grafana",
                                "tasks_from": "vendor_check",
                            },
                        },
                        {"name": "Report", "ansible.builtin.debug": {"msg": "SOURCE={{ _grafana_vendor_source }}"}},
                    ],
                }
            ]
        )
    )
    base = {
        "grafana_vendor_package": "strata-no-such-package",
        "grafana_vendor_version": "1.0.0",
        "grafana_vendor_var_prefix": "loki",
        "grafana_vendor_offline_dir": "",
        "grafana_vendor_offline_artifacts": {},
        "grafana_vendor_apt_url": f"http://127.0.0.1:{free_port()}",
        "grafana_vendor_apt_key_url": "http://127.0.0.1:9/gpg.key",
        "grafana_vendor_apt_suite": "stable",
        "grafana_vendor_probe_timeout": 3,
        "grafana_vendor_if_unavailable": "fail",
    }
    (tmp_path / "vars.yml").write_text(yaml.safe_dump({**base, **variables}))
    (tmp_path / "hosts.ini").write_text("localhost ansible_connection=local\n")
    (tmp_path / "ansible.cfg").write_text(f"[defaults]\ncollections_path = {ROOT / '.cache' / 'collections'}\n")
    env = dict(
        os.environ,
        ANSIBLE_CONFIG=str(tmp_path / "ansible.cfg"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_PYTHON_INTERPRETER=shutil.which("python3") or "/usr/bin/python3",
    )
    return subprocess.run(
        [str(ROOT / ".venv" / "bin" / "ansible-playbook"), "-i", "hosts.ini", "-e", "@vars.yml", str(playbook)],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
        env=env,
        check=False,
    )


def test_offline_artifact_with_a_wrong_checksum_is_refused(tmp_path: Path) -> None:
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    (artifacts / "loki_1.0.0_amd64.deb").write_bytes(b"not really a deb")
    result = run_vendor_check(
        tmp_path,
        {
            "grafana_vendor_offline_dir": str(artifacts),
            "grafana_vendor_offline_artifacts": {"loki_1.0.0_amd64.deb": "0" * 64},
        },
    )
    assert result.returncode != 0
    assert (
        "loki_offline_artifacts" in result.stdout
        and "has sha256" in result.stdout
        and "expected " + "0" * 64 in result.stdout
    )


def test_offline_artifacts_with_their_checksums_are_used(tmp_path: Path) -> None:
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    content = b"not really a deb, but its checksum is right"
    (artifacts / "loki_1.0.0_amd64.deb").write_bytes(content)
    result = run_vendor_check(
        tmp_path,
        {
            "grafana_vendor_offline_dir": str(artifacts),
            "grafana_vendor_offline_artifacts": {"loki_1.0.0_amd64.deb": hashlib.sha256(content).hexdigest()},
        },
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SOURCE=offline" in result.stdout


ROLE_REQUIRED = {
    "grafana": {
        "grafana_admin_password": "admin-password-from-vault",
        "grafana_secret_key": "secret-key-from-vault-0123",
        "grafana_prometheus_password": "prometheus-password-from-vault",
    },
    "loki": {"loki_proxy_users": PROXY_USERS},
    "alloy": {"alloy_loki_password": "alloy-secret-from-vault", "alloy_loki_ca_file": ""},
}


def run_roles_in_check_mode(
    tmp_path: Path, roles: list[str], variables: dict[str, Any]
) -> subprocess.CompletedProcess[str]:
    """One play per role on this machine, in check mode: nothing can change even if a role went further."""
    playbook = tmp_path / "roles.yml"
    playbook.write_text(
        yaml.safe_dump(
            [
                {
                    "name": f"Run strata.deploy.{role}",
                    "hosts": "localhost",
                    "gather_subset": ["!all", "min"],
                    "roles": [f"strata.deploy.{role}"],
                }
                for role in roles
            ]
        )
    )
    (tmp_path / "vars.yml").write_text(yaml.safe_dump(variables))
    (tmp_path / "hosts.ini").write_text("localhost ansible_connection=local\n")
    (tmp_path / "ansible.cfg").write_text(f"[defaults]\ncollections_path = {ROOT / '.cache' / 'collections'}\n")
    env = dict(
        os.environ,
        ANSIBLE_CONFIG=str(tmp_path / "ansible.cfg"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_PYTHON_INTERPRETER=shutil.which("python3") or "/usr/bin/python3",
    )
    return subprocess.run(
        [
            str(ROOT / ".venv" / "bin" / "ansible-playbook"),
            "--check",
            "-i",
            "hosts.ini",
            "-e",
            "@vars.yml",
            str(playbook),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env=env,
        check=False,
    )


@pytest.mark.parametrize("role", sorted(ROLE_REQUIRED))
def test_each_role_stops_in_one_line_without_repository_or_artifacts(tmp_path: Path, role: str) -> None:
    """The whole role, with the vendor repository unreachable and no offline folder: preflight stops with ONE line
    naming the variable, before anything changes."""
    variables = {**ROLE_REQUIRED[role], f"{role}_apt_repository_url": f"http://127.0.0.1:{free_port()}"}
    result = run_roles_in_check_mode(tmp_path, [role], variables)
    assert result.returncode != 0, result.stdout
    failures = [line for line in result.stdout.splitlines() if line.startswith("fatal:")]
    assert len(failures) == 1, result.stdout
    (message,) = failures
    assert f"{role} cannot be installed on localhost" in message, message
    assert f"{role}_offline_artifacts_dir is unset" in message, message
    assert "changed=0" in result.stdout.split("PLAY RECAP", 1)[1]


def test_roles_set_to_skip_say_so_in_one_line_and_end(tmp_path: Path) -> None:
    """With <role>_if_unavailable: skip (a lab without the vendor's binaries) each role says why in one line and
    ends for the host: the play goes on, nothing is installed."""
    closed = f"http://127.0.0.1:{free_port()}"
    variables: dict[str, Any] = {}
    for role, required in ROLE_REQUIRED.items():
        variables |= {**required, f"{role}_apt_repository_url": closed, f"{role}_if_unavailable": "skip"}
    result = run_roles_in_check_mode(tmp_path, sorted(ROLE_REQUIRED), variables)
    assert result.returncode == 0, result.stdout + result.stderr
    for role in ROLE_REQUIRED:
        assert result.stdout.count(f"{role} SKIPPED on localhost") == 1, result.stdout
    assert "Install |" not in result.stdout, "a skipped role must end before its install phase"
    assert "changed=0" in result.stdout.split("PLAY RECAP", 1)[1]
