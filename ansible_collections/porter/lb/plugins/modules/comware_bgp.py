#!/usr/bin/python
# Copyright: porter-lb contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
# SPDX-License-Identifier: Apache-2.0

from __future__ import annotations

DOCUMENTATION = r"""
---
module: comware_bgp
short_description: Manage the cluster-facing BGP configuration of an H3C Comware 7 switch
version_added: 0.1.0
description:
  - Manages the part of an H3C Comware 7 switch's (S6800 class) C(bgp <asn>) that faces a
    porter-lb cluster - router ID, timers, graceful restart, peers (the nodes or a central
    speaker) or a peer group with dynamic peer ranges (C(peer <net> <len> group <name>)),
    C(balance) for ECMP, C(balance as-path-relax), ADD-PATH receive, and the import/export
    policies limited to the EIP pools.
  - Follows the network resource-module pattern, with the same option shapes as
    M(porter.lb.frr_bgp); O(state) selects what is done with O(config). O(state=replaced)
    sets the global settings to O(config) (those it leaves out are removed) and replaces the
    neighbours it lists; other neighbours stay. O(state=gathered) returns the running
    configuration and the sessions' states.
  - Runs over C(ansible_connection=ansible.netcommon.network_cli) with
    C(ansible_network_os=porter.lb.comware), this collection's cliconf and terminal
    plugins. The running configuration is read with C(display current-configuration),
    compared with the wanted one, and only the difference is sent, in C(system-view), one
    command at a time; the first command the switch rejects stops the run with its error.
    Other lines of the switch's configuration are left alone.
  - Every neighbour is enabled (C(peer <name> enable)) in C(address-family ipv4 unicast).
  - The owned policies are C(ip prefix-list PORTER-LB-EIP-POOLS) (each pool's /32 host
    routes), C(route-policy PORTER-LB-EIP-IN permit node 10) (matching it, applied with
    C(import)) and C(route-policy PORTER-LB-DENY-OUT deny node 10) (applied with C(export)).
author:
  - porter-lb maintainers (@porter-lb)
options:
  config:
    description:
      - The wanted BGP configuration.
      - Required for O(state=merged), O(state=replaced), O(state=overridden) and
        O(state=rendered). With O(state=deleted) it may name the neighbours to remove;
        without it the whole C(bgp <asn>) view and the owned policies are removed.
    type: dict
    suboptions:
      asn:
        description: The switch's AS number (C(bgp <asn>), the default instance).
        type: int
      router_id:
        description: The BGP router ID, an IPv4 address (C(router-id)).
        type: str
      keepalive:
        description:
          - C(timer keepalive <keepalive> hold <hold_time>) in seconds; set with
            O(config.hold_time). At most a third of the hold time.
        type: int
      hold_time:
        description: The hold time in seconds (0 or at least 3).
        type: int
      graceful_restart:
        description: Whether C(graceful-restart) is set in the BGP view.
        type: bool
      maximum_paths:
        description:
          - C(balance) in C(address-family ipv4 unicast), 1 to 32 - the number of nodes a
            prefix may be spread over by ECMP.
        type: int
      maximum_paths_for:
        description:
          - The routes C(balance) applies to - C(ebgp), C(ibgp) or C(eibgp) (between EBGP and
            IBGP routes). Without it, plain C(balance <n>) (EBGP and IBGP routes each).
        type: str
        choices: [ebgp, ibgp, eibgp]
      multipath_relax:
        description:
          - Whether to set C(balance as-path-relax), which ECMP needs over paths from
            different neighbour ASNs.
          - When not given, it is set exactly when the neighbours' ASNs differ (or a peer group
            is C(external) without an AS number).
        type: bool
      pools:
        description:
          - The EIP pools (IPv4 networks) whose /32 host routes are accepted from the
            neighbours. When given, every neighbour gets the owned import/export policies.
        type: list
        elements: str
      neighbors:
        description: The peers (IPv4 addresses) or peer groups (names).
        type: list
        elements: dict
        suboptions:
          address:
            description: The peer's IPv4 address, or the peer group's name.
            type: str
            required: true
          peer_group:
            description: O(config.neighbors[].address) names a peer group (C(group <name>)).
            type: bool
            default: false
          remote_as:
            description:
              - An AS number (C(peer <name> as-number)). A peer group may also be
                C(external) or C(internal) (C(group <name> external|internal)); a group
                with the switch's own AS is an C(internal) group.
              - Required except with O(state=deleted), where only O(config.neighbors[].address) counts.
            type: str
          description:
            description: C(peer ... description).
            type: str
          password:
            description:
              - The TCP MD5 password of the session, sent as C(peer ... password simple).
                Comware shows it only encrypted (C(cipher)), so a running password is not
                compared with this one; see O(update_password).
              - C(cipher <text>) gives the encrypted form as the switch displays it.
            type: str
          keepalive:
            description: Per-neighbour keepalive in seconds; set with O(config.neighbors[].hold_time).
            type: int
          hold_time:
            description: Per-neighbour hold time in seconds.
            type: int
          connect_interface:
            description: C(peer ... connect-interface), e.g. C(Vlan-interface100) or C(LoopBack0).
            type: str
          ebgp_max_hop:
            description: C(peer ... ebgp-max-hop), 1 to 255, for EBGP peers not directly connected.
            type: int
          additional_paths_receive:
            description:
              - C(peer ... additional-paths receive) - accept several paths per prefix
                (ADD-PATH) from this neighbour.
            type: bool
          listen_ranges:
            description:
              - For a peer group, the IPv4 networks it accepts dynamic peers from
                (C(peer <net> <len> group <name>)). The group needs an AS number or
                C(internal) - dynamic peers take their AS from it.
            type: list
            elements: str
          port:
            description:
              - Only V(179) (or not given) is accepted. Comware 7 has no per-peer
                destination port (no C(peer ... port) command) - the switch always
                connects to 179, so a node speaker listening on another port must open the
                session itself. Any other value fails the task naming the field.
              - Taken so that one neighbour list can serve the BIRD, FRR and Comware
                modules; nothing is written for it.
            type: int
          bfd:
            description:
              - BFD for the session (C(peer ... bfd); C(undo peer ... bfd) when off).
              - Comware sets BFD timers per interface (C(bfd min-transmit-interval),
                C(bfd min-receive-interval), C(bfd detect-multiplier) in the interface
                view), not per peer. This module sets none - configure them on the
                interface - and fails when a timer is given (with V(enabled=false) a timer
                is refused on every router module, since none would be written).
              - Returned as a boolean.
            type: dict
            suboptions:
              enabled:
                description: Whether the session uses BFD.
                type: bool
                required: true
              transmit_interval:
                description: Refused (see above); milliseconds, 10 to 60000.
                type: int
              receive_interval:
                description: Refused (see above); milliseconds, 10 to 60000.
                type: int
              detect_multiplier:
                description: Refused (see above); 2 to 255.
                type: int
  update_password:
    description:
      - V(on_create) sends a neighbour's password only when the switch holds none for it
        (Comware shows passwords encrypted, so they cannot be compared).
      - V(always) sends every given password on every run (the task then always reports a change).
    type: str
    choices: [on_create, always]
    default: on_create
extends_documentation_fragment:
  - porter.lb.network_resource
attributes:
  platform:
    description: Runs on the controller; reaches the switch over C(ansible.netcommon.network_cli).
    support: full
    platforms: comware
notes:
  - Needs C(ansible_connection=ansible.netcommon.network_cli) and C(ansible_network_os=porter.lb.comware)
    for every state except O(state=rendered) and O(state=parsed), which need no switch.
  - NOT RUN AGAINST A REAL SWITCH. The commands and the configuration layout follow H3C's
    Comware 7 BGP and routing-policy command references (S6800 / S6850 / S9850 series,
    and the Comware 7 HPE FlexFabric 5710 Layer 3 IP Routing command reference); the
    rendering, parsing and command sequencing are tested against golden text written from
    them. Read docs/comware.md before using it on a production switch.
  - Comware applies each command when entered; there is no candidate configuration or
    rollback, so a rejected command leaves the ones before it applied (the error names
    the command). Nothing is saved to the startup configuration - run C(save) yourself.
  - Passwords are shown as C(********) in diffs and returned commands.
  - C(peer ... bfd) leaves the single-hop or multi-hop choice to the switch (multi-hop for
    an IBGP peer or an EBGP peer with C(ebgp-max-hop)). A shown C(peer ... bfd single-hop)
    or C(multi-hop) is owned and kept as long as BFD stays on (O(state=merged),
    O(state=replaced) or O(state=overridden) alike); BFD off removes it with
    C(undo peer ... bfd).
  - A multi-hop BFD session takes its timers from system view (C(bfd multi-hop
    min-transmit-interval), C(bfd multi-hop min-receive-interval), C(bfd multi-hop
    detect-multiplier)), not from an interface; this module sets neither.
seealso:
  - name: H3C S12500X-AF (Comware 7) Layer 3 IP Routing command reference, BGP commands
    description: balance, balance as-path-relax, group, peer as-number, peer group, peer password, graceful-restart.
    link: https://www.h3c.com/en/d_202207/1648724_294551_0.htm
  - name: HPE FlexFabric 5710 (Comware 7) peer additional-paths
    description: The ADD-PATH receive command used here.
    link: https://support.hpe.com/techhub/eginfolib/networking/docs/switches/5710/5200-4991_l3-ip-rtng_cr/content/517706869.htm
  - name: HPE FlexFabric 5710 (Comware 7) peer bfd
    description: The BFD command used here, its single-hop / multi-hop choice and its undo.
    link: https://support.hpe.com/techhub/eginfolib/networking/docs/switches/5710/5200-4991_l3-ip-rtng_cr/content/517706877.htm
  - name: HPE FlexFabric 10500 (Comware 7) configuring dynamic BGP peers
    description: peer <ipv4-address> <mask-length> as-number / group.
    link: https://support.hpe.com/techhub/eginfolib/networking/docs/switches/10500/5200-1898a_l3-ip-rtng_cg/content/495504140.htm
  - module: porter.lb.frr_bgp
"""

