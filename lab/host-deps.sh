#!/usr/bin/env bash
# Install the Debian packages the lab and the test suite need on the machine itself. Idempotent and quick
# when everything is there already (one dpkg-query). Daemons installed here (haproxy, nginx, prometheus) are
# NOT started: the tests start their own instances on 127.0.0.1.
#
#   lab/host-deps.sh                 everything
#   lab/host-deps.sh --python-only   only what creating the venv needs
set -euo pipefail

die() { echo "host-deps: $*" >&2; exit 1; }

python_pkgs=(python3-venv python3-dev gcc git rsync)
lab_pkgs=(podman runc conmon netavark aardvark-dns iptables debootstrap uidmap ca-certificates)
test_pkgs=(haproxy nginx wrk prometheus prometheus-alertmanager openssl curl jq shellcheck python3-prometheus-client
  redis-server redis-sentinel redis-tools)

if [ "${1:-}" = "--python-only" ]; then
  wanted=("${python_pkgs[@]}")
else
  wanted=("${python_pkgs[@]}" "${lab_pkgs[@]}" "${test_pkgs[@]}")
fi

# Every container runs its own systemd, and each takes several inotify instances from the machine's per-user
# limit (root's, shared by all rootful containers). Debian's default of 128 runs out at about 20 containers:
# systemd then logs "Failed to create inotify object: Too many open files" and its boot hangs with every job
# waiting. Raise it (machine-wide, harmless) when it is lower; say so when that is not permitted.
raise_limit() {  # raise_limit KEY MINIMUM
  local file=/proc/sys/${1//.//} current
  current=$(cat "$file" 2>/dev/null || echo 0)
  if [ "$current" -lt "$2" ]; then
    if echo "$2" >"$file" 2>/dev/null; then
      echo "host-deps: raised $1 from $current to $2 (many systemd containers)"
    else
      echo "host-deps: warning: $1 is $current and cannot be raised here; more than ~20 lab containers at once will hang at boot" >&2
    fi
  fi
}
if [ "${1:-}" != "--python-only" ] && [ "$(id -u)" -eq 0 ]; then
  raise_limit fs.inotify.max_user_instances 2048
  raise_limit fs.inotify.max_user_watches 524288
fi

missing=()
for pkg in "${wanted[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  [ "$status" = "install ok installed" ] || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

[ "$(id -u)" -eq 0 ] || die "missing packages (${missing[*]}) and not root: run \`sudo make lab\` (or install them)"
command -v apt-get >/dev/null || die "missing packages (${missing[*]}) and no apt-get: this needs Debian or Ubuntu"

echo "host-deps: installing ${missing[*]}"
# Keep package scripts from starting daemons on this machine (policy-rc.d exit 101 = "do not start").
created_policy=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  created_policy=1
fi
trap '[ $created_policy -eq 1 ] && rm -f /usr/sbin/policy-rc.d' EXIT

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq || die "apt-get update failed: check the network path to the Debian mirror"
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
  || die "apt-get install ${missing[*]} failed (run it by hand to see why)"
echo "host-deps: done"
