"""Run every AWX job template's playbook the way AWX does - through ansible-runner, with the survey defaults as
extra vars - against the live lab (`make lab` first). Check mode by default; --run runs for real.

    PYTHONPATH=.cache/collections .venv/bin/python awx/check_templates.py [--run] [--inventory inventories/lab]
                                                                          [--timeout SECONDS] [TEMPLATE ...]

Prints the timeout, then one line per template (status, return code, wall time) and exits 1 when any failed; a
template that outlives --timeout (default 3600 s; the site template in check mode once hit a fixed 1800 s) is
stopped by ansible-runner and counts as failed. The failover and
rejoin templates must refuse on a healthy lab (REFUSES_ON_A_HEALTHY_LAB): that refusal counts as passing.
Not part of `make test`: it needs the lab's containers.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import ansible_runner
import yaml

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TIMEOUT = 3600

# Templates whose playbook must REFUSE on a healthy lab (its survey defaults name a live primary): the refusal,
# with its own message, is the proof that the template works; any other outcome is a failure.
REFUSES_ON_A_HEALTHY_LAB = {
    "strata postgresql failover": "still accepts connections",
    "strata postgresql rejoin": "No live primary besides",
}


def survey_defaults(spec: dict[str, Any] | None) -> dict[str, Any]:
    """The extra vars AWX sends when the survey is accepted as it stands."""
    values: dict[str, Any] = {}
    for question in (spec or {}).get("spec", []):
        default = question.get("default", "")
        if question["type"] == "multiselect":
            values[question["variable"]] = [v for v in str(default).split("\n") if v]
        elif question["type"] == "integer":
            values[question["variable"]] = int(default)
        else:
            values[question["variable"]] = default
    return values


def positive_seconds(text: str) -> int:
    """--timeout: a whole number of seconds, at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"--timeout expects a whole number of seconds >= 1, got {text!r}")
    return value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("templates", nargs="*", help="template names (default: all)")
    parser.add_argument("--run", action="store_true", help="run for real instead of --check")
    parser.add_argument("--inventory", default="inventories/lab")
    parser.add_argument("--timeout", type=positive_seconds, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                        help=f"stop one template's run after this many seconds (default {DEFAULT_TIMEOUT})")
    args = parser.parse_args()

    templates = yaml.safe_load((ROOT / "awx/controller/templates.yml").read_text())["controller_templates"]
    unknown = sorted(set(args.templates) - {t["name"] for t in templates})
    if unknown:
        parser.error(f"no template named {', '.join(map(repr, unknown))} in awx/controller/templates.yml "
                     f"(expected one of: {', '.join(t['name'] for t in templates)})")
    chosen = [t for t in templates if not args.templates or t["name"] in args.templates]
    env = {
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_NOCOLOR": "1",
        "CONTAINERS_CONF": str(ROOT / "lab/containers.conf"),
        "PATH": f"{ROOT / '.venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    failed = 0
    print(f"{len(chosen)} templates, {'run' if args.run else 'check mode'}, timeout {args.timeout}s per template "
          f"(--timeout), inventory {args.inventory}", flush=True)
    for template in chosen:
        extravars = {**template.get("extra_vars", {}), **survey_defaults(template.get("survey_spec"))}
        start = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="strata-awx-") as private:
            result = ansible_runner.run(
                private_data_dir=private,
                project_dir=str(ROOT),
                playbook=template["playbook"],
                inventory=str(ROOT / args.inventory),
                extravars=extravars,
                cmdline="" if args.run else "--check",
                envvars=env,
                quiet=True,
                timeout=args.timeout,
            )
            output = result.stdout.read()
            refusal = REFUSES_ON_A_HEALTHY_LAB.get(template["name"])
            if refusal and not args.run:
                ok = result.status == "failed" and refusal in " ".join(output.split())
                verdict = "refused as it must on a healthy lab" if ok else "did NOT refuse as it must"
            else:
                ok = (result.status, result.rc) == ("successful", 0)
                verdict = ""
            print(f"{template['name']:32} {result.status:10} rc={result.rc} {time.monotonic() - start:6.1f}s {verdict}",
                  flush=True)
            if not ok:
                failed += 1
                print("\n".join(output.splitlines()[-40:]))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
