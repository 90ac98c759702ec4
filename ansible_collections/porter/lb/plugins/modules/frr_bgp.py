#!/usr/bin/python
# Copyright: porter-lb contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
# SPDX-License-Identifier: Apache-2.0

from __future__ import annotations

DOCUMENTATION = r"""
---
module: frr_bgp
short_description: Manage the cluster-facing BGP configuration of an FRR router
version_added: 0.1.0
description:
  - Manages, through C(vtysh), the part of FRR's C(router bgp) that faces a
    porter-lb cluster - router ID, timers, neighbours (the nodes or a central
    speaker) or a peer group with C(bgp listen range), C(maximum-paths) for
    ECMP, C(bgp bestpath as-path multipath-relax) and the import/export
    policies limited to the EIP pools.
  - Follows the network resource-module pattern; O(state) selects what is
    done with O(config). O(state=replaced) sets the global settings to
    O(config) (those it leaves out are removed) and replaces the neighbours it
    lists; other neighbours stay. O(state=gathered) returns the running
    configuration and the sessions' states.
  - The running configuration is read with C(vtysh -c 'show running-config'),
    compared with the wanted one, and only the difference is sent, as one
    C(vtysh -c 'configure terminal' -c ...) run. Other lines of the router's
    configuration are left alone.
  - The owned policies are prefix-list C(PORTER-LB-EIP-POOLS) (each pool's /32
    host routes, C(ge 32)), route-map C(PORTER-LB-EIP-IN) (permit them, applied
    in) and route-map C(PORTER-LB-DENY-OUT) (deny all, applied out).
  - The owned BFD profiles, in bfdd's C(bfd) block, are
    C(PORTER-LB-BFD-TX<ms>-RX<ms>-M<n>), one per set of neighbour BFD timers
    other than the defaults; a profile no neighbour names any more is removed.
    Other profiles and the C(bfd) block itself are left alone. A neighbour of the
    C(router bgp) whose C(neighbor ... bfd profile) names another profile fails every
    state that reads the router (the message names the neighbour and the profile) - the
    module neither reads that profile's timers nor replaces or removes the line.
  - Before changing anything the commands are checked with C(vtysh --dryrun).
    If FRR still rejects one while applying, the module puts back the
    configuration it found (computing the commands from what is running then)
    and fails with FRR's message, so nothing is left half-applied.
author:
  - porter-lb maintainers (@porter-lb)
options:
  config:
    description:
      - The wanted BGP configuration.
      - Required for O(state=merged), O(state=replaced), O(state=overridden)
        and O(state=rendered). With O(state=deleted) it may name the
        neighbours to remove; without it the whole C(router bgp) and the owned
        policies are removed.
    type: dict
    suboptions:
      asn:
        description: The router's AS number (C(router bgp <asn>)).
        type: int
      router_id:
        description: The BGP router ID, an IPv4 address.
        type: str
      keepalive:
        description: C(timers bgp) keepalive in seconds; set with O(config.hold_time).
        type: int
      hold_time:
        description: C(timers bgp) hold time in seconds (0 or at least 3).
        type: int
      maximum_paths:
        description:
          - C(maximum-paths) for eBGP in C(address-family ipv4 unicast), 1 to 64;
            the number of nodes a prefix may be spread over by ECMP.
        type: int
      multipath_relax:
        description:
          - Whether to set C(bgp bestpath as-path multipath-relax), which FRR
            needs to use paths from different neighbour ASNs together.
          - When not given, it is set exactly when the neighbours' ASNs differ
            (or a peer group has C(remote-as external)).
        type: bool
      ebgp_requires_policy:
        description:
          - C(false) writes C(no bgp ebgp-requires-policy).
          - With the default C(true), FRR drops every route from an eBGP
            neighbour without policies, so O(config.pools) must then be given.
        type: bool
        default: true
      pools:
        description:
          - The EIP pools (IPv4 networks) whose /32 host routes are accepted
            from the neighbours. When given, every neighbour gets the owned
            in/out route-maps.
        type: list
        elements: str
      neighbors:
        description: The neighbours (IP addresses) or peer groups (names).
        type: list
        elements: dict
        suboptions:
          address:
            description: The neighbour's IP address, or the peer group's name.
            type: str
            required: true
          peer_group:
            description: O(config.neighbors[].address) names a peer group.
            type: bool
            default: false
          remote_as:
            description:
              - An AS number, C(external) or C(internal).
              - Required except with O(state=deleted), where only O(config.neighbors[].address) counts.
            type: str
          description:
            description: C(neighbor ... description).
            type: str
          password:
            description: The TCP MD5 password of the session.
            type: str
          keepalive:
            description: Per-neighbour keepalive in seconds; set with O(config.neighbors[].hold_time).
            type: int
          hold_time:
            description: Per-neighbour hold time in seconds.
            type: int
          connect_retry:
            description: C(neighbor ... timers connect) in seconds.
            type: int
          listen_ranges:
            description: For a peer group, the networks it accepts sessions from (C(bgp listen range)).
            type: list
            elements: str
          port:
            description:
              - The neighbour's TCP port, 1 to 65535 (C(neighbor ADDRESS port PORT)), e.g.
                V(1790) for a node whose gobgpd cannot listen on 179 because Calico's BIRD
                holds it.
              - Not given, or V(179), writes nothing (FRR's default); returned as C(null)
                then.
              - Not for a peer group, whose sessions come from its listen ranges and are
                accepted on the router's own port.
            type: int
          bfd:
            description:
              - BFD for the session (C(neighbor ... bfd)). Needs FRR's bfdd running (C(bfdd=yes)
                in the daemons file; the role porter.lb.frr_router sets it when a neighbour
                has BFD). Before applying anything, the module fails when the wanted
                configuration has any BFD line and C(vtysh -c 'show daemons') does not list
                bfdd (in check mode it warns).
              - Timers other than the defaults go into an owned profile,
                C(bfd) / C(profile PORTER-LB-BFD-TX<ms>-RX<ms>-M<n>) /
                C(detect-multiplier), C(transmit-interval), C(receive-interval), named by
                C(neighbor ... bfd profile NAME). The defaults (300, 300, 3) are bfdd's
                own, so C(neighbor ... bfd) alone gives them.
              - With O(state=merged) a given C(bfd) replaces the neighbour's BFD as a whole,
                not key by key - a timer it leaves out returns to its default (300, 300, 3),
                whatever the router held. Give every timer to keep one. Not given, C(bfd)
                stays as it is.
              - Not given, or V(enabled=false), is no BFD; returned as C(null) then. A timer given
                with V(enabled=false) fails the task naming it - it would be written nowhere.
            type: dict
            suboptions:
              enabled:
                description: Whether the session uses BFD.
                type: bool
                required: true
              transmit_interval:
                description: The desired minimum transmit interval in milliseconds, 10 to 60000 (default V(300)).
                type: int
              receive_interval:
                description: The required minimum receive interval in milliseconds, 10 to 60000 (default V(300)).
                type: int
              detect_multiplier:
                description: The detection multiplier, 2 to 255 (default V(3)).
                type: int
  vty_socket:
    description: The directory of FRR's vty sockets (C(vtysh --vty_socket)), for private instances.
    type: path
  vtysh_path:
    description: The C(vtysh) program (a path, or a name looked up in E(PATH)).
    type: str
    default: vtysh
extends_documentation_fragment:
  - porter.lb.network_resource
notes:
  - Written for FRR 8.4. ADD-PATH receive needs no configuration there - FRR
    8.4 advertises the receive capability on every session and has no
    C(addpath-rx-paths-limit) (newer FRR has).
  - C(frr-reload.py) is not used - it reconciles a whole configuration file,
    while this module owns only part of C(router bgp).
  - Passwords are shown as C(********) in diffs and returned commands.
  - BFD (O(config.neighbors[].bfd)) needs bfdd running beside bgpd; without it
    vtysh has nowhere to send the C(bfd) profile commands and a neighbour's C(bfd)
    runs no session, so the module checks C(show daemons) first and fails with
    nothing applied. The neighbour must run BFD too, in the same single-hop or
    multihop mode.
"""

