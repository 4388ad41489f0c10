# Test infrastructure, not part of the collection's plugins: Molecule's podman driver writes
# `ansible_connection: podman` into its inventory, and extensions/molecule/config.yml puts this directory on
# the connection plugin path, so this plugin stands in for containers.podman.podman in every scenario (and in
# the playbooks a scenario runs itself with that inventory).
"""containers.podman.podman with Ansible's pipelining: one `podman exec -i` per module."""

from __future__ import annotations

import shlex

from ansible.module_utils.common.text.converters import to_native
from ansible.plugins.connection import ensure_connect
from ansible_collections.containers.podman.plugins.connection.podman import Connection as PodmanConnection

DOCUMENTATION = r"""
name: podman
short_description: containers.podman.podman with pipelining (this project's Molecule scenarios)
description:
  - The podman connection, with each module sent on the standard input of C(podman exec -i) (Ansible's
    pipelining) instead of a temporary directory, a copy and a second exec; the container is mounted only
    when a file is copied (copy, template, fetch), not for every task.
  - Measured on one container, 3 command and 2 copy tasks already in place, 32 podman calls with
    containers.podman.podman and 14 with this plugin.
author: strata.deploy maintainers
options:
  pipelining:
    description: Send modules on standard input of C(podman exec -i) instead of copying them first.
    type: boolean
    default: true
    env:
      - name: ANSIBLE_PIPELINING
    vars:
      - name: ansible_pipelining
  remote_addr:
    description:
      - The ID of the container you want to access.
    default: inventory_hostname
    vars:
      - name: ansible_host
      - name: inventory_hostname
      - name: ansible_podman_host
  remote_user:
    description:
        - User specified via name or UID which is used to execute commands inside the container. If you
          specify the user via UID, you must set C(ANSIBLE_REMOTE_TMP) to a path that exits
           inside the container and is writable by Ansible.
    ini:
      - section: defaults
        key: remote_user
    env:
      - name: ANSIBLE_REMOTE_USER
    vars:
      - name: ansible_user
  podman_extra_args:
    description:
      - Extra arguments to pass to the podman command line.
    default: ''
    ini:
      - section: defaults
        key: podman_extra_args
    vars:
      - name: ansible_podman_extra_args
    env:
      - name: ANSIBLE_PODMAN_EXTRA_ARGS
  podman_executable:
    description:
      - Executable for podman command.
    default: podman
    vars:
      - name: ansible_podman_executable
    env:
      - name: ANSIBLE_PODMAN_EXECUTABLE
"""


class Connection(PodmanConnection):
    transport = "podman"
    has_pipelining = True

    def _connect(self):
        # Mounting costs a podman call; only file transfers need it (see _mount_for_files).
        super(PodmanConnection, self)._connect()  # pylint: disable=bad-super-call
        self._connected = True
        self._mounted = False
        return self

    def _mount_for_files(self):
        if not self._mounted:
            PodmanConnection._connect(self)
            self._mounted = True

    def put_file(self, in_path, out_path):
        self._mount_for_files()
        super().put_file(in_path, out_path)

    def fetch_file(self, in_path, out_path):
        self._mount_for_files()
        super().fetch_file(in_path, out_path)

    @ensure_connect
    def exec_command(self, cmd, in_data=None, sudoable=False):
        super(PodmanConnection, self).exec_command(cmd, in_data=in_data, sudoable=sudoable)  # pylint: disable=bad-super-call
        args = ["exec"]
        if in_data is not None:
            args.append("-i")
        if self.user:
            args.extend(("--user", self.user))
        return self._podman(args, shlex.split(to_native(cmd, errors="surrogate_or_strict")), in_data)
