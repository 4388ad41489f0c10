#!/usr/bin/env bash
# Build the lab's Debian bookworm systemd image locally (no registry is reachable from the lab machines).
#
#   lab/build-image.sh IMAGE_REF
#
# The image is tagged with a hash of this script (see lab/labctl.py), so it is rebuilt only when this recipe
# changes. Every step here is one of the traps listed in docs/lab.md; keep them.
set -euo pipefail

image=${1:?usage: build-image.sh IMAGE_REF}
mirror=${STRATA_LAB_MIRROR:-http://deb.debian.org/debian}
security_mirror=${STRATA_LAB_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
packages=systemd,systemd-sysv,dbus,python3,python3-apt,openssh-server,sudo,acl,iproute2,procps,ca-certificates,curl,gnupg,tzdata,locales,nftables

work=$(mktemp -d /var/tmp/strata-lab-image.XXXXXX)
cleanup() { rm -rf --one-file-system "$work"; }
trap cleanup EXIT
tree=$work/rootfs

echo "lab image: debootstrap bookworm (minbase + systemd) into $tree"
debootstrap --variant=minbase --include="$packages" bookworm "$tree" "$mirror" >"$work/debootstrap.log" 2>&1 || {
  tail -n 30 "$work/debootstrap.log" >&2
  echo "lab image: debootstrap failed (log above); check that $mirror is reachable" >&2
  exit 1
}

cat >"$tree/etc/apt/sources.list" <<EOF
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb $security_mirror bookworm-security main
EOF

# Each container gets its own machine-id; a clean hosts file (podman adds the container's own entries).
: >"$tree/etc/machine-id"
rm -f "$tree/var/lib/dbus/machine-id"
printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$tree/etc/hosts"

# Units that fail or make noise inside a container, and timers that would run apt behind Ansible's back.
for unit in systemd-timesyncd.service getty@tty1.service e2scrub_all.timer e2scrub_reap.service \
  apt-daily.timer apt-daily-upgrade.timer fstrim.timer systemd-firstboot.service; do
  ln -sf /dev/null "$tree/etc/systemd/system/$unit"
done

# The apt archives folder is a per-host volume in the lab: keep downloaded .debs there.
printf 'Binary::apt::APT::Keep-Downloaded-Packages "true";\nAPT::Keep-Downloaded-Packages "true";\n' \
  >"$tree/etc/apt/apt.conf.d/10strata-keep-debs"
rm -f "$tree/etc/apt/apt.conf.d/docker-clean"

# Empty apt lists and archives, and a backdated lists folder: otherwise apt's cache_valid_time believes the
# (empty) cache is fresh, skips the update and then finds no package at all.
rm -rf "$tree"/var/lib/apt/lists/* "$tree"/var/cache/apt/archives/*.deb "$tree"/var/cache/apt/*.bin
mkdir -p "$tree/var/lib/apt/lists/partial"
rm -f "$tree/var/lib/apt/periodic/update-success-stamp"
touch -d 2000-01-01 "$tree/var/lib/apt/lists"

# sshd host keys are made per container at first boot, not baked into the image.
rm -f "$tree"/etc/ssh/ssh_host_*
cat >"$tree/etc/systemd/system/strata-ssh-keygen.service" <<'EOF'
[Unit]
Description=Generate SSH host keys on first boot
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A

[Install]
WantedBy=multi-user.target
EOF
ln -sf /etc/systemd/system/strata-ssh-keygen.service "$tree/etc/systemd/system/multi-user.target.wants/"

echo "lab image: importing as $image"
tar -C "$tree" --numeric-owner -cf - . | podman import --quiet \
  --change 'CMD ["/sbin/init"]' \
  --change 'STOPSIGNAL SIGRTMIN+3' \
  --change 'ENV container=podman' \
  --change "LABEL io.strata.lab=image" \
  - "$image" >/dev/null
echo "lab image: $image ready"
