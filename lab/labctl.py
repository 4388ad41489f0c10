"""The lab's hosts: podman containers with systemd, one per inventory host.

    labctl.py preflight                 one-line answers to "can this machine run the lab?"
    labctl.py image                     build the base image unless this recipe's image exists
    labctl.py up     -i INVENTORY       network + one container per inventory host, repaired if half made
    labctl.py down   -i INVENTORY       remove every container, network and volume carrying the lab's label
    labctl.py summary -i INVENTORY      what is where

The topology is data: every host of the inventory (`ansible-inventory --list`) becomes a container named after
it. Only objects labelled ``io.strata.lab=<lab name>`` are ever touched, so nothing of another project is.
Standard library only: this runs before and outside the venv too.
"""

from __future__ import annotations

import argparse
import hashlib
import ipaddress
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
LABEL = "io.strata.lab"
RECIPE_LABEL = "io.strata.lab.recipe"
IMAGE_NAME = "localhost/strata-lab-bookworm"
MIN_FREE_GIB = 8
RUN_TIMEOUT = 600

os.environ.setdefault("CONTAINERS_CONF", str(HERE / "containers.conf"))


class LabError(Exception):
    """A problem the user can act on: printed as one line, exit status 1."""


def run(cmd: list[str], check: bool = True, timeout: int = RUN_TIMEOUT,
        cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False, cwd=cwd)
    except FileNotFoundError as exc:
        raise LabError(f"{cmd[0]} is not installed: run `make lab` (it installs the host packages) as root") from exc
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"`{' '.join(cmd)}` did not finish within {timeout}s") from exc
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise LabError(f"`{' '.join(cmd)}` failed: {detail[-1] if detail else f'exit {proc.returncode}'}")
    return proc


def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run(["podman", *args], check=check)


# ---------------------------------------------------------------------------------------------- preflight
def preflight(args: argparse.Namespace | None) -> None:
    if os.geteuid() != 0:
        raise LabError("the lab needs root (rootful podman with systemd containers): run `sudo make lab`")
    if not shutil.which("podman"):
        if not shutil.which("apt-get"):
            raise LabError("podman is missing and this is not a Debian/Ubuntu host (no apt-get): install podman, "
                           "runc, netavark, aardvark-dns and debootstrap, then run `make lab` again")
        raise LabError("podman is missing: run `make host-deps` (installs Debian's podman) or `make lab`")
    free_gib = shutil.disk_usage("/var/lib").free / 2**30
    if free_gib < MIN_FREE_GIB:
        raise LabError(f"only {free_gib:.1f} GiB free under /var/lib: the lab needs about {MIN_FREE_GIB} GiB "
                       "(12 hosts with their packages); free some space and run `make lab` again")
    print(f"preflight: root, podman, {free_gib:.0f} GiB free: ok")


# -------------------------------------------------------------------------------------------------- image
def image_ref() -> str:
    recipe = (HERE / "build-image.sh").read_bytes()
    return f"{IMAGE_NAME}:{hashlib.sha256(recipe).hexdigest()[:12]}"


def print_image_ref(args: argparse.Namespace) -> None:
    print(image_ref())


def image(args: argparse.Namespace) -> None:
    ref = image_ref()
    if podman("image", "exists", ref, check=False).returncode == 0:
        print(f"image: {ref} already built")
        return
    started = time.monotonic()
    subprocess.run([str(HERE / "build-image.sh"), ref], check=True)
    print(f"image: built {ref} in {time.monotonic() - started:.0f}s")


# -------------------------------------------------------------------------------------------- inventory
def load_inventory(path: str) -> dict:
    venv_exe = ROOT / ".venv" / "bin" / "ansible-inventory"
    exe = str(venv_exe) if venv_exe.exists() else (shutil.which("ansible-inventory") or "ansible-inventory")
    # from the checkout, where ansible.cfg and its relative vault password path apply
    data = json.loads(run([exe, "-i", str(Path(path).resolve()), "--list"], cwd=ROOT).stdout)
    groups = {name: sorted(body.get("hosts", [])) for name, body in data.items()
              if name != "_meta" and isinstance(body, dict)}
    hosts = sorted({host for members in groups.values() for host in members})
    if not hosts:
        raise LabError(f"inventory {path} has no hosts")
    # ansible-inventory lists only hosts that have variables under _meta.hostvars
    hostvars = {host: data.get("_meta", {}).get("hostvars", {}).get(host, {}) for host in hosts}
    first = hostvars[hosts[0]]
    lab = {
        "name": first.get("lab_name", "strata-lab"),
        "network": first.get("lab_network", "strata-lab"),
        "subnet": first.get("lab_subnet", "10.89.60.0/24"),
        "hosts": hosts,
        "hostvars": hostvars,
        "groups": groups,
    }
    try:
        ipaddress.ip_network(lab["subnet"])
    except ValueError as exc:
        raise LabError(f"lab_subnet {lab['subnet']!r} is not a network in CIDR form (e.g. 10.89.60.0/24)") from exc
    return lab


