# Copyright: (c) 2025, strata.deploy maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action ``strata.deploy.canary``: a whole canary rollout, driven from the controller.

Documented in plugins/modules/canary.py (options, return values, how each load balancer is reached).

Thin on purpose. The state machine (steps, gates, on_failure, abort, resume) is ``module_utils/_traffic/rollout.py``;
this file only gives it a ``Port`` made of Ansible things:

- every load balancer is reached through a connection of its own, set up the way ``TaskExecutor`` sets up a
  ``delegate_to`` task (``_connect``): the host's variables as ``VariableManager.get_vars`` gives them for a
  delegated host, its connection plugin with those variables, its become and shell plugins; modules then run there
  with ``ActionBase._execute_module``, so interpreter discovery, pipelining, temporary folders and become behave as
  for any task. The task's own host (or delegated host) uses the task's connection;
- the provider modules set and read the weights (one module run per load balancer per step);
- ``ansible.builtin.stat``/``slurp``/``file``/``copy`` read and write the journal on each load balancer, unless the
  provider keeps it itself (``Provider.journal_args_for``; ALB: tags on the rule, written by ``alb_traffic`` and
  read by ``traffic_info``);
- ``strata.deploy.prometheus_gate`` runs on the task's own host;
- progress goes to ``Display.display`` (shown at once, while the task runs).
"""

from __future__ import annotations

import base64
import dataclasses
import getpass
import os
import posixpath
import re
import socket
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from ansible import constants as C
from ansible.errors import AnsibleActionFail, AnsibleError
from ansible.module_utils.common.text.converters import to_text
from ansible.module_utils.parsing.convert_bool import boolean
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display
from ansible_collections.strata.deploy.plugins.module_utils._traffic import journal as jr
from ansible_collections.strata.deploy.plugins.module_utils._traffic import rollout as ro
from ansible_collections.strata.deploy.plugins.module_utils._traffic.errors import JournalError, TrafficError

display = Display()

GATE_MODULE = "strata.deploy.prometheus_gate"
JOURNAL_DIR = "/var/lib/strata/rollouts"
_UTC = timezone.utc  # noqa: UP017 - same spelling as module_utils (ansible-test imports plugins on older Pythons)

ARGUMENT_SPEC: dict[str, dict[str, Any]] = {
    "provider": {"type": "str", "required": True, "choices": sorted(ro.PROVIDERS)},
    "load_balancers": {"type": "list", "elements": "str", "required": True},
    "provider_options": {"type": "dict", "default": {}},
    "provider_options_per_lb": {"type": "dict", "default": {}},
    "backend": {"type": "str", "required": True},
    "stable": {"type": "list", "elements": "str", "required": True},
    "canary": {"type": "list", "elements": "str", "required": True},
    "steps": {"type": "list", "elements": "raw", "default": [10, 25, 50, 100]},
    "pause": {"type": "raw", "default": 0},
    "allow_non_monotonic": {"type": "bool", "default": False},
    "gate": {"type": "dict"},
    "gate_retries": {"type": "int", "default": 0},
    "gate_retry_delay": {"type": "raw", "default": "10s"},
    "on_failure": {"type": "str", "choices": list(ro.ON_FAILURE), "default": ro.ROLLBACK},
    "abort_steps": {"type": "raw", "default": "immediate"},
    "abort_pause": {"type": "raw", "default": 0},
    "resume_policy": {"type": "str", "choices": list(jr.RESUME_POLICIES), "default": jr.RESUME},
    "rollout_id": {"type": "str"},
    "mode": {"type": "str", "choices": list(ro.MODES), "default": ro.MODE_ROLLOUT},
    "retry_rolled_back": {"type": "bool", "default": False},
    "journal_path": {"type": "str"},
}


def _failed(result: Mapping[str, Any]) -> bool:
    return bool(result.get("failed") or result.get("unreachable"))


def _message(result: Mapping[str, Any]) -> str:
    return to_text(result.get("msg") or result.get("module_stderr") or result.get("stderr") or "no message").strip()


class _Runner(ActionBase):
    """An ``ActionBase`` bound to another host's connection: only its module-running helpers are used."""

    def run(self, tmp: str | None = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        raise NotImplementedError("only used to run modules on a load balancer")


class Target:
    """One host the action runs modules on: the task's own host, or a load balancer reached like a delegated task."""

    def __init__(self, name: str, runner: ActionBase, variables: dict[str, Any], own: bool) -> None:
        self.name = name
        self.runner = runner
        self.variables = variables
        self.own = own
        self._journal_dir_ready = False

    def run_module(self, module: str, args: Mapping[str, Any]) -> dict[str, Any]:
        """The module's result; a connection failure is a failed result that says so (never an exception)."""
        try:
            return self.runner._execute_module(module_name=module, module_args=dict(args), task_vars=self.variables)
        except AnsibleError as exc:
            return {"failed": True, "unreachable": True, "msg": f"{self.name} could not run {module}: {exc}"}

    def read_journal(self, path: str) -> jr.Journal | None:
        try:
            exists = self.runner._remote_file_exists(path)  # one shell command, no module
        except AnsibleError as exc:
            raise ro.RolloutError(f"{self.name}: checking the journal {path} failed: {exc}") from None
        if not exists:
            return None
        self._journal_dir_ready = True
        read = self.run_module("ansible.legacy.slurp", {"src": path})
        if _failed(read):
            raise ro.RolloutError(f"{self.name}: reading the journal {path} failed: {_message(read)}")
        try:
            return jr.loads(base64.b64decode(read["content"]))
        except JournalError as exc:
            raise ro.RolloutError(
                f"{self.name}: the journal {path} cannot be used ({exc}); nothing was changed. Move it aside after "
                "checking the load balancers (strata.deploy.traffic_info) to start over"
            ) from None

    def write_journal(self, path: str, text: str) -> None:
        """Atomically (the copy module renames a temporary file over the journal), mode 0640, folder 0750."""
        if not self._journal_dir_ready:
            folder = self.run_module(
                "ansible.legacy.file", {"path": posixpath.dirname(path), "state": "directory", "mode": "0750"}
            )
            if _failed(folder):
                raise ro.SaveError(f"{self.name}: creating the folder of {path} failed: {_message(folder)}")
            self._journal_dir_ready = True
        runner = self.runner
        try:
            tmpdir = runner._connection._shell.tmpdir or runner._make_tmp_path()
            source = runner._connection._shell.join_path(tmpdir, "strata-journal.json")
            runner._transfer_data(source, text)
            runner._fixup_perms2((tmpdir, source), execute=False)
        except AnsibleError as exc:
            raise ro.SaveError(f"{self.name}: sending the journal failed: {exc}") from None
        copied = self.run_module(
            "ansible.legacy.copy",
            {"src": source, "dest": path, "mode": "0640", "_original_basename": posixpath.basename(path)},
        )
        if _failed(copied):
            raise ro.SaveError(f"{self.name}: writing the journal {path} failed: {_message(copied)}")

    def close(self) -> None:
        if self.own:
            return  # the task's own connection and temporary folder are the TaskExecutor's
        try:
            self.runner.cleanup(force=True)
        except AnsibleError as exc:
            display.warning(f"strata.deploy.canary: could not remove the temporary folder on {self.name}: {exc}")
        finally:
            self.runner._connection.close()


def _host_vars(task: Any, task_vars: Mapping[str, Any], host: str) -> dict[str, Any]:
    """The variables of ``host`` as a task delegated to it sees them (what
    ``VariableManager.get_delegated_vars_and_hostname`` computes), or, should the variable manager not be reachable,
    its inventory variables and facts."""
    hostvars = task_vars.get("hostvars")
    if hostvars is None or host not in hostvars:
        raise AnsibleActionFail(f"load_balancers: {host!r} is not a host of the inventory")
    manager = getattr(hostvars, "_variable_manager", None)
    inventory = getattr(hostvars, "_inventory", None)
    if manager is not None and inventory is not None:
        variables = dict(manager.get_vars(play=task.get_play(), host=inventory.get_host(host), task=task))
    else:
        variables = dict(hostvars.raw_get(host))
    variables["ansible_facts"] = dict(variables.get("ansible_facts") or {})
    return variables


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _supports_check_mode = True
    _supports_async = False

    # -- reaching the load balancers -------------------------------------------------------------

    def _connect(self, task_vars: dict[str, Any], host: str) -> Target:
        """A connection to ``host`` set up as ``TaskExecutor._execute_internal`` does for ``delegate_to: host``."""
        own = self._task.delegate_to or task_vars.get("inventory_hostname")
        if host == own:
            return Target(host, self, task_vars, own=True)
        loaders = self._shared_loader_obj
        task = self._task.copy()
        task.delegate_to = host
        cvars = _host_vars(self._task, task_vars, host)
        variables = dict(task_vars, ansible_delegated_vars={host: cvars})
        templar = self._templar.copy_with_new_env(available_variables=cvars)
        play_context = self._play_context.set_task_and_variable_override(
            task=task, variables=variables, templar=templar
        )
        play_context.post_validate(templar=templar)
        if not play_context.remote_addr:
            play_context.remote_addr = host
        kind = templar.template(cvars["ansible_connection"]) if cvars.get("ansible_connection") else task.connection
        play_context.connection = kind
        connection = loaders.connection_loader.get(
            kind, play_context, new_stdin=None, task_uuid=task._uuid, ansible_playbook_pid=to_text(os.getppid())
        )
        if connection is None:
            raise AnsibleActionFail(f"load_balancers: the connection plugin {kind!r} of {host} was not found")
        become = boolean(templar.template(cvars["ansible_become"])) if "ansible_become" in cvars else task.become
        if become:
            method = templar.template(cvars.get("ansible_become_method") or task.become_method)
            connection.set_become_plugin(loaders.become_loader.get(method))
            play_context.set_become_plugin(method)
        else:
            connection.set_become_plugin(None)
        play_context.set_attributes_from_plugin(connection)
        task_keys = task.dump_attrs()
        task_keys["timeout"] = play_context.timeout
        if play_context.password:
            task_keys["password"] = play_context.password
        task_keys.pop("retries", None)
        connection.set_options(task_keys=task_keys, var_options=connection._resolve_option_variables(cvars, templar))
        for kind_of, plugin in (("shell", connection._shell), ("become", connection.become)):
            if plugin is not None:
                names = C.config.get_plugin_vars(kind_of, plugin._load_name)
                options = {name: templar.template(cvars[name]) for name in names if name in cvars}
                if kind_of == "become" and play_context.become_pass:
                    task_keys["become_pass"] = play_context.become_pass
                plugin.set_options(task_keys=task_keys, var_options=options)
        runner = _Runner(task, connection, play_context, self._loader, templar, loaders)
        return Target(host, runner, variables, own=False)

    # -- the run ---------------------------------------------------------------------------------

    def run(self, tmp: str | None = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        started = time.monotonic()
        result = super().run(tmp, task_vars)
        task_vars = task_vars or {}
        _validation, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        try:
            spec, options = self._inputs(args)
        except TrafficError as exc:
            raise AnsibleActionFail(f"{exc}; nothing was changed") from None
        if spec.provider.journal_in_provider:
            journal_path = f"kept by {spec.provider.name} with {spec.backend}"  # ALB: the rule's tags
        else:
            journal_path = args["journal_path"] or f"{JOURNAL_DIR}/{re.sub(r'[^A-Za-z0-9._-]', '_', spec.backend)}.json"
        targets: dict[str, Target] = {}
        try:
            for lb in args["load_balancers"]:
                targets[lb] = self._connect(task_vars, lb)
            own = self._task.delegate_to or task_vars.get("inventory_hostname", "localhost")
            gate_target = Target(own, self, task_vars, own=True)
            port = LoadBalancers(
                spec=spec,
                targets=targets,
                options=options,
                gate_target=gate_target,
                gate_args=args["gate"],
                journal_path=journal_path,
            )
            outcome = self._drive(port, args)
        finally:
            for target in targets.values():
                target.close()
        result.update(self._result(port.spec, args, outcome, journal_path, time.monotonic() - started))
        return result

    def _inputs(self, args: Mapping[str, Any]) -> tuple[ro.RolloutSpec, dict[str, dict[str, Any]]]:
        if args["mode"] == ro.MODE_ROLLOUT and not args["rollout_id"]:
            # not a required_if: the validator checks those before it fills in the default of mode
            raise AnsibleActionFail("rollout_id: required with mode rollout (such as app-1.1.0); nothing was changed")
        lbs = args["load_balancers"]
        if not lbs:
            raise AnsibleActionFail("load_balancers: expected at least one load balancer; nothing was changed")
        twice = sorted({lb for lb in lbs if lbs.count(lb) > 1})
        if twice:
            raise AnsibleActionFail(f"load_balancers: {', '.join(twice)} listed twice; nothing was changed")
        per_lb = args["provider_options_per_lb"]
        unknown = sorted(str(lb) for lb in per_lb if lb not in lbs)
        if unknown:
            raise AnsibleActionFail(
                f"provider_options_per_lb: {', '.join(unknown)} not in load_balancers; nothing was changed"
            )
        spec = ro.build_spec(
            rollout_id=args["rollout_id"] or f"rollback-{args['backend']}",
            provider=args["provider"],
            backend=args["backend"],
            stable=args["stable"],
            canary=args["canary"],
            steps=args["steps"],
            pause=args["pause"],
            gated=bool(args["gate"]),
            allow_non_monotonic=args["allow_non_monotonic"],
            abort_steps=args["abort_steps"],
            abort_pause=args["abort_pause"],
            on_failure=args["on_failure"],
            resume_policy=args["resume_policy"],
            gate_retries=args["gate_retries"],
            gate_retry_delay=args["gate_retry_delay"],
            mode=args["mode"],
            retry_rolled_back=args["retry_rolled_back"],
        )
        common = spec.provider.check_options(args["provider_options"], "provider_options")
        options = {
            lb: dict(common, **spec.provider.check_options(per_lb.get(lb), f"provider_options_per_lb.{lb}"))
            for lb in lbs
        }
        return spec, options

    def _drive(self, port: LoadBalancers, args: Mapping[str, Any]) -> ro.Outcome:
        """Load the journals, decide and run; ``port.spec`` ends as the spec that ran (its rollout_id may come from
        the journal in mode rollback)."""
        try:
            user = getpass.getuser()
        except (KeyError, OSError):  # no passwd entry and no LOGNAME/USER (some containers)
            user = str(os.getuid())
        who = f"{user}@{socket.gethostname()}"
        try:
            found = ro.pick_journal(port.load())
            if found is not None and port.spec.mode == ro.MODE_ROLLBACK and not args["rollout_id"]:
                port.spec = dataclasses.replace(port.spec, rollout_id=found.rollout_id)
            return ro.Rollout(port.spec, port, who, check_mode=bool(self._task.check_mode)).run(found)
        except TrafficError as exc:
            # raised before any change (inputs, unknown backend/server, a journal that cannot be read) or by a
            # journal write after one; the message says which
            raise AnsibleActionFail(str(exc)) from None

    def _result(
        self, spec: ro.RolloutSpec, args: Mapping[str, Any], outcome: ro.Outcome, journal_path: str, elapsed: float
    ) -> dict[str, Any]:
        journal = outcome.journal
        observed = {lb: None if p is None else round(p, 4) for lb, p in outcome.observed.items()}
        passed = sum(1 for gate in outcome.gates if gate["verdict"] == ro.PASSED)
        shares = ", ".join(f"{lb} {'none' if p is None else f'{p:.1f}%'}" for lb, p in observed.items())
        summary = (
            f"{spec.rollout_id} on {spec.provider.name} backend {spec.backend} ({', '.join(args['load_balancers'])}): "
            f"{outcome.status} - canary {shares}; {len(outcome.gates)} gate(s), {passed} passed; {elapsed:.1f}s"
        )
        display.display(f"[canary {spec.rollout_id}] {summary}")
        result: dict[str, Any] = {
            "changed": outcome.changed,
            "status": outcome.status,
            "decision": outcome.decision,
            "msg": outcome.message,
            "summary": summary,
            "rollout_id": spec.rollout_id,
            "observed": observed,
            "plan": [planned.as_dict() for planned in outcome.plan],
            "gates": outcome.gates,
            "events": jr.to_dict(journal)["events"] if journal else [],
            "journal": {
                "path": journal_path,
                "rollout_id": journal.rollout_id if journal else None,
                "phase": journal.phase if journal else None,
                "step_index": journal.step_index if journal else None,
            },
            "elapsed": round(elapsed, 3),
        }
        if not outcome.ok:
            result["failed"] = True
        return result


class LoadBalancers(ro.Port):
    """The rollout's ``Port``: provider modules on every load balancer, the gate module on the task's host."""

    def __init__(
        self,
        *,
        spec: ro.RolloutSpec,
        targets: Mapping[str, Target],
        options: Mapping[str, Mapping[str, Any]],
        gate_target: Target,
        gate_args: Mapping[str, Any] | None,
        journal_path: str,
    ) -> None:
        self.spec = spec
        self.targets = targets
        self.options = options
        self.gate_target = gate_target
        self.gate_args = dict(gate_args or {})
        self.journal_path = journal_path

    def load(self) -> dict[str, jr.Journal | None]:
        if self.spec.provider.journal_in_provider:
            return {lb: self._read_provider_journal(lb, target) for lb, target in self.targets.items()}
        return {lb: target.read_journal(self.journal_path) for lb, target in self.targets.items()}

    def _read_provider_journal(self, lb: str, target: Target) -> jr.Journal | None:
        """The journal the provider keeps (ALB: the rule's tags), from the info module's ``journals``."""
        provider = self.spec.provider
        backend = self.spec.backend
        result = target.run_module(provider.info_module, provider.info_args(backend, self.options[lb]))
        if _failed(result):
            raise ro.RolloutError(
                f"{lb}: reading the journal of {backend} with {provider.info_module} failed: {_message(result)}; "
                "nothing was changed"
            )
        text = (result.get("journals") or {}).get(backend)
        if text is None:
            return None
        try:
            return jr.loads(text)
        except JournalError as exc:
            raise ro.RolloutError(
                f"{lb}: the journal kept by {provider.name} for {backend} cannot be used ({exc}); nothing was changed. "
                "Remove it after checking the traffic (strata.deploy.traffic_info) to start over"
            ) from None

    def read(self) -> dict[str, ro.State]:
        provider = self.spec.provider
        states = {}
        for lb, target in self.targets.items():
            result = target.run_module(provider.info_module, provider.info_args(self.spec.backend, self.options[lb]))
            if _failed(result):
                raise ro.RolloutError(
                    f"{lb}: reading backend {self.spec.backend} with {provider.info_module} failed: "
                    f"{_message(result)}; nothing was changed"
                )
            states[lb] = provider.state_from(result, "servers", self.spec.backend, lb)
        return states

    def apply(self, target: ro.State) -> ro.Applied:
        provider = self.spec.provider
        states = {}
        changed = False
        for lb, host in self.targets.items():
            args = provider.set_args(self.spec.backend, target, self.options[lb])
            result = host.run_module(provider.set_module, args)
            if _failed(result):
                raise ro.ApplyError(lb, f"{provider.set_module} failed: {_message(result)}")
            changed = changed or bool(result.get("changed"))
            states[lb] = provider.state_from(result, provider.state_key, self.spec.backend, lb)
        return ro.Applied(states, changed)

    def gate(self, step: ro.Step | None) -> ro.GateOutcome:
        result = self.gate_target.run_module(GATE_MODULE, dict(self.gate_args, fail_on_failure=False))
        if _failed(result):
            raise ro.GateError(_message(result))
        checks = result.get("checks") or []
        results = tuple(
            jr.GateResult(
                name=str(check.get("name")),
                passed=check.get("status") == ro.PASSED,
                detail=str(check.get("detail") or check.get("value")),
            )
            for check in checks
        )
        return ro.GateOutcome(str(result.get("verdict")), str(result.get("reason") or ""), results)

    def save(self, journal: jr.Journal) -> None:
        text = jr.dumps(journal)
        provider = self.spec.provider
        if provider.journal_args_for is not None:
            for lb, target in self.targets.items():
                args = provider.journal_args_for(self.spec.backend, text)
                args.update({k: v for k, v in self.options[lb].items() if k in provider.set_options})
                written = target.run_module(provider.set_module, args)
                if _failed(written):
                    raise ro.SaveError(
                        f"{lb}: writing the journal with {provider.set_module} failed: {_message(written)}"
                    )
            return
        for target in self.targets.values():
            target.write_journal(self.journal_path, text)

    def wait(self, seconds: float) -> None:
        time.sleep(seconds)

    def progress(self, line: str) -> None:
        display.display(line)

    def now(self) -> datetime:
        return datetime.now(_UTC)