EXAMPLES = r"""
- name: The three nodes peer with the router, ECMP over them, only EIP /32s accepted
  porter.lb.frr_bgp:
    config:
      asn: 65000
      router_id: 198.51.100.1
      keepalive: 3
      hold_time: 9
      maximum_paths: 8
      pools: [203.0.113.0/24]
      neighbors:
        - {address: 198.51.100.11, remote_as: "65001", description: node1}
        - {address: 198.51.100.12, remote_as: "65001", description: node2}
        - {address: 198.51.100.13, remote_as: "65001", description: node3}
    state: overridden

- name: Any node of the subnet may peer (dynamic neighbours)
  porter.lb.frr_bgp:
    config:
      asn: 65000
      pools: [203.0.113.0/24]
      neighbors:
        - address: NODES
          peer_group: true
          remote_as: external
          listen_ranges: [198.51.100.0/24]

- name: Nodes whose gobgpd listens on 1790 (Calico's BIRD holds 179), with BFD
  porter.lb.frr_bgp:
    config:
      asn: 65000
      pools: [203.0.113.0/24]
      neighbors:
        - address: 198.51.100.11
          remote_as: "65001"
          port: 1790
          bfd: {enabled: true}
        - address: 198.51.100.12
          remote_as: "65001"
          port: 1790
          bfd: {enabled: true, transmit_interval: 100, receive_interval: 100, detect_multiplier: 3}
    state: merged

- name: Sessions as FRR sees them
  porter.lb.frr_bgp:
    state: gathered
  register: frr

- name: Render without a router
  porter.lb.frr_bgp:
    config: {asn: 65000, ebgp_requires_policy: false}
    state: rendered
"""