def check_addresses(lab: dict) -> None:
    """Refuse, before anything is created, a host's lab_ip that podman would reject or that would clash.

    Every lab_ip must be an address of lab_subnet other than its network address, its broadcast address and
    its first address (the gateway podman gives the network), and no two hosts may share one.
    """
    subnet = ipaddress.ip_network(lab["subnet"])
    # arithmetic, not subnet.hosts(): an IPv6 /64 has 2**64 of them
    gateway = subnet.network_address + 1 if subnet.num_addresses > 2 else None
    usable = (f"{subnet.network_address + 2}-{subnet.broadcast_address - 1}" if subnet.num_addresses > 4
              else "none: lab_subnet is too small")
    problems = []
    owner: dict[ipaddress.IPv4Address | ipaddress.IPv6Address, str] = {}
    for host in lab["hosts"]:
        raw = lab["hostvars"][host].get("lab_ip")
        if raw in (None, ""):
            continue
        try:
            addr = ipaddress.ip_address(str(raw))
        except ValueError:
            problems.append(f"{host}: lab_ip {raw!r} is not an IP address (expected one inside {subnet})")
            continue
        if addr not in subnet or addr in (subnet.network_address, subnet.broadcast_address):
            problems.append(f"{host}: lab_ip {addr} is outside lab_subnet {subnet} (expected one of {usable})")
        elif addr == gateway:
            problems.append(f"{host}: lab_ip {addr} is the gateway of lab_subnet {subnet} (choose another address)")
        elif addr in owner:
            problems.append(f"{host}: lab_ip {addr} is already the lab_ip of {owner[addr]} (each host needs its own)")
        else:
            owner[addr] = host
    if problems:
        raise LabError("refusing to create the lab, fix lab_ip in the inventory: " + "; ".join(problems))


def container_spec(lab: dict, host: str, ref: str) -> list[str]:
    hv = lab["hostvars"][host]
    args = [
        "--name", host, "--hostname", host,
        "--label", f"{LABEL}={lab['name']}",
        "--network", lab["network"],
        "--cap-add", "SYS_ADMIN,SYS_PTRACE,NET_ADMIN",
        "--systemd", "always",
        "--volume", f"{apt_volume(lab, host)}:/var/cache/apt/archives",
    ]
    if hv.get("lab_ip"):
        args += ["--ip", str(hv["lab_ip"])]
    if hv.get("lab_memory"):
        args += ["--memory", str(hv["lab_memory"])]
    for publish in hv.get("lab_publish", []):
        args += ["--publish", str(publish)]
    recipe = hashlib.sha256(json.dumps([ref, args], sort_keys=True).encode()).hexdigest()[:12]
    return [*args, "--label", f"{RECIPE_LABEL}={recipe}", ref]


def apt_volume(lab: dict, host: str) -> str:
    """Each host keeps its downloaded .debs in a labelled volume that outlives the container.

    One archive folder shared by all containers does not work: apt holds /var/cache/apt/archives/lock for the
    whole install, so concurrent installs on several hosts fail with "Could not get lock". A per-host volume
    keeps re-creations (and a second `make lab`) from downloading again; `make lab-down` removes them.
    """
    return f"{lab['name']}-apt-{host}"


def ensure_apt_volume(lab: dict, host: str) -> None:
    name = apt_volume(lab, host)
    if podman("volume", "exists", name, check=False).returncode != 0:
        podman("volume", "create", "--label", f"{LABEL}={lab['name']}", name)


def lab_containers(name: str) -> dict[str, dict]:
    out = podman("ps", "-a", "--filter", f"label={LABEL}={name}", "--format", "json").stdout
    return {c["Names"][0]: c for c in json.loads(out or "[]")}


def ensure_network(lab: dict) -> None:
    exists = podman("network", "exists", lab["network"], check=False).returncode == 0
    if exists:
        info = json.loads(podman("network", "inspect", lab["network"]).stdout)[0]
        if info.get("labels", {}).get(LABEL) != lab["name"]:
            raise LabError(f"a podman network named {lab['network']} exists but was not made by this lab: "
                           "set lab_network in the inventory to another name")
        return
    podman("network", "create", "--label", f"{LABEL}={lab['name']}", "--subnet", lab["subnet"], lab["network"])
    print(f"network: created {lab['network']} ({lab['subnet']})")


