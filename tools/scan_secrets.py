"""Prove that no secret reaches Ansible's output: converge a FRESH lab with `-vvv --diff` and canary secrets, then
search the whole log for every canary. Run by `make secrets-scan`; it REPLACES the lab (`make lab` afterwards
brings back the vault's values on a fresh lab).

    .venv/bin/python tools/scan_secrets.py [-i inventories/lab] [--keep] [--reuse-lab]

1. A canary for every variable of the lab's vault (group_vars/all/vault.yml): ``CANARY-<name>-<random>``,
   passed as extra vars (a 0600 file in a private temporary folder), so every role secret the vault feeds -
   and whatever is derived from it (Loki's proxy users, URLs, basic-auth headers) - carries a canary.
2. `labctl.py down` + `up` (a fresh lab: a converge that CHANGED running passwords would prove something
   else), then `ansible-playbook -vvv --diff playbooks/site.yml` into tests/output/logs/secrets-scan.log.
3. The log is searched for each canary as written, URL-encoded, JSON-escaped and base64-encoded (at each of
   the three byte alignments, so ``user:<secret>`` in a Basic header is found too), for the lab's vault
   password, and for every body line of the private keys: the CA's (.pki/<env>/ca.key) and each host's TLS
   key. Prints one line per secret (occurrences, and whether the canary reached a lab host's /etc, which shows
   it was really used) and exits 1 on any occurrence or when the converge failed.
4. The lab is removed at the end (its hosts hold canary secrets), unless --keep.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / ".venv" / "bin"
LOG = ROOT / "tests" / "output" / "logs" / "secrets-scan.log"
CONVERGE_TIMEOUT = 3600

os.environ.setdefault("CONTAINERS_CONF", str(ROOT / "lab" / "containers.conf"))


def vault_values(inventory: Path) -> dict[str, str]:
    """The variables of the inventory's vault and their values (decrypted with the vault ids of ansible.cfg)."""
    vault = inventory / "group_vars" / "all" / "vault.yml"
    out = subprocess.run([str(BIN / "ansible-vault"), "view", str(vault)], capture_output=True, text=True,
                         cwd=ROOT, check=True, timeout=120).stdout
    return {name: str(value) for name, value in yaml.safe_load(out).items()}


def vault_names(inventory: Path) -> list[str]:
    return sorted(vault_values(inventory))


def vault_password() -> str:
    """The lab's vault password file named in ansible.cfg (committed, lab-only): it must not be logged either."""
    for line in (ROOT / "ansible.cfg").read_text().splitlines():
        if line.strip().startswith("vault_identity_list"):
            path = line.split("=", 1)[1].strip().split("@", 1)[1]
            return (ROOT / path).read_text().strip()
    return ""


def encodings(value: str) -> set[str]:
    """The forms a secret takes in a log: as is, URL-encoded, JSON-escaped, and base64 at each alignment."""
    forms = {value, urllib.parse.quote(value, safe=""), json.dumps(value)[1:-1]}
    for pad in range(3):
        encoded = base64.b64encode(b"x" * pad + value.encode()).decode()
        # drop the characters that depend on the neighbouring bytes
        start = 4 if pad else 0
        forms.add(encoded[start:len(encoded) - 4])
    return {form for form in forms if len(form) >= 12}


def labctl(action: str, inventory: Path) -> None:
    print(f"lab: {action} ({time.strftime('%H:%M:%S')})", flush=True)
    subprocess.run([str(BIN / "python"), "lab/labctl.py", action, "-i", str(inventory)], cwd=ROOT, check=True,
                   timeout=1200)