EXAMPLES = r"""
- name: The nodes' subnet peers dynamically with the ToR, ECMP over 8, only EIP /32s accepted
  porter.lb.comware_bgp:
    config:
      asn: 65000
      router_id: 198.51.100.1
      graceful_restart: true
      maximum_paths: 8
      maximum_paths_for: ebgp
      pools: [203.0.113.0/24]
      neighbors:
        - address: NODES
          peer_group: true
          remote_as: "65001"
          connect_interface: Vlan-interface100
          password: "{{ bgp_password }}"
          additional_paths_receive: true
          listen_ranges: [198.51.100.0/24]
    state: overridden
  vars:
    ansible_connection: ansible.netcommon.network_cli
    ansible_network_os: porter.lb.comware

- name: A central speaker two hops away
  porter.lb.comware_bgp:
    config:
      asn: 65000
      neighbors:
        - {address: 198.51.100.99, remote_as: "65099", ebgp_max_hop: 2, description: speaker}

- name: Sessions as the switch sees them
  porter.lb.comware_bgp:
    state: gathered
  register: tor

- name: Render without a switch
  porter.lb.comware_bgp:
    config: {asn: 65000, maximum_paths: 8}
    state: rendered
  delegate_to: localhost
"""

RETURN = r"""
before:
  description: The owned configuration before the run (C(null) when there was no C(bgp)).
  returned: when O(state) is C(merged), C(replaced), C(overridden) or C(deleted)
  type: dict
  sample: {asn: 65000, neighbors: [{address: 198.51.100.11, remote_as: "65001", bfd: false}]}
after:
  description: The owned configuration after the run (in check mode, what it would be).
  returned: when O(state) is C(merged), C(replaced), C(overridden) or C(deleted)
  type: dict
  sample: {asn: 65000, neighbors: [{address: 198.51.100.11, remote_as: "65001", bfd: true}]}
commands:
  description: The commands sent in system view (or, in check mode, to be sent); passwords masked.
  returned: when O(state) is C(merged), C(replaced), C(overridden) or C(deleted)
  type: list
  elements: str
  sample: ["bgp 65000", "peer 198.51.100.11 as-number 65001", "address-family ipv4 unicast", "peer 198.51.100.11 enable", "quit", "quit"]
gathered:
  description: The owned running configuration, plus C(sessions), each peer's state.
  returned: when O(state=gathered)
  type: dict
  sample: {asn: 65000, sessions: {"198.51.100.11": Established}}
rendered:
  description: Comware configuration text for O(config), laid out as C(display current-configuration) does.
  returned: when O(state=rendered)
  type: str
  sample: "#\nbgp 65000\n #\n address-family ipv4 unicast\n  balance 8\n#\n"
parsed:
  description: The configuration parsed from O(running_config) (C(null) without C(bgp)).
  returned: when O(state=parsed)
  type: dict
  sample: {asn: 65000, neighbors: []}
"""

