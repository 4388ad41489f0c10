# Copyright: (c) 2025, strata.deploy maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Prometheus HTTP API client (``client.PrometheusClient``), its typed errors, and the metric gate
(``client.build_gate`` / ``client.evaluate_gate``) that compares a canary with its baseline."""

from __future__ import annotations
