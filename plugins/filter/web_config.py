# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The web configuration file of Prometheus, Alertmanager and node_exporter (TLS + bcrypt basic auth), in one place."""

from __future__ import annotations

import importlib
import secrets
import warnings
from collections.abc import Callable, Mapping
from typing import Any

from ansible.errors import AnsibleFilterError

DOCUMENTATION = r"""
name: web_config
author: strata.deploy maintainers
version_added: 0.1.0
short_description: Build the exporter-toolkit web configuration (TLS and bcrypt basic auth) of a Prometheus server
description:
  - Returns the content of the C(--web.config.file) read by Prometheus, Alertmanager and node_exporter (the
    Prometheus exporter-toolkit format) - C(tls_server_config) and C(basic_auth_users).
  - Passwords are hashed with bcrypt. A bcrypt hash has a random salt, so hashing again on every run would rewrite
    the file every time; instead the hash found in I(current) for the same user is kept as long as the password still
    verifies against it, and a new hash is made only for a new user or a changed password. Runs stay idempotent and
    check mode predicts no change.
  - Hashing uses the C(bcrypt) or C(passlib) Python package on the controller when one is installed, otherwise the
    C(crypt) module of Python 3.12 and older (glibc/libxcrypt support bcrypt on Debian and Ubuntu).
options:
  _input:
    description: The users, a mapping of user name to plain-text password.
    type: dict
    required: true
  cert_file:
    description: Path of the server certificate (PEM) on the host.
    type: str
    required: true
  key_file:
    description: Path of the server private key (PEM) on the host.
    type: str
    required: true
  current:
    description: The current web configuration (parsed), whose hashes are kept when the password still matches.
    type: dict
    default: {}
  min_version:
    description: Oldest TLS version the server accepts.
    type: str
    default: TLS12
    choices: [TLS12, TLS13]
  cost:
    description: bcrypt cost of new hashes (each authenticated request costs one verification, cached by the server).
    type: int
    default: 10
"""

EXAMPLES = r"""
- name: Compute the web configuration of node_exporter (keeps the hash of an unchanged password)
  ansible.builtin.set_fact:
    _web_config: >-
      {{ {'prometheus': node_exporter_basic_auth_password}
         | strata.deploy.web_config(cert_file='/etc/prometheus/tls/host.crt', key_file='/etc/prometheus/tls/host.key',
                                    current=__current | default({})) }}
  no_log: true
"""

RETURN = r"""
_value:
  description: The web configuration, ready for C(to_nice_yaml).
  type: dict
  contains:
    tls_server_config:
      description: C(cert_file), C(key_file) and C(min_version).
      type: dict
    basic_auth_users:
      description: User name to bcrypt hash.
      type: dict
"""

BCRYPT_PREFIXES = ("$2a$", "$2b$", "$2y$")
MIN_COST = 4
MAX_COST = 31


def _backend() -> tuple[Callable[[str, int], str], Callable[[str, str], bool]]:
    """(hash, verify) functions from the first bcrypt implementation found on the controller."""
    try:
        bcrypt = importlib.import_module("bcrypt")

        def hash_bcrypt(password: str, cost: int) -> str:
            return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=cost)).decode()

        def verify_bcrypt(password: str, hashed: str) -> bool:
            return bool(bcrypt.checkpw(password.encode(), hashed.encode()))

        return hash_bcrypt, verify_bcrypt
    except ImportError:
        pass
    try:
        passlib_hash = importlib.import_module("passlib.hash")

        def hash_passlib(password: str, cost: int) -> str:
            return str(passlib_hash.bcrypt.using(rounds=cost, ident="2b").hash(password))

        def verify_passlib(password: str, hashed: str) -> bool:
            return bool(passlib_hash.bcrypt.verify(password, hashed))

        return hash_passlib, verify_passlib
    except ImportError:
        pass
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            crypt = importlib.import_module("crypt")
        except ImportError as exc:
            raise AnsibleFilterError(
                "strata.deploy.web_config: no bcrypt implementation on the controller; install the Python package "
                "'bcrypt' or 'passlib' into Ansible's Python"
            ) from exc

    def hash_crypt(password: str, cost: int) -> str:
        return str(crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=2**cost)))

    def verify_crypt(password: str, hashed: str) -> bool:
        return secrets.compare_digest(str(crypt.crypt(password, hashed) or ""), hashed)

    return hash_crypt, verify_crypt


def _current_hashes(current: object) -> dict[str, str]:
    if not isinstance(current, Mapping):
        return {}
    users = current.get("basic_auth_users")
    if not isinstance(users, Mapping):
        return {}
    return {str(k): str(v) for k, v in users.items() if isinstance(v, str) and v.startswith(BCRYPT_PREFIXES)}


def web_config(
    users: object,
    cert_file: str,
    key_file: str,
    *,
    current: object = None,
    min_version: str = "TLS12",
    cost: int = 10,
) -> dict[str, Any]:
    """The web configuration for ``users`` (name -> password), reusing the hashes of ``current`` that still verify."""
    if not isinstance(users, Mapping) or not users:
        raise AnsibleFilterError("strata.deploy.web_config: expected a non-empty mapping of user name to password")
    if not cert_file or not key_file:
        raise AnsibleFilterError("strata.deploy.web_config: cert_file and key_file are required")
    if min_version not in ("TLS12", "TLS13"):
        raise AnsibleFilterError(f"strata.deploy.web_config: min_version must be TLS12 or TLS13, got {min_version!r}")
    cost = int(cost)
    if not MIN_COST <= cost <= MAX_COST:
        raise AnsibleFilterError(f"strata.deploy.web_config: cost must be {MIN_COST}..{MAX_COST}, got {cost}")
    hash_password, verify = _backend()
    known = _current_hashes(current)
    hashes: dict[str, str] = {}
    for name, password in sorted(users.items()):
        if not isinstance(name, str) or not name or ":" in name:
            raise AnsibleFilterError(f"strata.deploy.web_config: invalid user name {name!r}")
        if not isinstance(password, str) or not password:
            raise AnsibleFilterError(f"strata.deploy.web_config: the password of user {name!r} is empty")
        old = known.get(name)
        hashes[name] = old if old is not None and verify(password, old) else hash_password(password, cost)
    return {
        "tls_server_config": {"cert_file": cert_file, "key_file": key_file, "min_version": min_version},
        "basic_auth_users": hashes,
    }


class FilterModule:
    """strata.deploy web configuration filter."""

    def filters(self) -> dict[str, Any]:
        return {"web_config": web_config}
