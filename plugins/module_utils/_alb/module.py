# Copyright: (c) 2025, strata.deploy maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Module glue of the ALB provider: the AWS connection options (one spec for ``alb_traffic`` and ``traffic_info``)
and the client built from them.

The option names and aliases are those of amazon.aws (``access_key``/``aws_access_key_id``, ``secret_key``,
``session_token``, ``profile``, ``region``, ``endpoint_url``, ``validate_certs``), so a task reads the same;
amazon.aws's ``AnsibleAWSModule`` itself is not used (see docs/traffic-cloud.md: this collection does not depend on
amazon.aws, and ansible-test's import and validate-modules checks run with this collection alone). Options left
unset fall back to boto3's own chain (``AWS_*`` environment variables, shared config and credentials files,
instance or task role).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ansible_collections.strata.deploy.plugins.module_utils._alb.client import (
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT,
    AlbClient,
)


def aws_connection_spec() -> dict[str, dict[str, Any]]:
    """The AWS options documented in ``alb_traffic`` and ``traffic_info`` (same names as amazon.aws)."""
    return {
        "region": {"type": "str", "aliases": ["aws_region"]},
        "endpoint_url": {"type": "str", "aliases": ["aws_endpoint_url"]},
        "access_key": {"type": "str", "aliases": ["aws_access_key_id", "aws_access_key"], "no_log": False},
        "secret_key": {"type": "str", "aliases": ["aws_secret_access_key", "aws_secret_key"], "no_log": True},
        "session_token": {"type": "str", "aliases": ["aws_session_token"], "no_log": True},
        "profile": {"type": "str", "aliases": ["aws_profile"]},
        "validate_certs": {"type": "bool", "default": True},
        "aws_timeout": {"type": "float", "default": DEFAULT_TIMEOUT},
        "aws_retries": {"type": "int", "default": DEFAULT_RETRIES},
    }


AWS_OPTIONS = tuple(aws_connection_spec())


def client_from_params(params: Mapping[str, Any]) -> AlbClient:
    return AlbClient.connect(
        region=params.get("region"),
        endpoint_url=params.get("endpoint_url"),
        access_key=params.get("access_key"),
        secret_key=params.get("secret_key"),
        session_token=params.get("session_token"),
        profile=params.get("profile"),
        validate_certs=params.get("validate_certs", True),
        timeout=params.get("aws_timeout") or DEFAULT_TIMEOUT,
        retries=DEFAULT_RETRIES if params.get("aws_retries") is None else params["aws_retries"],
    )