RETURN = r"""
before:
  description: The owned configuration before the run (C(null) when there was no C(router bgp)).
  returned: when O(state) is C(merged), C(replaced), C(overridden) or C(deleted)
  type: dict
  sample: {asn: 65000, neighbors: [{address: 198.51.100.11, remote_as: "65001", port: null, bfd: null}]}
after:
  description: The owned configuration after the run (in check mode, what it would be).
  returned: when O(state) is C(merged), C(replaced), C(overridden) or C(deleted)
  type: dict
  sample: {asn: 65000, neighbors: [{address: 198.51.100.11, remote_as: "65001", port: 1790,
           bfd: {enabled: true, transmit_interval: 100, receive_interval: 100, detect_multiplier: 3}}]}
commands:
  description: The vtysh configuration commands sent (or, in check mode, to be sent); passwords masked.
  returned: when O(state) is C(merged), C(replaced), C(overridden) or C(deleted)
  type: list
  elements: str
  sample: ["router bgp 65000", "neighbor 198.51.100.11 remote-as 65001",
           "neighbor 198.51.100.11 port 1790", "neighbor 198.51.100.11 bfd", "exit"]
gathered:
  description: The owned running configuration, plus C(sessions), each neighbour's state.
  returned: when O(state=gathered)
  type: dict
  sample: {asn: 65000, sessions: {"198.51.100.11": Established}}
rendered:
  description: FRR configuration text for O(config).
  returned: when O(state=rendered)
  type: str
  sample: "router bgp 65000\n no bgp ebgp-requires-policy\nexit\n!\n"
parsed:
  description: The configuration parsed from O(running_config) (C(null) without C(router bgp)).
  returned: when O(state=parsed)
  type: dict
  sample: {asn: 65000, neighbors: []}
"""

import json
import os
import re
import tempfile

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.porter.lb.plugins.module_utils import bgp_resource, network_resource
from ansible_collections.porter.lb.plugins.module_utils.bgp_session import bfd_option
from ansible_collections.porter.lb.plugins.module_utils.frr_bgp import (
    BFD,
    RULES,
    FrrBgpConfigError,
    bfdd_running,
    commands_for,
    config_from_dict,
    config_statements,
    config_text,
    diff_statements,
    missing_statements,
    owned_statements,
    parse_config,
    statements_text,
    uses_bfd,
)
from ansible_collections.porter.lb.plugins.module_utils.network_resource import (
    REQUIRED_IF,
    state_argument_spec,
)