def up(args: argparse.Namespace) -> None:
    preflight(args)
    lab = load_inventory(args.inventory)
    check_addresses(lab)
    ref = image_ref()
    if podman("image", "exists", ref, check=False).returncode != 0:
        image(args)
    ensure_network(lab)
    existing = lab_containers(lab["name"])
    foreign = podman("ps", "-a", "--format", "{{.Names}}").stdout.split()
    created = started = 0
    for host in lab["hosts"]:
        spec = container_spec(lab, host, ref)
        recipe = spec[-2].split("=", 1)[1]
        current = existing.get(host)
        if current is None and host in foreign:
            raise LabError(f"a container named {host} exists but is not part of lab {lab['name']}: "
                           "rename it or remove that host from the inventory")
        if current and current.get("Labels", {}).get(RECIPE_LABEL) != recipe:
            print(f"{host}: its image or settings changed: replacing the container")
            podman("rm", "-f", "-t", "5", host)
            current = None
        if current is None:
            ensure_apt_volume(lab, host)
            podman("run", "-d", *spec)
            created += 1
        elif current.get("State") != "running":
            podman("start", host)
            started += 1
    for name in sorted(set(existing) - set(lab["hosts"])):
        print(f"{name}: no longer in the inventory: removing its container")
        podman("rm", "-f", "-t", "5", name)
    wait_running(lab["hosts"])
    print(f"hosts: {len(lab['hosts'])} running ({created} created, {started} restarted)")


def wait_running(hosts: list[str], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    pending = set(hosts)
    while pending and time.monotonic() < deadline:
        for host in sorted(pending):
            state = podman("exec", host, "systemctl", "is-system-running", check=False).stdout.strip()
            if state in ("running", "degraded"):
                pending.discard(host)
        if pending:
            time.sleep(0.5)
    if pending:
        raise LabError(f"systemd did not reach 'running' within {timeout:.0f}s on: {', '.join(sorted(pending))} "
                       "(look with `podman exec HOST systemctl --failed`)")


def down(args: argparse.Namespace) -> None:
    lab = load_inventory(args.inventory)
    name = lab["name"]
    ids = podman("ps", "-aq", "--filter", f"label={LABEL}={name}").stdout.split()
    if ids:
        podman("rm", "-f", "-v", "-t", "5", *ids)
    nets = podman("network", "ls", "-q", "--filter", f"label={LABEL}={name}").stdout.split()
    if nets:
        podman("network", "rm", "-f", *nets)
    vols = podman("volume", "ls", "-q", "--filter", f"label={LABEL}={name}").stdout.split()
    if vols:
        podman("volume", "rm", "-f", *vols)
    print(f"lab {name}: removed {len(ids)} containers, {len(nets)} networks, {len(vols)} volumes")


def summary(args: argparse.Namespace) -> None:
    lab = load_inventory(args.inventory)
    containers = lab_containers(lab["name"])
    addresses = {}
    for host in lab["hosts"]:
        if host in containers:
            info = json.loads(podman("inspect", host).stdout)[0]
            nets = info["NetworkSettings"]["Networks"]
            addresses[host] = nets.get(lab["network"], {}).get("IPAddress", "?")
    groups = {g: h for g, h in lab["groups"].items() if g not in ("all", "ungrouped") and h}
    width = max(len(h) for h in lab["hosts"])
    print(f"\nLab '{lab['name']}' on podman network {lab['network']} ({lab['subnet']}):")
    for group, members in sorted(groups.items()):
        print(f"  [{group}]")
        for host in members:
            state = containers.get(host, {}).get("State", "missing")
            print(f"    {host:<{width}}  {addresses.get(host, '-'):<15}  {state}")
    for host in groups.get("lb", []):
        # The certificate names the host's address; the CA is the lab's own (strata.deploy.pki, .pki/lab).
        print(f"Load balancer {host}: curl --cacert .pki/lab/ca.crt https://{addresses.get(host)}/version")
    for host in groups.get("monitoring", []):
        print(f"Monitoring {host}: Prometheus https://{addresses.get(host)}:9090/, "
              f"Alertmanager https://{addresses.get(host)}:9093/ "
              "(CA .pki/lab/ca.crt, user admin, password in the lab vault)")
    print("A shell on a host:   podman exec -it HOST bash")
    print(f"Ad-hoc Ansible:      .venv/bin/ansible all -i {args.inventory} -m ansible.builtin.ping")
    print("Tear it all down:    make lab-down")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, func in (("preflight", preflight), ("image", image), ("up", up), ("down", down),
                       ("summary", summary), ("image-ref", print_image_ref)):
        cmd = sub.add_parser(name)
        cmd.add_argument("-i", "--inventory", default=str(ROOT / "inventories" / "lab"))
        cmd.set_defaults(func=func)
    args = parser.parse_args()
    try:
        args.func(args)
    except LabError as exc:
        print(f"lab: {exc}", file=sys.stderr)
        return 1
    except subprocess.CalledProcessError as exc:
        print(f"lab: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
