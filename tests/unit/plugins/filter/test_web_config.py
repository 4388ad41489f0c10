"""plugins/filter/web_config.py: the exporter-toolkit web configuration (TLS + bcrypt basic auth) shared by the
prometheus, alertmanager and node_exporter roles - accepted by promtool's own web-config validation, idempotent
(a hash is kept while its password verifies), and refusing bad input.

promtool comes from Debian's `prometheus` package (`make host-deps`); a missing promtool FAILS these tests.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from ansible.errors import AnsibleFilterError
from ansible_collections.strata.deploy.plugins.filter.web_config import FilterModule, web_config

PROMTOOL_TIMEOUT = 60


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool", path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/bin"]))
    if not path:
        pytest.fail("promtool not found in PATH or /usr/bin: install Debian's 'prometheus' package", pytrace=False)
    return path


def run_promtool(promtool: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, *map(str, args)], capture_output=True, text=True, timeout=PROMTOOL_TIMEOUT, check=False
    )


@pytest.fixture(scope="module")
def tls_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    if not openssl:
        pytest.fail("openssl not found in PATH", pytrace=False)
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "host.crt", folder / "host.key"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1",
         "-subj", "/CN=test", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    return cert, key


def test_web_config_passes_promtool_validation(promtool: str, tls_pair: tuple[Path, Path], tmp_path: Path) -> None:
    cert, key = tls_pair
    config = web_config({"prometheus": "s3cret", "grafana": "other"}, str(cert), str(key), cost=4)
    assert config["tls_server_config"] == {"cert_file": str(cert), "key_file": str(key), "min_version": "TLS12"}
    assert sorted(config["basic_auth_users"]) == ["grafana", "prometheus"]
    assert all(h.startswith("$2") for h in config["basic_auth_users"].values())
    assert "s3cret" not in yaml.safe_dump(config)
    path = tmp_path / "web.yml"
    path.write_text(yaml.safe_dump(config))
    result = run_promtool(promtool, "check", "web-config", path)
    assert result.returncode == 0, f"promtool check web-config:\n{result.stdout}{result.stderr}"


def test_web_config_keeps_the_hash_while_the_password_verifies() -> None:
    first = web_config({"prometheus": "s3cret"}, "/c.crt", "/c.key", cost=4)
    again = web_config({"prometheus": "s3cret"}, "/c.crt", "/c.key", current=first, cost=4)
    assert again == first, "an unchanged password must keep its hash (idempotent runs)"
    changed = web_config({"prometheus": "n3w"}, "/c.crt", "/c.key", current=first, cost=4)
    assert changed["basic_auth_users"]["prometheus"] != first["basic_auth_users"]["prometheus"]
    fresh = web_config({"prometheus": "s3cret"}, "/c.crt", "/c.key", cost=4)
    assert fresh["basic_auth_users"]["prometheus"] != first["basic_auth_users"]["prometheus"], "salts are random"


@pytest.mark.parametrize(
    ("users", "kwargs", "message"),
    [
        ({}, {}, "non-empty mapping"),
        ({"prometheus": ""}, {}, "password of user 'prometheus' is empty"),
        ({"a:b": "x"}, {}, "invalid user name"),
        ({"prometheus": "x"}, {"min_version": "TLS10"}, "min_version"),
        ({"prometheus": "x"}, {"cost": 3}, "cost"),
    ],
)
def test_web_config_refuses_bad_input(users: dict, kwargs: dict, message: str) -> None:
    with pytest.raises(AnsibleFilterError, match=message):
        web_config(users, "/c.crt", "/c.key", **kwargs)


def test_a_different_user_set_rehashes_only_the_new_user() -> None:
    first = web_config({"prometheus": "s3cret"}, "/c.crt", "/c.key", cost=4)
    both = web_config({"prometheus": "s3cret", "grafana": "other"}, "/c.crt", "/c.key", current=first, cost=4)
    assert both["basic_auth_users"]["prometheus"] == first["basic_auth_users"]["prometheus"]
    assert both["basic_auth_users"]["grafana"].startswith("$2")


def test_a_current_file_that_is_not_a_web_config_is_ignored() -> None:
    for current in (None, "", [], {"basic_auth_users": "nope"}, {"basic_auth_users": {"prometheus": "plain"}}):
        config = web_config({"prometheus": "s3cret"}, "/c.crt", "/c.key", current=current, cost=4)
        assert config["basic_auth_users"]["prometheus"].startswith("$2")


def test_the_filter_is_registered() -> None:
    assert FilterModule().filters()["web_config"] is web_config