NEIGHBOR_SPEC = bgp_resource.neighbor_options(
    connect_retry=dict(type="int"), port=dict(type="int"), bfd=bfd_option()
)

CONFIG_SPEC = bgp_resource.config_options(
    NEIGHBOR_SPEC, ebgp_requires_policy=dict(type="bool", default=True)
)


class Vtysh:
    """vtysh, the one way this module reads and changes FRR."""

    def __init__(self, module):
        self.module = module
        self.program = module.get_bin_path(module.params["vtysh_path"], required=True)
        self.base = [self.program]
        if module.params["vty_socket"]:
            self.base += ["--vty_socket", module.params["vty_socket"]]

    def run(self, *commands):
        args = list(self.base)
        for command in commands:
            args += ["-c", command]
        return self.module.run_command(args)

    def show(self, command):
        rc, out, err = self.run(command)
        if rc != 0:
            self.module.fail_json(msg=f"vtysh {command!r} failed (rc {rc}): {(out + err).strip()}")
        return out

    def running_config(self):
        return self.show("show running-config")

    def dry_run(self, commands):
        """vtysh's own parser on the commands, without any daemon: catches syntax errors."""
        handle, path = tempfile.mkstemp(prefix="frr_bgp-", suffix=".conf")
        try:
            with os.fdopen(handle, "w") as stream:
                stream.write("\n".join(commands) + "\n")
            rc, out, err = self.module.run_command([self.program, "--dryrun", "-f", path])
        finally:
            os.unlink(path)
        return rc, (out + err).strip()

    def configure(self, commands):
        rc, out, err = self.run("configure terminal", *commands)
        # vtysh stops at the first command a daemon rejects and exits non-zero.
        return rc, (out + err).strip()


def parsed(module, text, where):
    """The BgpConfig of `text`; a line the parser cannot read fails the task, naming it."""
    try:
        return parse_config(text)
    except FrrBgpConfigError as exc:
        module.fail_json(msg=f"{where}: {exc}")


def want_config(module, required):
    data = module.params["config"]
    if data is None:
        if required:
            module.fail_json(msg="config is required with state={}".format(module.params["state"]))
        return None
    try:
        return config_from_dict(data, whole=module.params["state"] != "merged")
    except FrrBgpConfigError as exc:
        module.fail_json(msg=f"config.{exc}")


def desired(module, state, have):
    data = module.params["config"]
    if state == "deleted":
        names = [n["address"] for n in (data or {}).get("neighbors") or ()]
        try:
            return network_resource.deleted(RULES, have, data)
        except FrrBgpConfigError as exc:
            module.fail_json(msg=f"after removing {names}: {exc}")
    want = want_config(module, required=True)  # fails naming the option given
    try:
        if state == "merged":
            return network_resource.merged(RULES, have, data)
        if state == "replaced":
            return network_resource.replaced(RULES, have, data)
    except FrrBgpConfigError as exc:
        module.fail_json(msg=f"the merged configuration: {exc}")
    return want


def masked(text):
    """`text` (commands or configuration) with every neighbour password hidden."""
    return re.sub(r"^(\s*(?:no )?neighbor \S+ password ).*$", r"\1********", text, flags=re.M)


def sessions(vtysh):
    summary = json.loads(vtysh.show("show bgp ipv4 unicast summary json") or "{}")
    peers = summary.get("peers", summary.get("ipv4Unicast", {}).get("peers", {}))
    return {address: peer.get("state", "") for address, peer in peers.items()}


