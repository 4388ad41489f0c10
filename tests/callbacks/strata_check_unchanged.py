# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fail a check-mode run that predicts any change (test-suite only, enabled by Molecule's base config).

Molecule's ``check`` step runs the converge playbook with ``--check`` on hosts that were just converged and
proved idempotent, so a correct role predicts no change at all. Molecule itself only fails that step on task
errors; this callback makes a predicted change fail it too, naming every task that reported one. It is active
only when ``STRATA_CHECK_UNCHANGED=1`` and the run is in check mode.
"""

from __future__ import annotations

import os

from ansible import context
from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
    name: strata_check_unchanged
    type: aggregate
    short_description: fail a check-mode run that predicts changes
    description:
      - Test-suite helper. With C(STRATA_CHECK_UNCHANGED=1) and C(--check), lists every task that reported
        C(changed) and makes ansible-playbook exit with status 2.
    requirements:
      - enable in callbacks_enabled
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "strata_check_unchanged"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self) -> None:
        super().__init__()
        self._changed: list[str] = []

    @property
    def _active(self) -> bool:
        return os.environ.get("STRATA_CHECK_UNCHANGED") == "1" and bool(context.CLIARGS.get("check"))

    def _record(self, result, item=None) -> None:
        if self._active and result._result.get("changed", False):
            label = f" (item {item})" if item is not None else ""
            self._changed.append(f"{result._host.get_name()}: {result._task.get_name()}{label}")

    def v2_runner_on_ok(self, result) -> None:
        if not result._result.get("results"):
            self._record(result)

    def v2_runner_item_on_ok(self, result) -> None:
        self._record(result, result._result.get("item"))

    def v2_playbook_on_stats(self, stats) -> None:
        if not self._changed:
            return
        self._display.error("check mode predicted changes on converged hosts (expected none):")
        for line in self._changed:
            self._display.error(f"  changed: {line}")
        raise SystemExit(2)
