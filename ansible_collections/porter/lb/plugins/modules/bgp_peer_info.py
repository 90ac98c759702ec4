#!/usr/bin/python
# Copyright: porter-lb contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
# SPDX-License-Identifier: Apache-2.0

from __future__ import annotations

DOCUMENTATION = r"""
---
module: bgp_peer_info
short_description: List porter-lb BgpPeers (the BGP neighbours of a cluster's speakers)
version_added: 0.1.0
description:
  - Returns the BgpPeers (C(network.kubesphere.io/v1alpha2)) of the cluster, all of them or the
    ones selected by name and labels, with the sessions as each speaker sees them
    (C(status.nodesPeerStatus)).
  - Passwords (C(spec.conf.authPassword)) are replaced by C(********).
author:
  - porter-lb maintainers (@porter-lb)
extends_documentation_fragment:
  - kubernetes.core.k8s_auth_options
  - porter.lb.cluster_resource.info
seealso:
  - module: porter.lb.bgp_peer
"""

EXAMPLES = r"""
- name: All BGP neighbours
  porter.lb.bgp_peer_info:
  register: peers

- name: Show each speaker's session state
  ansible.builtin.debug:
    msg: "{{ item.metadata.name }}: {{ item.status.nodesPeerStatus | default({}) | dict2items | map(attribute='value.peerState.sessionState') | list }}"
  loop: "{{ peers.resources }}"

- name: One neighbour
  porter.lb.bgp_peer_info:
    name: tor-rack1
"""

RETURN = r"""
resources:
  description:
    - The BgpPeers found, sorted by name, as the API server holds them, C(spec.conf.authPassword)
      hidden and C(metadata.managedFields) left out. Empty when none matches.
  returned: success
  type: list
  elements: dict
  sample:
    - apiVersion: network.kubesphere.io/v1alpha2
      kind: BgpPeer
      metadata:
        name: tor-rack1
      spec:
        conf:
          neighborAddress: 198.51.100.1
          peerAs: 65000
          authPassword: "********"
      status:
        nodesPeerStatus:
          node1:
            peerState:
              neighborAddress: 198.51.100.1
              peerAs: 65000
              sessionState: ESTABLISHED
"""

from ansible_collections.porter.lb.plugins.module_utils.cluster_api import run_info_module
from ansible_collections.porter.lb.plugins.module_utils.cluster_resource import BGP_PEER


def main():
    run_info_module(BGP_PEER)


if __name__ == "__main__":
    main()
