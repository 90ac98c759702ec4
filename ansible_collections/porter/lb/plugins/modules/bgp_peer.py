#!/usr/bin/python
# Copyright: porter-lb contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
# SPDX-License-Identifier: Apache-2.0

from __future__ import annotations

DOCUMENTATION = r"""
---
module: bgp_peer
short_description: Manage a porter-lb BgpPeer (a BGP neighbour of the cluster's speakers)
version_added: 0.1.0
description:
  - Creates, updates or deletes a BgpPeer (C(network.kubesphere.io/v1alpha2), compatible with
    Porter and OpenELB) - a ToR switch or router that porter-lb's speakers open a BGP session with
    and announce the Eips' addresses to.
  - The options mirror the BgpPeer's C(spec) in snake_case, with GoBGP v2's field names as Porter
    used them (C(conf.peerAs) is O(conf.peer_as)).
  - With O(wait=true), waits until every speaker that peers with the neighbour (each node's agent,
    or the central speaker) reports the session C(ESTABLISHED) in C(status.nodesPeerStatus), and at
    least one does.
  - The API server checks the BgpPeer (the CRD's schema and CEL rules), also in check mode; a
    refused BgpPeer fails the task with the field, the option and the rule.
  - The password (O(conf.auth_password)) is never shown, in results or in diffs; better keep it in
    a Secret and give O(conf.auth_password_secret_ref).
author:
  - porter-lb maintainers (@porter-lb)
options:
  conf:
    description:
      - The session (C(spec.conf)). Required with O(state=present).
    type: dict
    suboptions:
      neighbor_address:
        description:
          - The neighbour's IP address (C(neighborAddress)). Required unless
            O(conf.neighbor_interface) is given.
        type: str
      neighbor_interface:
        description: For an unnumbered session, the interface (C(neighborInterface)).
        type: str
      peer_as:
        description: The neighbour's AS number (C(peerAs)).
        type: int
      local_as:
        description: The local AS number for this session (C(localAs)), instead of the BgpConf's.
        type: int
      peer_group:
        description: C(peerGroup), as GoBGP.
        type: str
      peer_type:
        description: C(peerType), as GoBGP.
        type: int
      description:
        description: A description of the neighbour (C(description)).
        type: str
      auth_password:
        description:
          - The TCP MD5 password of the session (C(authPassword)). Deprecated in porter-lb, kept
            for Porter compatibility; mutually exclusive with O(conf.auth_password_secret_ref).
        type: str
      auth_password_secret_ref:
        description: The Secret that holds the session's password (C(authPasswordSecretRef)).
        type: dict
        suboptions:
          name:
            description: The Secret's name.
            type: str
            required: true
          namespace:
            description: The Secret's namespace.
            type: str
          key:
            description: The key of the password in the Secret's data; the API server defaults it to V(password).
            type: str
      admin_down:
        description: Keep the session down (C(adminDown)).
        type: bool
      allow_own_as:
        description: C(allowOwnAs), as GoBGP.
        type: int
      remove_private_as:
        description: C(removePrivateAs), as GoBGP.
        type: str
      replace_peer_as:
        description: C(replacePeerAs), as GoBGP.
        type: bool
      route_flap_damping:
        description: C(routeFlapDamping), as GoBGP.
        type: bool
      send_community:
        description: C(sendCommunity); stored, but gobgpd 4.8 ignores it, so the speaker answers it with a Warning.
        type: int
      vrf:
        description: C(vrf), as GoBGP.
        type: str
  afi_safis:
    description:
      - Address families of the session (C(spec.afiSafis)).
    type: list
    elements: dict
    suboptions:
      config:
        description: The family (C(config)).
        type: dict
        suboptions:
          enabled:
            description: Enable the family.
            type: bool
          family:
            description: The family (C(family)).
            type: dict
            suboptions:
              afi:
                description: The AFI.
                type: str
                choices: [AFI_IP, AFI_IP6]
              safi:
                description: The SAFI.
                type: str
                choices: [SAFI_UNICAST]
      add_paths:
        description: ADD-PATH, RFC 7911 (C(addPaths)).
        type: dict
        suboptions:
          config:
            description: ADD-PATH settings.
            type: dict
            suboptions:
              receive:
                description: Receive several paths per prefix.
                type: bool
              send_max:
                description: Send up to this many paths per prefix (C(sendMax), 0 to 255).
                type: int
      mp_graceful_restart:
        description: Graceful restart for the family (C(mpGracefulRestart)).
        type: dict
        suboptions:
          config:
            description: Its settings.
            type: dict
            suboptions:
              enabled:
                description: Enable it.
                type: bool
  ebgp_multihop:
    description:
      - eBGP multihop (C(spec.ebgpMultihop)).
    type: dict
    suboptions:
      enabled:
        description: Enable eBGP multihop.
        type: bool
      multihop_ttl:
        description: The TTL (C(multihopTtl), 1 to 255).
        type: int
  bfd:
    description:
      - Single-hop BFD with the neighbour (C(spec.bfd), a porter-lb extension). A dead link
        resets the session after O(bfd.receive_interval) times O(bfd.detect_multiplier)
        milliseconds instead of the hold time. The router must run BFD for the nodes too.
    type: dict
    suboptions:
      enabled:
        description: Enable BFD for this neighbour.
        type: bool
      transmit_interval:
        description: Desired minimum transmit interval in milliseconds (C(transmitInterval), 10 to 60000; default 300).
        type: int
      receive_interval:
        description: Required minimum receive interval in milliseconds (C(receiveInterval), 10 to 60000; default 300).
        type: int
      detect_multiplier:
        description: Packets missed before the session is down (C(detectMultiplier), 2 to 255; default 3).
        type: int
  timers:
    description:
      - Session timers (C(spec.timers)), as GoBGP, in seconds written as strings.
    type: dict
    suboptions:
      config:
        description: The timers (C(config)).
        type: dict
        suboptions:
          connect_retry:
            description: C(connectRetry).
            type: str
          hold_time:
            description: C(holdTime).
            type: str
          keepalive_interval:
            description: C(keepaliveInterval).
            type: str
          minimum_advertisement_interval:
            description: C(minimumAdvertisementInterval).
            type: str
  transport:
    description:
      - The session's TCP transport (C(spec.transport)).
    type: dict
    suboptions:
      mtu_discovery:
        description: C(mtuDiscovery); stored, but gobgpd 4.8 ignores it, so the speaker answers it with a Warning.
        type: bool
      passive_mode:
        description: Only accept the session, never connect (C(passiveMode)).
        type: bool
      remote_address:
        description: C(remoteAddress).
        type: str
      remote_port:
        description: The neighbour's TCP port (C(remotePort), 1 to 65535).
        type: int
      local_address:
        description: C(localAddress).
        type: str
      tcp_mss:
        description: C(tcpMss).
        type: int
  node_selector:
    description:
      - Only the nodes matching this label selector peer with the neighbour (C(spec.nodeSelector)).
    type: dict
    suboptions:
      match_labels:
        description: Labels the node must have, name to value (C(matchLabels)).
        type: dict
      match_expressions:
        description: Label requirements (C(matchExpressions)), all must hold.
        type: list
        elements: dict
        suboptions:
          key:
            description: The label name.
            type: str
            required: true
          operator:
            description: How the label's value is checked against O(node_selector.match_expressions[].values).
            type: str
            required: true
            choices: [In, NotIn, Exists, DoesNotExist]
          values:
            description: The values, for V(In) and V(NotIn) only.
            type: list
            elements: str
extends_documentation_fragment:
  - kubernetes.core.k8s_auth_options
  - porter.lb.cluster_resource
  - porter.lb.cluster_resource.graceful_restart
  - porter.lb.cluster_resource.wait
seealso:
  - module: porter.lb.bgp_peer_info
  - module: porter.lb.bgp_conf
"""

