#!/usr/bin/python
# Copyright: porter-lb contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
# SPDX-License-Identifier: Apache-2.0

from __future__ import annotations

DOCUMENTATION = r"""
---
module: eip
short_description: Manage a porter-lb Eip (a pool of external IPs) in a Kubernetes cluster
version_added: 0.1.0
description:
  - Creates, updates or deletes an Eip (C(network.kubesphere.io/v1alpha2), compatible with Porter
    and OpenELB) - a pool of addresses that porter-lb gives to C(type=LoadBalancer) Services.
  - The options mirror the Eip's C(spec) in snake_case (C(usingKnownIPs) is O(using_known_ips)).
  - With O(wait=true), waits until the allocation controller has taken the pool in, that is until
    the Eip's C(Ready) condition is C(True) for its current generation (reason C(Ready),
    C(Exhausted) or C(Disabled)). An Eip the controller cannot use gets C(Ready=False) with why,
    and the wait times out with that reason in its message.
  - The API server checks the Eip (the CRD's schema and CEL rules), also in check mode; a refused
    Eip fails the task with the field, the option and the rule.
author:
  - porter-lb maintainers (@porter-lb)
options:
  address:
    description:
      - The pool (C(spec.address)) - one IP (V(192.0.2.10)), a CIDR (V(192.0.2.0/24),
        V(2001:db8::/120)) or a range C(first-last) (V(192.0.2.10-192.0.2.20)). IPv4 or IPv6, not
        both.
      - Required with O(state=present). Immutable - to change a pool's range, delete the Eip and
        create it again.
    type: str
  protocol:
    description:
      - How the pool's IPs are announced (C(spec.protocol)). The API server defaults it to V(bgp).
    type: str
    choices: [bgp, layer2]
  interface:
    description:
      - With O(protocol=layer2), the node interface to answer ARP/NDP on (C(spec.interface)), a name
        (V(eth0)) or V(can_reach:<ip>).
    type: str
  disable:
    description:
      - A disabled pool gives no new IPs; the IPs already given out stay (C(spec.disable)).
    type: bool
  using_known_ips:
    description:
      - Allow addresses already in use on the network (C(spec.usingKnownIPs), Porter
        compatibility).
    type: bool
  priority:
    description:
      - Among the pools a Service may use, the one with the lowest value is tried first
        (C(spec.priority)).
    type: int
  namespaces:
    description:
      - Namespaces whose Services may use this pool (C(spec.namespaces)); none means all.
    type: list
    elements: str
  namespace_selector:
    description:
      - Labels of the namespaces whose Services may use this pool (C(spec.namespaceSelector)), label
        name to value.
    type: dict
  communities:
    description:
      - BGP communities every route of the pool carries (C(spec.communities), a porter-lb
        extension), as V(AS:value) (each 0 to 65535) or a well-known name (V(no-export),
        V(no-advertise), V(no-export-subconfed), V(local-as), V(blackhole)).
    type: list
    elements: str
  large_communities:
    description:
      - BGP large communities every route of the pool carries (C(spec.largeCommunities)), as
        V(global:local1:local2) (each 0 to 4294967295).
    type: list
    elements: str
  local_pref:
    description:
      - LOCAL_PREF of the pool's routes (C(spec.localPref), 0 to 4294967295), sent to iBGP peers
        only.
    type: int
extends_documentation_fragment:
  - kubernetes.core.k8s_auth_options
  - porter.lb.cluster_resource
  - porter.lb.cluster_resource.wait
seealso:
  - module: porter.lb.eip_info
  - module: porter.lb.eip_address_info
"""

EXAMPLES = r"""
- name: A BGP pool for the cluster's LoadBalancer Services, once the controller has it
  porter.lb.eip:
    name: pool-a
    address: 192.0.2.0/24
    protocol: bgp
    namespaces: [web, shop]
    wait: true

- name: A layer 2 pool, answering ARP on eth0, tried first
  porter.lb.eip:
    name: pool-l2
    address: 198.51.100.10-198.51.100.20
    protocol: layer2
    interface: eth0
    priority: 1
    kubeconfig: /etc/porter-lb/admin.kubeconfig

- name: Stop giving out addresses from a pool
  porter.lb.eip:
    name: pool-a
    address: 192.0.2.0/24
    disable: true

- name: Remove a pool
  porter.lb.eip:
    name: pool-l2
    state: absent
"""

RETURN = r"""
result:
  description:
    - The Eip as the API server holds it after the task (in check mode, as it would), with its
      C(status) when the controller has written one. Empty with O(state=absent).
    - C(metadata.managedFields) is left out.
  returned: success
  type: dict
  sample:
    apiVersion: network.kubesphere.io/v1alpha2
    kind: Eip
    metadata:
      name: pool-a
      generation: 1
      resourceVersion: "4242"
    spec:
      address: 192.0.2.0/24
      protocol: bgp
    status:
      poolSize: 256
      usage: 0
      conditions:
        - type: Ready
          status: "True"
          reason: Ready
          message: 0 of 256 addresses in use
"""

from ansible_collections.porter.lb.plugins.module_utils.cluster_api import run_resource_module
from ansible_collections.porter.lb.plugins.module_utils.cluster_resource import EIP


def main():
    run_resource_module(EIP, waits=True)


if __name__ == "__main__":
    main()