import re

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.connection import Connection, ConnectionError

from ansible_collections.porter.lb.plugins.module_utils import bgp_resource, network_resource
from ansible_collections.porter.lb.plugins.module_utils.bgp_session import bfd_option
from ansible_collections.porter.lb.plugins.module_utils.comware_bgp import (
    RULES,
    ComwareBgpConfigError,
    commands_for,
    config_statements,
    config_text,
    diff_statements,
    keep_bfd_modes,
    keep_device_passwords,
    masked,
    owned_statements,
    parse_config,
    parse_peer_states,
    statements_text,
)
from ansible_collections.porter.lb.plugins.module_utils.network_resource import (
    REQUIRED_IF,
    state_argument_spec,
)

NEIGHBOR_SPEC = bgp_resource.neighbor_options(
    connect_interface=dict(type="str"),
    ebgp_max_hop=dict(type="int"),
    additional_paths_receive=dict(type="bool"),
    port=dict(type="int"),
    bfd=bfd_option(),
)

CONFIG_SPEC = bgp_resource.config_options(
    NEIGHBOR_SPEC,
    graceful_restart=dict(type="bool"),
    maximum_paths_for=dict(type="str", choices=["ebgp", "ibgp", "eibgp"]),
)

# `undo bgp` asks "Undo BGP process? [Y/N]:" before removing the whole view.
CONFIRM = re.compile(r"^undo bgp \d+$")


