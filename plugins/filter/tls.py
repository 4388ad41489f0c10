# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""TLS profiles shared by the load balancer roles (haproxy, nginx): one place for protocols and ciphers."""

from __future__ import annotations

import copy
from typing import Any

from ansible.errors import AnsibleFilterError

DOCUMENTATION = r"""
name: tls_profile
author: strata.deploy maintainers
version_added: 0.1.0
short_description: Return the TLS settings of a named Mozilla server-side TLS profile
description:
  - Maps a profile name to the protocols, TLS 1.2 cipher string, TLS 1.3 cipher suites and related settings of the
    Mozilla Server Side TLS guidelines (version 5.7), so every role that terminates TLS uses the same values.
  - C(intermediate) allows TLS 1.2 and TLS 1.3 with forward-secret AEAD ciphers only.
  - C(modern) allows TLS 1.3 only.
options:
  _input:
    description: The profile name.
    type: str
    required: true
    choices: [intermediate, modern]
"""

EXAMPLES = r"""
- name: Show the cipher string of the intermediate profile
  ansible.builtin.debug:
    msg: "{{ ('intermediate' | strata.deploy.tls_profile).ciphers }}"

- name: Render nginx's ssl_protocols line from the configured profile
  ansible.builtin.debug:
    msg: "ssl_protocols {{ (nginx_tls_profile | strata.deploy.tls_profile).protocols | join(' ') }};"
"""

RETURN = r"""
_value:
  description: The settings of the profile.
  type: dict
  contains:
    name:
      description: The profile name.
      type: str
    protocols:
      description: Allowed protocol versions, oldest first.
      type: list
      elements: str
      sample: [TLSv1.2, TLSv1.3]
    min_version:
      description: The oldest allowed protocol version.
      type: str
      sample: TLSv1.2
    ciphers:
      description: OpenSSL cipher string for TLS 1.2 and older (empty for C(modern), which has no TLS 1.2).
      type: str
    ciphersuites:
      description: OpenSSL TLS 1.3 cipher suites.
      type: str
      sample: TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256
    prefer_server_ciphers:
      description: Whether the server's cipher order wins (false in both profiles, per Mozilla 5.7).
      type: bool
    hsts:
      description: Whether an HSTS header should be sent.
      type: bool
"""

TLS13_CIPHERSUITES = "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"

INTERMEDIATE_CIPHERS = ":".join(
    [
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
        "DHE-RSA-AES128-GCM-SHA256",
        "DHE-RSA-AES256-GCM-SHA384",
        "DHE-RSA-CHACHA20-POLY1305",
    ]
)

PROFILES: dict[str, dict[str, Any]] = {
    "intermediate": {
        "name": "intermediate",
        "protocols": ["TLSv1.2", "TLSv1.3"],
        "min_version": "TLSv1.2",
        "ciphers": INTERMEDIATE_CIPHERS,
        "ciphersuites": TLS13_CIPHERSUITES,
        "prefer_server_ciphers": False,
        "hsts": True,
    },
    "modern": {
        "name": "modern",
        "protocols": ["TLSv1.3"],
        "min_version": "TLSv1.3",
        "ciphers": "",
        "ciphersuites": TLS13_CIPHERSUITES,
        "prefer_server_ciphers": False,
        "hsts": True,
    },
}


def tls_profile(name: object) -> dict[str, Any]:
    """Return a copy of the settings of the TLS profile ``name``; unknown names raise AnsibleFilterError."""
    if not isinstance(name, str) or name not in PROFILES:
        raise AnsibleFilterError(
            f"strata.deploy.tls_profile: unknown TLS profile {name!r}; expected one of: {', '.join(sorted(PROFILES))}"
        )
    return copy.deepcopy(PROFILES[name])


class FilterModule:
    """strata.deploy TLS filters."""

    def filters(self) -> dict[str, Any]:
        return {"tls_profile": tls_profile}
