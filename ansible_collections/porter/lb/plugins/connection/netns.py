# Copyright: porter-lb contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
# SPDX-License-Identifier: Apache-2.0
"""A Linux network namespace on the Ansible controller as an Ansible host."""

from __future__ import annotations

DOCUMENTATION = r"""
name: netns
short_description: Run tasks inside a network namespace of the controller
description:
  - Runs every command of a task through C(ip netns exec NAMESPACE) on the machine Ansible
    runs on, so each namespace acts as a host with its own interfaces, routes, sysctls and
    daemons. Files are copied and fetched as with the local connection, because namespaces
    share the controller's file system.
  - Used by porter-lb's lab inventory (the lab's router is a namespace) and its Molecule
    scenarios, which start routers in network namespaces instead of containers. Needs root
    and iproute2 on the controller.
author:
  - porter-lb maintainers (@porter-lb)
extends_documentation_fragment:
  - connection_pipelining
options:
  netns:
    description: The network namespace (a name under C(/run/netns)).
    type: str
    vars:
      - name: ansible_netns
      - name: ansible_host
"""

# Ansible plugins: imports follow DOCUMENTATION.
import shlex  # noqa: E402

from ansible.errors import AnsibleConnectionFailure  # noqa: E402
from ansible.plugins.connection.local import Connection as LocalConnection  # noqa: E402


class Connection(LocalConnection):
    """The local connection, with each command prefixed by `ip netns exec NAMESPACE`."""

    transport = "netns"

    def exec_command(self, cmd, in_data=None, sudoable=True):
        namespace = self.get_option("netns")
        if not namespace:
            raise AnsibleConnectionFailure("netns: no namespace (ansible_netns or ansible_host)")
        command = f"ip netns exec {shlex.quote(namespace)} {cmd}"
        return super().exec_command(command, in_data=in_data, sudoable=sudoable)
