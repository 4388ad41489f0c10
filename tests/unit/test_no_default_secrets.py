"""No default credentials anywhere: no role ships a non-empty default for a secret-like variable.

Every role's defaults/main.yml, vars/*.yml and meta/argument_specs.yml (options and sub-options, at any depth)
are scanned. A variable is secret-like when its name ENDS with password, passwd, passphrase, token, secret or
key (``redis_app_password``, ``grafana_api_token``, ``aws_secret_key``); names that only contain the word
(``*_key_file``, ``*_key_url``, ``*_key_patterns``: paths, URLs, patterns) are not credentials, nor is an
absolute path as the default of a ``*key`` variable (where a key file lives). Its default
must be empty (``""``, null, ``[]``, ``{}``) or a template that only refers to other variables: any string
literal a template passes to ``default(...)`` must be empty too. An unset secret is then an error of the role
(its preflight), never a guessable value.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ROLES = sorted(p for p in (ROOT / "roles").iterdir() if p.is_dir())

SECRET_NAME = re.compile(r"(^|[_.-])(password|passwd|passphrase|token|secret|key)$", re.IGNORECASE)
DEFAULT_LITERAL = re.compile(r"""\bdefault\(\s*(?P<q>['"])(?P<value>.*?)(?P=q)""")


def _is_empty(value: Any) -> bool:
    return value is None or value in ("", [], {})


def credential_problem(name: str, value: Any) -> str | None:
    """Why this default of a secret-like variable is a credential, or None when it is not one."""
    if _is_empty(value):
        return None
    if name.lower().endswith("key") and isinstance(value, str) and value.startswith("/"):
        return None  # where a key file lives (``_grafana_tls_key: /etc/grafana/tls/grafana.key``), not a key
    if isinstance(value, str) and "{{" in value:
        literals = [m.group("value") for m in DEFAULT_LITERAL.finditer(value) if m.group("value")]
        return f"its template falls back to the literal {literals[0]!r}" if literals else None
    return f"its default is {value!r}"


def _walk_values(data: Any, path: str) -> Iterator[tuple[str, Any]]:
    """Every (dotted name, value) of a defaults/vars mapping, nested mappings and lists included."""
    if isinstance(data, dict):
        for key, value in data.items():
            name = f"{path}.{key}" if path else str(key)
            yield name, value
            yield from _walk_values(value, name)
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from _walk_values(value, f"{path}[{index}]")


def _walk_options(options: dict, path: str) -> Iterator[tuple[str, dict]]:
    """Every (dotted name, option) of an argument spec, sub-options included."""
    for name, option in (options or {}).items():
        full = f"{path}.{name}" if path else name
        yield full, option or {}
        yield from _walk_options((option or {}).get("options", {}), full)


def problems(role: Path) -> list[str]:
    found = []
    for values_file in [role / "defaults" / "main.yml", *sorted((role / "vars").glob("*.yml"))]:
        if not values_file.exists():
            continue
        data = yaml.safe_load(values_file.read_text()) or {}
        for name, value in _walk_values(data, ""):
            leaf = re.split(r"[.\[]", name)[-1]
            why = credential_problem(leaf, value) if SECRET_NAME.search(leaf) else None
            if why:
                found.append(f"{values_file.relative_to(role.parent)}: {name}: {why}")
    specs_file = role / "meta" / "argument_specs.yml"
    if specs_file.exists():
        specs = (yaml.safe_load(specs_file.read_text()) or {}).get("argument_specs", {})
        for entry, body in specs.items():
            for name, option in _walk_options((body or {}).get("options", {}), ""):
                leaf = name.split(".")[-1]
                why = credential_problem(leaf, option.get("default")) if SECRET_NAME.search(leaf) else None
                if why:
                    found.append(f"{specs_file.relative_to(role.parent)}: {entry}: {name}: {why}")
    return found


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_role_has_no_default_credentials(role: Path) -> None:
    assert problems(role) == []


def test_scan_covers_every_role() -> None:
    assert len(ROLES) >= 2
    assert all((role / "defaults" / "main.yml").exists() or (role / "meta").exists() for role in ROLES)


def test_detector_flags_credentials_and_spares_paths(tmp_path: Path) -> None:
    role = tmp_path / "demo"
    (role / "defaults").mkdir(parents=True)
    (role / "meta").mkdir()
    (role / "defaults" / "main.yml").write_text(
        "demo_admin_password: changeme\n"
        "demo_app_password: ''\n"
        "demo_tls_key_file: /etc/demo/demo.key\n"
        "demo_tls_key: /etc/demo/tls.key\n"
        "demo_signing_key: c2VjcmV0\n"
        "demo_apt_key_url: https://example.invalid/gpg.key\n"
        'demo_api_token: "{{ vault_demo_api_token }}"\n'
        "demo_secret: \"{{ demo_other | default('s3cret') }}\"\n"
        "demo_clients:\n"
        "  - {name: one, password: hunter2}\n"
        "  - {name: two, password: \"{{ two_password | default('') }}\"}\n"
    )
    (role / "meta" / "argument_specs.yml").write_text(
        "argument_specs:\n  main:\n    options:\n"
        "      demo_admin_password: {type: str, default: changeme, description: x}\n"
        "      demo_key_patterns: {type: list, default: ['app:*'], description: x}\n"
        "      demo_users:\n"
        "        type: list\n        elements: dict\n        description: x\n"
        "        options:\n          token: {type: str, default: abc, description: x}\n"
    )
    found = problems(role)
    flagged = sorted(line.split(": ")[-2] for line in found)
    assert flagged == sorted(
        [
            "demo_admin_password",
            "demo_signing_key",
            "demo_secret",
            "demo_clients[0].password",
            "demo_admin_password",
            "demo_users.token",
        ]
    ), found
