#!/usr/bin/python
# Copyright: porter-lb contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
# SPDX-License-Identifier: Apache-2.0

from __future__ import annotations

DOCUMENTATION = r"""
---
module: route_audit
short_description: Compare the routes a porter-lb cluster should announce with a router's BGP RIB
version_added: 0.1.0
description:
  - Lists the cluster's Services, EndpointSlices, Nodes, Eips, BgpConfs and BgpPeers once and
    computes, with the porter-lb runtime's own route functions, which host prefixes the
    cluster should announce and with which next hops (node addresses).
  - Reads the BGP RIB of one router (BIRD 2 through C(birdc), FRR through C(vtysh), or a
    gobgpd over gRPC) and reports, per prefix, the routes the router is missing, the stale
    routes it holds for addresses no Service should announce, and the routes whose next-hop
    set differs.
  - Only prefixes inside the Eip pools announced over BGP are compared; other routes are not
    porter-lb's and are ignored.
  - Never changes anything, on the cluster or on the router. With O(fail_on_drift=true) the
    task fails when the router drifts from the cluster, for CI and AWX gates.
  - Runs the audit in-process with the C(porter_lb) Python package (the porter-lb runtime),
    which must be installed for the Python interpreter Ansible uses on the target. It is on no
    index and not in the collection's C(meta/requirements.txt); build it with
    C(pip wheel --no-deps ./runtime) from the repository and install it there (the execution
    environment of C(docs/awx) has it).
  - The Kubernetes API is reached the way M(kubernetes.core.k8s) reaches it (same options, same
    C(K8S_AUTH_*) environment variables, so AWX's Kubernetes credentials work).
  - Either the task reads the router itself (its control socket or gRPC address must be
    reachable where the task runs), or the router's own commands run on the router, for
    instance over SSH with M(ansible.builtin.command), and their output is given in
    O(router_output); then nothing but C(birdc) or C(vtysh) is needed on the router, and the
    audit runs where the cluster credential is (C(playbooks/verify.yml) does this).
author:
  - porter-lb maintainers (@porter-lb)
extends_documentation_fragment:
  - kubernetes.core.k8s_auth_options
requirements:
  - porter-lb (the runtime Python package, with its kubernetes and grpcio dependencies)
  - C(birdc) for O(router=bird), C(vtysh) for O(router=frr), where the task runs, unless
    O(router_output) is given
options:
  router:
    description:
      - The kind of router whose RIB is read.
      - V(bird) runs C(birdc -r show route all where source = RTS_BGP) (restricted, read-only).
      - V(frr) runs C(vtysh -c 'show bgp ipv4 unicast json') and the same for IPv6.
      - V(gobgp) lists every path of the gobgpd's global RIB over gRPC (ListPath).
    type: str
    required: true
    choices: [bird, frr, gobgp]
  socket:
    description:
      - BIRD's control socket (C(birdc -s)); BIRD's default when not set.
    type: path
  vty_socket:
    description:
      - The directory of FRR's vty sockets (C(vtysh --vty_socket)); FRR's default when not set.
    type: path
  gobgp_address:
    description:
      - The gRPC target of the gobgpd to read, for instance C(unix:///run/porter-lb/gobgp.sock)
        or C(127.0.0.1:50051).
      - Default C(unix:///run/porter-lb/gobgp.sock).
    type: str
  router_output:
    description:
      - The router's routes as its own commands printed them, run elsewhere (on the router);
        the task then reads no router itself.
      - For O(router=bird), the output of C(birdc -r show route all where source = RTS_BGP).
      - For O(router=frr), the output of C(vtysh -c 'show bgp ipv4 unicast json') and of
        C(vtysh -c 'show bgp ipv6 unicast json'), one list item each.
      - Not for O(router=gobgp); not with O(socket), O(vty_socket), O(netns) or
        O(gobgp_address).
    type: list
    elements: str
  netns:
    description:
      - Run C(birdc) or C(vtysh) inside this network namespace (C(ip netns exec)). Needed only
        when the router's control socket is not reachable from the namespace the task runs
        in; a unix socket on the filesystem usually is.
    type: str
  mode:
    description:
      - How the cluster announces its routes.
      - V(node), one speaker per node with next hop self; the router sees a node's address on
        the session as next hop, so any InternalIP of a node counts as that node.
      - V(central), one central speaker with the nodes as third-party next hops (ADD-PATH); the
        next hop must be the node's first InternalIP of the prefix's family.
    type: str
    default: node
    choices: [node, central]
  namespace:
    description:
      - porter-lb's namespace, where the BgpPeers' password Secrets live. If the Secrets cannot
        be read, BgpPeers referring to one are assumed usable and a warning says so.
    type: str
    default: porter-lb-system
  load_balancer_class:
    description:
      - The C(spec.loadBalancerClass) that selects porter-lb.
    type: str
    default: porter-lb.io/porter-lb
  bgp_peers:
    description:
      - Names of the BgpPeers that describe the audited router. Only the nodes their
        C(nodeSelector) selects are expected as next hops.
      - Default, every usable BgpPeer (right when every node peers with the router).
    type: list
    elements: str
    default: []
  pools:
    description:
      - Names of the Eips to audit. Default, every Eip announced over BGP.
    type: list
    elements: str
    default: []
  fail_on_drift:
    description:
      - Fail the task when the router is missing a route, holds a stale one or has a wrong
        next-hop set. The failure message names the prefixes; the report is returned as well.
    type: bool
    default: false
  timeout:
    description:
      - Seconds to wait for each router query.
    type: float
    default: 30
attributes:
  check_mode:
    support: full
    description: Can run in check_mode and return changed status prediction without modifying target.
  diff_mode:
    support: none
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
notes:
  - The module is read-only; C(changed) is always C(false).
  - The next hops compared are those of every path the router holds for a prefix (the RIB),
    not only the ones installed in its forwarding table.
  - The same audit is available without Ansible as C(porter-lb audit), which prints the same
    report as JSON.
seealso:
  - module: porter.lb.bird_bgp
  - module: porter.lb.frr_bgp
"""