EXAMPLES = r"""
- name: The ToR switch, from the nodes of rack 1, once the sessions are up
  porter.lb.bgp_peer:
    name: tor-rack1
    conf:
      neighbor_address: 198.51.100.1
      peer_as: 65000
      auth_password_secret_ref:
        name: tor-rack1-bgp
        namespace: porter-lb-system
    node_selector:
      match_labels:
        topology.kubernetes.io/zone: rack1
    afi_safis:
      - config:
          family: {afi: AFI_IP, safi: SAFI_UNICAST}
          enabled: true
        add_paths:
          config: {send_max: 8}
    wait: true
    wait_timeout: 60

- name: A router with a password in the BgpPeer itself (Porter style)
  porter.lb.bgp_peer:
    name: edge
    conf:
      neighbor_address: 2001:db8::1
      peer_as: 65010
      auth_password: "{{ vault_edge_password }}"

- name: Remove a peer
  porter.lb.bgp_peer:
    name: edge
    state: absent
"""

RETURN = r"""
result:
  description:
    - The BgpPeer as the API server holds it after the task (in check mode, as it would), with
      its C(status) when speakers have written one. Empty with O(state=absent).
    - C(spec.conf.authPassword) is replaced by C(********); C(metadata.managedFields) is left
      out.
  returned: success
  type: dict
  sample:
    apiVersion: network.kubesphere.io/v1alpha2
    kind: BgpPeer
    metadata:
      name: tor-rack1
    spec:
      conf:
        neighborAddress: 198.51.100.1
        peerAs: 65000
    status:
      nodesPeerStatus:
        central:
          peerState:
            neighborAddress: 198.51.100.1
            peerAs: 65000
            sessionState: ESTABLISHED
"""

from ansible_collections.porter.lb.plugins.module_utils.cluster_api import run_resource_module
from ansible_collections.porter.lb.plugins.module_utils.cluster_resource import BGP_PEER


def main():
    run_resource_module(BGP_PEER, waits=True)


if __name__ == "__main__":
    main()
