# Copyright: (c) 2025, strata.deploy maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Option documentation shared by the traffic modules.

Each fragment documents exactly the options that one spec builder of
``plugins/module_utils/_traffic/module.py`` returns (same names, types, defaults, choices); the unit test
``tests/unit/plugins/modules/test_docs_match_spec.py`` and ``ansible-test sanity`` (validate-modules) compare them.

- ``strata.deploy.traffic.haproxy``: the runtime API socket (``haproxy_connection_spec``).
- ``strata.deploy.traffic.nginx``: the upstream include file (``nginx_file_spec``).
- ``strata.deploy.traffic.nginx_commands``: the nginx test/reload commands (``nginx_commands_spec``).
- ``strata.deploy.traffic.prometheus``: the Prometheus HTTP API connection (``prometheus_connection_spec``).
"""

from __future__ import annotations


class ModuleDocFragment:
    # Kept empty on purpose: every module picks the named fragments it needs.
    DOCUMENTATION = r"""
options: {}
"""

    HAPROXY = r"""
options:
  socket:
    description:
      - Path of the HAProxy runtime API socket (a C(stats socket ... level admin) line of the C(global) section).
      - The module connects to it with a timeout on every call and retries only refused connections (HAProxy
        reloading), with a bounded, jittered backoff.
    type: path
    default: /run/haproxy/admin.sock
  timeout:
    description:
      - Seconds to wait for HAProxy to answer one runtime API command (connecting and reading the whole answer).
    type: float
    default: 5
"""

    NGINX = r"""
options:
  path:
    description:
      - The nginx include file that holds the C(upstream) block(s). nginx OSS has no runtime API, so this file is
        the source of truth. It is read, rewritten whole and atomically, and read back.
      - Defaults to C(/etc/nginx/strata/upstreams/<upstream>.conf), the file the C(strata.deploy.nginx) role writes
        for each upstream.
    type: path
"""

    NGINX_COMMANDS = r"""
options:
  test_command:
    description:
      - Command that tests the whole nginx configuration once the new file is written. When it fails, the
        previous file is put back, nginx is not reloaded and the task fails with nginx's output.
      - Split like a shell would (C(shlex)); no shell runs it.
    type: str
    default: nginx -t -q
  reload_command:
    description:
      - Command for the one graceful reload that follows a successful test (never a restart).
      - Split like a shell would (C(shlex)); no shell runs it. Use C(systemctl reload nginx) to go through systemd.
    type: str
    default: nginx -s reload
  timeout:
    description:
      - Seconds that O(test_command) and O(reload_command) may each run before they are stopped and the task fails.
    type: float
    default: 30
"""

    PROMETHEUS = r"""
options:
  url:
    description:
      - Base URL of the Prometheus server, with its path prefix if it has one (the module appends C(/api/v1/query)),
        for example V(https://prometheus.example.internal:9090).
    type: str
    required: true
  username:
    description:
      - User for HTTP basic authentication (Prometheus C(--web.config.file) C(basic_auth_users)).
    type: str
  password:
    description:
      - Password for HTTP basic authentication. Never logged or returned.
    type: str
  ca_path:
    description:
      - PEM file of the CA(s) that signed the Prometheus server's certificate (for a private CA).
      - Without it the system's trust store is used.
    type: path
  validate_certs:
    description:
      - Verify the server's TLS certificate and host name. Only turn this off in a throw-away lab.
    type: bool
    default: true
  timeout:
    description:
      - Seconds to wait for one HTTP request (also sent to Prometheus as the query evaluation timeout).
    type: float
    default: 10
  retries:
    description:
      - How many times a request is retried after a transient failure (connection refused or reset, timeout,
        HTTP 429, 502, 503 or 504), with a jittered exponential backoff. Bad queries, authentication and TLS
        errors are never retried.
    type: int
    default: 3
"""