EXAMPLES = r"""
- name: Audit the top-of-rack BIRD against the cluster, failing on drift
  porter.lb.route_audit:
    router: bird
    socket: /run/bird/bird.ctl
    kubeconfig: /etc/porter-lb/kubeconfig
    bgp_peers: [tor-a]
    fail_on_drift: true
  delegate_to: tor-a

- name: Read the top-of-rack BIRD's routes on the router (over SSH)
  ansible.builtin.command:
    argv: [birdc, -r, show route all where source = RTS_BGP]
  register: rib
  changed_when: false
  check_mode: false

- name: Audit them where the Kubernetes credential is (K8S_AUTH_* in AWX)
  porter.lb.route_audit:
    router: bird
    router_output: ["{{ rib.stdout }}"]
    bgp_peers: [tor-a]
    fail_on_drift: true
  delegate_to: localhost

- name: Audit an FRR router fed by a central speaker
  porter.lb.route_audit:
    router: frr
    vty_socket: /var/run/frr
    mode: central
  register: audit

- name: Show the prefixes with wrong next hops
  ansible.builtin.debug:
    msg: "{{ audit.wrong_next_hops | map(attribute='prefix') | list }}"

- name: Audit what a gobgpd route reflector holds, for one pool
  porter.lb.route_audit:
    router: gobgp
    gobgp_address: 127.0.0.1:50051
    pools: [public-pool]
"""

RETURN = r"""
in_sync:
  description: True when the router holds exactly the desired routes within the pools.
  returned: success
  type: bool
  sample: false
missing:
  description: Prefixes the cluster wants announced that the router has no path for.
  returned: success
  type: list
  elements: dict
  contains:
    prefix:
      description: The host prefix.
      type: str
      sample: 203.0.113.10/32
    want:
      description: The next hops the router should have.
      type: list
      elements: str
      sample: [198.51.100.11, 198.51.100.12]
    services:
      description: The Services (C(namespace/name)) holding the address.
      type: list
      elements: str
      sample: [shop/web]
stale:
  description: Prefixes inside the pools that the router holds but no Service should announce.
  returned: success
  type: list
  elements: dict
  contains:
    prefix:
      description: The prefix.
      type: str
      sample: 203.0.113.99/32
    have:
      description: The next hops the router has for it.
      type: list
      elements: str
      sample: [198.51.100.11]
wrong_next_hops:
  description: Prefixes both sides have, with different next-hop sets.
  returned: success
  type: list
  elements: dict
  contains:
    prefix:
      description: The host prefix.
      type: str
      sample: 203.0.113.10/32
    want:
      description: The next hops the router should have.
      type: list
      elements: str
      sample: [198.51.100.11, 198.51.100.12]
    have:
      description: The next hops the router has.
      type: list
      elements: str
      sample: [198.51.100.11]
    missing_next_hops:
      description: Next hops in RV(wrong_next_hops[].want) but not in RV(wrong_next_hops[].have).
      type: list
      elements: str
      sample: [198.51.100.12]
    unexpected_next_hops:
      description: Next hops in RV(wrong_next_hops[].have) but not in RV(wrong_next_hops[].want).
      type: list
      elements: str
      sample: []
    services:
      description: The Services (C(namespace/name)) holding the address.
      type: list
      elements: str
      sample: [shop/web]
counts:
  description: How many prefixes are desired and observed within the pools, and how many drift.
  returned: success
  type: dict
  contains:
    desired:
      description: Prefixes the cluster wants announced.
      type: int
      sample: 12
    observed:
      description: Prefixes the router holds within the pools.
      type: int
      sample: 12
    missing:
      description: Length of RV(missing).
      type: int
      sample: 0
    stale:
      description: Length of RV(stale).
      type: int
      sample: 1
    wrong_next_hops:
      description: Length of RV(wrong_next_hops).
      type: int
      sample: 1
pools:
  description: The Eips audited.
  returned: success
  type: list
  elements: dict
  contains:
    name:
      description: The Eip's name.
      type: str
      sample: public-pool
    first:
      description: The pool's first address.
      type: str
      sample: 203.0.113.0
    last:
      description: The pool's last address.
      type: str
      sample: 203.0.113.255
router:
  description: The kind of router read, as given in O(router).
  returned: success
  type: str
  sample: bird
mode:
  description: The announcing mode compared against, as given in O(mode).
  returned: success
  type: str
  sample: node
warnings:
  description:
    - Objects the computation had to ignore (an unreadable Node, Service or BgpPeer), unknown
      names in O(pools) or O(bgp_peers), and assumptions made. They are also shown as task
      warnings.
  returned: success
  type: list
  elements: str
  sample: ["pools: Eip 'typo': no such Eip with protocol bgp"]
"""

