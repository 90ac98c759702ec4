#!/usr/bin/python
# Copyright: porter-lb contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
# SPDX-License-Identifier: Apache-2.0

from __future__ import annotations

DOCUMENTATION = r"""
---
module: eip_info
short_description: List porter-lb Eips (pools of external IPs) of a Kubernetes cluster
version_added: 0.1.0
description:
  - Returns the Eips (C(network.kubesphere.io/v1alpha2)) of the cluster, all of them or the ones
    selected by name and labels, with their status (addresses in use, readiness).
author:
  - porter-lb maintainers (@porter-lb)
extends_documentation_fragment:
  - kubernetes.core.k8s_auth_options
  - porter.lb.cluster_resource.info
seealso:
  - module: porter.lb.eip
"""

EXAMPLES = r"""
- name: All pools
  porter.lb.eip_info:
  register: pools

- name: Show how full each pool is
  ansible.builtin.debug:
    msg: "{{ item.metadata.name }}: {{ item.status.usage | default(0) }} of {{ item.status.poolSize | default('?') }}"
  loop: "{{ pools.resources }}"

- name: One pool
  porter.lb.eip_info:
    name: pool-a

- name: The pools of one team
  porter.lb.eip_info:
    label_selectors:
      - team=web
"""

RETURN = r"""
resources:
  description:
    - The Eips found, sorted by name, as the API server holds them (C(metadata.managedFields) left
      out). Empty when none matches.
  returned: success
  type: list
  elements: dict
  sample:
    - apiVersion: network.kubesphere.io/v1alpha2
      kind: Eip
      metadata:
        name: pool-a
      spec:
        address: 192.0.2.0/24
        protocol: bgp
      status:
        poolSize: 256
        usage: 2
        used:
          192.0.2.0: web/frontend
          192.0.2.1: shop/api
"""

from ansible_collections.porter.lb.plugins.module_utils.cluster_api import run_info_module
from ansible_collections.porter.lb.plugins.module_utils.cluster_resource import EIP


def main():
    run_info_module(EIP)


if __name__ == "__main__":
    main()
