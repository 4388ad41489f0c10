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
test_pkgs=(haproxy nginx wrk prometheus prometheus-alertmanager openssl curl jq shellcheck python3-prometheus-client)

if [ "${1:-}" = "--python-only" ]; then
  wanted=("${python_pkgs[@]}")
else
  wanted=("${python_pkgs[@]}" "${lab_pkgs[@]}" "${test_pkgs[@]}")
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