import traceback

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.kubernetes.core.plugins.module_utils.args_common import AUTH_ARG_SPEC
from ansible_collections.kubernetes.core.plugins.module_utils.k8s.client import get_api_client
from ansible_collections.kubernetes.core.plugins.module_utils.k8s.core import AnsibleK8SModule
from ansible_collections.kubernetes.core.plugins.module_utils.k8s.exceptions import (
    CoreException,
)

try:
    from porter_lb.routing import audit, audit_sources
except ImportError:
    HAS_PORTER_LB = False
    PORTER_LB_IMPORT_ERROR = traceback.format_exc()
else:
    HAS_PORTER_LB = True
    PORTER_LB_IMPORT_ERROR = None


READ_OPTIONS = ("socket", "vty_socket", "netns", "gobgp_address")
"""Options that say how to read the router, which O(router_output) replaces."""


def main():
    argument_spec = dict(
        router=dict(type="str", required=True, choices=["bird", "frr", "gobgp"]),
        socket=dict(type="path"),
        vty_socket=dict(type="path"),
        gobgp_address=dict(type="str"),
        router_output=dict(type="list", elements="str"),
        netns=dict(type="str"),
        mode=dict(type="str", default="node", choices=["node", "central"]),
        namespace=dict(type="str", default="porter-lb-system"),
        load_balancer_class=dict(type="str", default="porter-lb.io/porter-lb"),
        bgp_peers=dict(type="list", elements="str", default=[]),
        pools=dict(type="list", elements="str", default=[]),
        fail_on_drift=dict(type="bool", default=False),
        timeout=dict(type="float", default=30),
    )
    argument_spec.update(AUTH_ARG_SPEC)
    module = AnsibleK8SModule(
        argument_spec=argument_spec,
        mutually_exclusive=[("router_output", option) for option in READ_OPTIONS],
        supports_check_mode=True,
    )
    if not HAS_PORTER_LB:
        module.fail_json(
            msg=missing_required_lib(
                "porter-lb (the runtime wheel, built from the repository's runtime/)",
                url="https://github.com/porter-lb/porter-lb/tree/main/runtime",
            ),
            exception=PORTER_LB_IMPORT_ERROR,
        )
    params = module.params
    if params["router_output"] is not None and params["router"] == "gobgp":
        module.fail_json(msg="router_output: given for router bird or frr only, not gobgp")
    try:
        api_client = get_api_client(module=module).client.client
    except CoreException as error:
        module.fail_json(msg=f"Kubernetes API: {error}")
    try:
        report = audit_sources.run_audit(
            router=params["router"],
            socket=params["socket"] or "",
            vty_socket=params["vty_socket"] or "",
            gobgp=params["gobgp_address"] or "",
            netns=params["netns"] or "",
            mode=params["mode"],
            namespace=params["namespace"],
            class_name=params["load_balancer_class"],
            bgp_peers=params["bgp_peers"],
            pools=params["pools"],
            timeout=params["timeout"],
            api_client=api_client,
            router_output=params["router_output"],
        )
    except audit.AuditError as error:
        module.fail_json(msg=str(error))
    for warning in report["warnings"]:
        module.warn(warning)
    if params["fail_on_drift"] and not report["in_sync"]:
        module.fail_json(msg=audit.drift_summary(report), changed=False, **report)
    module.exit_json(changed=False, **report)


if __name__ == "__main__":
    main()