def apply(module, vtysh, before_statements, after_statements):
    """Send the difference; on a rejected command put back `before_statements` and fail."""
    commands = commands_for(diff_statements(before_statements, after_statements))
    rc, output = vtysh.dry_run(commands)
    if rc != 0:
        module.fail_json(msg=f"vtysh --dryrun rejects the commands, nothing applied: {output}")
    rc, output = vtysh.configure(commands)
    if rc == 0:
        return
    now = owned_statements(vtysh.running_config())
    back = commands_for(diff_statements(now, before_statements))
    back_rc, back_output = (0, "") if not back else vtysh.configure(back)
    if back_rc != 0:
        module.fail_json(
            msg=f"FRR rejected a command ({output}) and restoring the previous configuration failed "
            f"too ({back_output}): the router holds a partial change"
        )
    module.fail_json(msg=f"FRR rejected a command, previous configuration restored: {output}")


def check_bfdd(module, vtysh, after_statements):
    """Before anything is applied: fail when the wanted configuration has a BFD line and
    bfdd does not run (vtysh sends the ``bfd`` block to bfdd and quietly drops it when bfdd
    is not there, and a neighbour's ``bfd`` then runs no session).  In check mode, warn:
    the role porter.lb.frr_router starts bfdd only when it applies."""
    if not uses_bfd(after_statements) or bfdd_running(vtysh.show("show daemons")):
        return
    message = (
        "a neighbour has BFD (config.neighbors[].bfd) but bfdd does not run (vtysh 'show "
        "daemons' does not list it): set bfdd=yes in FRR's daemons file and restart FRR"
    )
    if module.check_mode:
        module.warn(message + "; applying would fail")
        return
    module.fail_json(msg=message + "; nothing applied", changed=False)


def check_bfd_profiles(module, result, after_statements, now):
    """After applying: fail (reporting the commands sent) when FRR does not show a BFD
    profile line sent, e.g. bfdd stopped since check_bfdd."""
    sent = [s for s in after_statements if s[0][:1] == (BFD,)]
    missing = missing_statements(sent, now)
    if missing:
        module.fail_json(
            msg="FRR does not show the BFD profile lines sent ({}): is bfdd running "
            "(bfdd=yes in FRR's daemons file)? The commands were applied".format(
                "; ".join(" / ".join((*context[1:], line)) for context, line in missing)
            ),
            **{**result, "changed": True},
        )


def main():
    module = AnsibleModule(
        argument_spec=dict(
            config=dict(type="dict", options=CONFIG_SPEC),
            vty_socket=dict(type="path"),
            vtysh_path=dict(type="str", default="vtysh"),
            **state_argument_spec(),
        ),
        required_if=REQUIRED_IF,
        supports_check_mode=True,
    )
    state = module.params["state"]

    if state == "rendered":
        want = want_config(module, required=True)
        module.exit_json(changed=False, rendered=config_text(want))
    if state == "parsed":
        config = parsed(module, module.params["running_config"], "running_config")
        module.exit_json(changed=False, parsed=bgp_resource.returned_config(config))

    vtysh = Vtysh(module)
    running = vtysh.running_config()
    have = parsed(module, running, where="FRR's running configuration")
    if state == "gathered":
        gathered = bgp_resource.returned_config(have) or {}
        gathered["sessions"] = sessions(vtysh)
        module.exit_json(changed=False, gathered=gathered)

    after = desired(module, state, have)
    before_statements = owned_statements(running)
    after_statements = config_statements(after) if after is not None else []
    masked_commands = [
        masked(command)
        for command in commands_for(diff_statements(before_statements, after_statements))
    ]
    result = bgp_resource.changing_result(have, after)
    if set(before_statements) != set(after_statements):
        result["commands"] = masked_commands
        check_bfdd(module, vtysh, after_statements)
        if not module.check_mode:
            apply(module, vtysh, before_statements, after_statements)
            now = owned_statements(vtysh.running_config())
            check_bfd_profiles(module, result, after_statements, now)
            result["after"] = bgp_resource.returned_config(parse_config(statements_text(now)))
            result["changed"] = set(now) != set(before_statements)
        else:
            result["changed"] = True
    if module._diff:
        result["diff"] = bgp_resource.statements_diff(
            before_statements, after_statements, statements_text, masked
        )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