def desired(module, state, have):
    """The whole owned configuration wanted after the run, or None for none at all."""
    data = module.params["config"]
    if state == "deleted":
        names = [n["address"] for n in (data or {}).get("neighbors") or ()]
        if data is not None and not names and have is not None:
            module.fail_json(msg="config.neighbors: name the neighbours to delete, or omit config")
        try:
            return network_resource.deleted(RULES, have, data)
        except ComwareBgpConfigError as exc:
            module.fail_json(msg=f"after removing {names}: {exc}")
    if data is None:
        module.fail_json(msg=f"config is required with state={state}")
    try:
        if state == "merged":
            return network_resource.merged(RULES, have, data)
        if state == "replaced":
            return network_resource.replaced(RULES, have, data)
        return network_resource.overridden(RULES, data)  # and rendered
    except ComwareBgpConfigError as exc:
        module.fail_json(msg=f"config.{exc}")


def edit(connection, commands):
    """Send commands through the cliconf plugin (which enters system-view and returns)."""
    candidate = [
        {"command": c, "prompt": r"\[Y/N\]:", "answer": "Y"} if CONFIRM.match(c) else c
        for c in commands
    ]
    connection.edit_config(candidate=candidate)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            config=dict(type="dict", options=CONFIG_SPEC),
            update_password=dict(type="str", default="on_create", choices=["on_create", "always"]),
            **state_argument_spec(),
        ),
        required_if=REQUIRED_IF,
        supports_check_mode=True,
    )
    state = module.params["state"]

    if state == "rendered":
        module.exit_json(changed=False, rendered=config_text(desired(module, state, None)))
    if state == "parsed":
        module.exit_json(
            changed=False,
            parsed=bgp_resource.returned_config(parse_config(module.params["running_config"])),
        )

    if not module._socket_path:
        module.fail_json(
            msg=f"state={state} needs connection: ansible.netcommon.network_cli with "
            "ansible_network_os: porter.lb.comware"
        )
    connection = Connection(module._socket_path)
    try:
        running = connection.get_config(source="running")
        have = parse_config(running)
        if state == "gathered":
            gathered = bgp_resource.returned_config(have) or {}
            gathered["sessions"] = parse_peer_states(connection.get("display bgp peer ipv4"))
            module.exit_json(changed=False, gathered=gathered)

        after = desired(module, state, have)
        before_statements = owned_statements(running)
        after_statements = config_statements(after) if after is not None else []
        after_statements = keep_bfd_modes(before_statements, after_statements)
        if module.params["update_password"] == "on_create":
            after_statements = keep_device_passwords(before_statements, after_statements)
        # With update_password=always a plain-text password never equals the running cipher
        # text, so it is sent again.
        ops = diff_statements(before_statements, after_statements)
        result = bgp_resource.changing_result(have, after)
        if ops:
            commands = commands_for(ops)
            result["commands"] = [masked(c) for c in commands]
            result["changed"] = True
            if not module.check_mode:
                edit(connection, commands)
                result["after"] = bgp_resource.returned_config(
                    parse_config(connection.get_config(source="running"))
                )
    except ConnectionError as exc:
        module.fail_json(msg=masked(f"Comware: {exc}"), code=getattr(exc, "code", None))
    if module._diff:
        result["diff"] = bgp_resource.statements_diff(
            before_statements, after_statements, statements_text, masked
        )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