def converge(inventory: Path, extra_vars: Path) -> int:
    LOG.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0", "PYTHONUNBUFFERED": "1"}
    cmd = [str(BIN / "ansible-playbook"), "-vvv", "--diff", "-i", str(inventory), "-e", f"@{extra_vars}",
           "playbooks/site.yml"]
    print(f"converge: {' '.join(cmd[1:])} > {LOG.relative_to(ROOT)}", flush=True)
    started = time.monotonic()
    with LOG.open("w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        last = 0.0
        while proc.poll() is None and time.monotonic() - started < CONVERGE_TIMEOUT:
            time.sleep(5)
            if time.monotonic() - last >= 60:
                last = time.monotonic()
                print(f"  ... {time.monotonic() - started:4.0f}s, log {LOG.stat().st_size // 1024} KiB", flush=True)
        if proc.poll() is None:
            proc.kill()
            print(f"converge: killed after {CONVERGE_TIMEOUT}s")
    print(f"converge: rc={proc.returncode} in {time.monotonic() - started:.0f}s", flush=True)
    return proc.returncode


def inventory_hosts(inventory: Path) -> list[str]:
    data = json.loads(subprocess.run([str(BIN / "ansible-inventory"), "-i", str(inventory), "--list"], cwd=ROOT,
                                     capture_output=True, text=True, check=True, timeout=120).stdout)
    return sorted({h for name, body in data.items() if name != "_meta" for h in body.get("hosts", [])})


def reached_hosts(hosts: list[str], canaries: dict[str, str]) -> dict[str, list[str]]:
    """Which canaries each lab host holds under /etc (proof they were used, not just defined)."""
    found: dict[str, list[str]] = {name: [] for name in canaries}
    patterns = "\n".join(canaries.values()) + "\n"
    for host in hosts:
        out = subprocess.run(["podman", "exec", "-i", host, "grep", "-rhoF", "-f", "/dev/stdin", "/etc"],
                             input=patterns, capture_output=True, text=True, check=False, timeout=120).stdout
        for name, value in canaries.items():
            if value in out:
                found[name].append(host)
    return found


def private_keys(inventory: Path, hosts: list[str]) -> dict[str, set[str]]:
    """The body lines of the environment's CA key (controller) and of each host's TLS key, read after the converge."""
    keys: dict[str, str] = {}
    ca_key = ROOT / ".pki" / inventory.name / "ca.key"
    if ca_key.exists():
        keys[f"CA key ({ca_key.relative_to(ROOT)})"] = ca_key.read_text()
    for host in hosts:
        out = subprocess.run(["podman", "exec", host, "sh", "-c", f"cat /etc/ssl/strata/{host}.key 2>/dev/null"],
                             capture_output=True, text=True, check=False, timeout=60).stdout
        if "PRIVATE KEY" in out:
            keys[f"TLS key of {host}"] = out
    return {name: {line.strip() for line in body.splitlines() if len(line.strip()) >= 40 and "-----" not in line}
            for name, body in keys.items()}


def report(text: str, needles: dict[str, set[str]], used: dict[str, list[str]]) -> int:
    """Print the recap and one line per secret; return how many occurrences the log holds."""
    lines = text.count("\n")
    leaks = 0
    recap = text[text.rfind("PLAY RECAP"):].splitlines()[1:]
    print("\n".join(line for line in recap if " : ok=" in line))
    print(f"\nscan: {lines} log lines, {len(text) // 1024} KiB ({LOG.relative_to(ROOT)})")
    print(f"{'secret':40} {'in log':>6}  reached")
    for name, forms in needles.items():
        count = sum(text.count(form) for form in forms)
        leaks += count
        holders = used.get(name)
        where = ", ".join(holders) if holders else ("-" if holders is None else "no host's /etc (role skipped here?)")
        print(f"{name:40} {count:6}  {where}")
        if count:
            for number, line in enumerate(text.splitlines(), 1):
                if any(form in line for form in forms):
                    print(f"    line {number}: {line.strip()[:160]}")
                    break
    return leaks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("-i", "--inventory", default="inventories/lab")
    parser.add_argument("--keep", action="store_true", help="keep the lab (with its canary secrets) afterwards")
    parser.add_argument("--reuse-lab", action="store_true",
                        help="converge the running lab instead of a fresh one (its passwords change to canaries)")
    parser.add_argument("--vault-values", action="store_true",
                        help="search for the vault's own values instead of canaries (implies --reuse-lab --keep: "
                             "a re-run of a converged lab, which changes nothing, so --diff shows little)")
    args = parser.parse_args()
    inventory = (ROOT / args.inventory).resolve()
    if args.vault_values:
        args.reuse_lab = args.keep = True

    names = vault_names(inventory)
    token = secrets.token_hex(4)
    if args.vault_values:
        canaries = vault_values(inventory)
    else:
        canaries = {name: f"CANARY-{name.removeprefix('vault_').replace('_', '-')}-{token}" for name in names}
    needles = {name: encodings(value) for name, value in canaries.items()}
    password = vault_password()
    if password:
        needles["vault password (ansible.cfg)"] = encodings(password)
    kind = "vault values" if args.vault_values else "canaries"
    print(f"secrets: {len(canaries)} {kind} for the variables of {args.inventory}'s vault (+ its vault password)")

    with tempfile.TemporaryDirectory(prefix="strata-canary-") as private:
        extra = Path(private) / "canaries.yml"
        extra.touch(mode=0o600)
        extra.write_text(yaml.safe_dump({} if args.vault_values else canaries))
        if not args.reuse_lab:
            labctl("down", inventory)
            labctl("up", inventory)
        rc = converge(inventory, extra)

    text = LOG.read_text(errors="replace")
    lines = text.count("\n")
    hosts = inventory_hosts(inventory)
    used = reached_hosts(hosts, canaries)
    needles.update(private_keys(inventory, hosts))
    leaks = report(text, needles, used)
    if not args.keep:
        labctl("down", inventory)
    print(f"\nsecrets-scan: {len(needles)} secrets, {lines} log lines, {leaks} occurrences; converge rc={rc}")
    return 1 if leaks or rc else 0


if __name__ == "__main__":
    sys.exit(main())
