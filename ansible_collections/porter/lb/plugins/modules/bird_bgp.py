#!/usr/bin/python
# Copyright: porter-lb contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
# SPDX-License-Identifier: Apache-2.0

from __future__ import annotations

DOCUMENTATION = r"""
---
module: bird_bgp
short_description: Manage the cluster-facing BGP configuration of a BIRD 2 router
version_added: 0.1.0
description:
  - Manages the BGP side of a Linux router running BIRD 2 that faces a porter-lb cluster.
    That is the nodes' speakers (or the central speaker) as neighbours, ADD-PATH receive, an
    import filter that accepts only host routes (/32, /128) inside the EIP pools, nothing
    exported to the cluster, and a kernel protocol per address family with
    C(merge paths on limit N) so the kernel gets ECMP routes.
  - The configuration lives in one file the module owns (O(path)), which the main BIRD
    configuration (O(bird_config)) must C(include). The module never edits the main file.
  - Before a new file is put in place, the whole configuration is validated with
    C(bird -p -c) on a temporary copy of the main file that includes the new text. The file is
    then replaced and BIRD reconfigured with C(birdc -s SOCKET configure); if that fails, the
    previous file is restored and the module fails.
  - Follows the network resource-module pattern. O(state=merged), O(state=replaced),
    O(state=overridden) and O(state=deleted) change the file; O(state=gathered) reads the file
    and the live sessions; O(state=rendered) and O(state=parsed) need neither BIRD nor the file.
  - O(state=deleted) without neighbours to remove keeps O(path), holding only a comment, so the
    main file's C(include) stays valid. O(state=gathered) returns the configuration in O(path)
    and the live BGP sessions. O(running_config) for O(state=parsed) is the content of a file
    this module wrote.
  - The file also holds C(router id) when O(config.router_id) is set; the main file must not set
    it then. The main file should hold C(protocol device).
author:
  - porter-lb maintainers (@porter-lb)
options:
  config:
    description:
      - The BGP configuration.
      - Required for O(state=merged), O(state=replaced), O(state=overridden) and
        O(state=rendered). With O(state=deleted), the neighbours named in
        O(config.neighbors) (and O(config.neighbor_range) when given) are removed; without
        them the whole configuration is removed.
    type: dict
    suboptions:
      local_as:
        description: The router's AS number (1 to 4294967295).
        type: int
      router_id:
        description:
          - The router id (an IPv4 address other than C(0.0.0.0)). Written as a global
            C(router id) statement; leave unset when the main file sets it.
        type: str
      neighbors:
        description:
          - Static BGP neighbours, one BIRD C(protocol bgp) each, named after O(config.neighbors[].name).
          - With O(state=merged), neighbours are matched by name.
        type: list
        elements: dict
        suboptions:
          name:
            description:
              - The BIRD protocol name, e.g. C(node1). A letter or C(_), then letters, digits
                or C(_); names starting with C(porter_) are reserved for the module.
            type: str
            required: true
          address:
            description: The neighbour's IPv4 or IPv6 address.
            type: str
          as:
            description: The neighbour's AS number.
            type: int
          port:
            description:
              - The neighbour's TCP port, 1 to 65535 (default V(179)), e.g. V(1790) for a
                node whose gobgpd cannot listen on 179 because Calico's BIRD holds it.
              - Rendered as C(neighbor ADDRESS port PORT as AS); 179 is not written.
            type: int
          bfd:
            description:
              - BFD for the session, run by a C(protocol bfd porter_bfd) the file holds
                while any session uses BFD (see the notes for a C(protocol bfd) of the main
                file's own).
              - Rendered inside the session's protocol as C(bfd { min rx interval R ms; min tx
                interval T ms; multiplier M; }); the timers are always written, since BIRD's own
                defaults (10 ms, 100 ms, 5) are not porter-lb's.
              - Not given is V(enabled=false), returned as V(enabled=false) alone. A timer given with
                V(enabled=false) fails the task naming it - it would be written nowhere.
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
      neighbor_range:
        description:
          - A dynamic BGP peer (BIRD C(neighbor range)), accepting a session from any speaker
            inside O(config.neighbor_range.prefix). BIRD names the spawned sessions after
            O(config.neighbor_range.name) with a number appended.
        type: dict
        suboptions:
          name:
            description: The protocol name (and the prefix of the sessions' names).
            type: str
            default: dynamic
          prefix:
            description: The network the peers' addresses are in, e.g. C(198.51.100.0/24).
            type: str
          as:
            description: The peers' AS number.
            type: int
          bfd:
            description:
              - BFD for the sessions spawned from the range (a range has no port, as BIRD only
                accepts its sessions, on its own port), run by a C(protocol bfd porter_bfd)
                the file holds while any session uses BFD (see the notes for a
                C(protocol bfd) of the main file's own).
              - Rendered inside the session's protocol as C(bfd { min rx interval R ms; min tx
                interval T ms; multiplier M; }); the timers are always written, since BIRD's own
                defaults (10 ms, 100 ms, 5) are not porter-lb's.
              - Not given is V(enabled=false), returned as V(enabled=false) alone. A timer given with
                V(enabled=false) fails the task naming it - it would be written nowhere.
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
      pools:
        description:
          - The EIP pools as CIDRs (written canonically, e.g. C(203.0.113.0/24)). Only host
            routes (/32 for IPv4, /128 for IPv6) inside them are imported from the neighbours.
          - Each pool's IP family gets a BGP channel and a kernel protocol.
        type: list
        elements: str
      add_paths_rx:
        description:
          - Negotiate ADD-PATH receive, so a central speaker can send one path per node.
          - Defaults to V(false) in a new configuration.
        type: bool
      merge_paths_limit:
        description:
          - The most next hops merged into one kernel route (C(merge paths on limit N)).
          - Defaults to V(16) in a new configuration.
        type: int
      timers:
        description: Session timers in seconds. Unset timers take the defaults shown.
        type: dict
        suboptions:
          hold:
            description: Hold time, 0 or 3 to 65535 (default V(9)).
            type: int
          keepalive:
            description: Keepalive time, below the hold time (default V(3)).
            type: int
          connect_retry:
            description: Connect retry time (default V(1)).
            type: int
          error_wait_min:
            description: Minimum error wait time (default V(1)).
            type: int
          error_wait_max:
            description: Maximum error wait time (default V(5)).
            type: int
      password:
        description:
          - TCP-MD5 password for every session; 1 to 80 characters without double quotes,
            backslashes or newlines.
          - Shown as C(********) in returned values and diffs.
        type: str
  path:
    description: The file the module owns, included from O(bird_config).
    type: path
    default: /etc/bird/porter-lb-bgp.conf
  bird_config:
    description: The main BIRD configuration file, which must C(include) O(path).
    type: path
    default: /etc/bird/bird.conf
  socket:
    description: BIRD's control socket, for C(birdc -s).
    type: path
    default: /run/bird/bird.ctl
extends_documentation_fragment:
  - porter.lb.network_resource
notes:
  - Needs C(bird) and C(birdc) on the target for the states that change or gather.
  - BFD (O(config.neighbors[].bfd), O(config.neighbor_range.bfd)) is run by the owned
    file's C(protocol bfd porter_bfd). The main file may hold a C(protocol bfd) of its own
    too (C(bird -p) accepts both), but BIRD hands a session's BFD request to one of the
    BFD protocols, not necessarily C(porter_bfd), so that protocol's own options (the
    interfaces or neighbours it takes, authentication) then apply to the session; the
    module does not check for one. The neighbour must run BFD too, in the same single-hop
    or multihop mode.
  - The parser accepts only what this module writes; a hand-edited O(path) is reported as an
    error naming the line, never silently overwritten with a guess.
"""

EXAMPLES = r"""
- name: Peer with three nodes and accept their EIP routes, ECMP into the kernel
  porter.lb.bird_bgp:
    config:
      local_as: 65000
      router_id: 198.51.100.1
      neighbors:
        - {name: node1, address: 198.51.100.11, as: 65001}
        - {name: node2, address: 198.51.100.12, as: 65001}
        - {name: node3, address: 198.51.100.13, as: 65001}
      pools: [203.0.113.0/24]
      merge_paths_limit: 16
    state: merged

- name: Accept any node of the node network (dynamic BGP) and a central speaker's ADD-PATH paths
  porter.lb.bird_bgp:
    config:
      local_as: 65000
      neighbor_range: {name: nodes, prefix: 198.51.100.0/24, as: 65001}
      pools: [203.0.113.0/24, 2001:db8:100::/64]
      add_paths_rx: true
    state: overridden
    path: /etc/bird/porter-lb-bgp.conf
    bird_config: /etc/bird/bird.conf
    socket: /run/bird/bird.ctl

- name: Peer with nodes whose gobgpd listens on 1790 (Calico's BIRD holds 179), with BFD
  porter.lb.bird_bgp:
    config:
      local_as: 65000
      neighbors:
        - name: node1
          address: 198.51.100.11
          as: 65001
          port: 1790
          bfd: {enabled: true}
        - name: node2
          address: 198.51.100.12
          as: 65001
          port: 1790
          bfd: {enabled: true, transmit_interval: 100, receive_interval: 100, detect_multiplier: 3}
      pools: [203.0.113.0/24]
    state: merged

- name: Remove one neighbour
  porter.lb.bird_bgp:
    config:
      neighbors:
        - name: node3
    state: deleted

- name: Read the sessions
  porter.lb.bird_bgp:
    state: gathered
  register: bgp

- name: Render a file without a router
  porter.lb.bird_bgp:
    config:
      local_as: 65000
      neighbors: [{name: node1, address: 198.51.100.11, as: 65001}]
      pools: [203.0.113.0/24]
    state: rendered
"""

RETURN = r"""
before:
  description: The configuration in O(path) before the module ran (null when there was none).
  returned: when O(state) is merged, replaced, overridden or deleted
  type: dict
  sample: {"local_as": 65000, "neighbors": [{"name": "node1", "address": "198.51.100.11", "as": 65001,
                                             "port": 179, "bfd": {"enabled": false}}]}
after:
  description: The configuration in O(path) afterwards (or that would be, in check mode).
  returned: when O(state) is merged, replaced, overridden or deleted
  type: dict
  sample: {"local_as": 65000, "neighbors": [{"name": "node1", "address": "198.51.100.11", "as": 65001,
                                             "port": 1790, "bfd": {"enabled": true, "transmit_interval": 300,
                                                                   "receive_interval": 300, "detect_multiplier": 3}}]}
gathered:
  description: The configuration in O(path) (null when the file holds none).
  returned: when O(state=gathered)
  type: dict
  sample: {"local_as": 65000, "pools": ["203.0.113.0/24"]}
sessions:
  description: The BGP protocols BIRD runs, from C(birdc show protocols all).
  returned: when O(state=gathered)
  type: list
  elements: dict
  contains:
    name:
      description: The protocol name.
      type: str
      returned: always
      sample: node1
    neighbor:
      description: The neighbour address (null for the template of a neighbor range).
      type: str
      returned: always
      sample: 198.51.100.11
    neighbor_as:
      description: The neighbour's AS number, when BIRD shows it.
      type: int
      returned: always
      sample: 65001
    state:
      description: The BGP state (Idle, Connect, Active, OpenSent, OpenConfirm, Established).
      type: str
      returned: always
      sample: Established
    protocol_state:
      description: BIRD's protocol state (up, start, down).
      type: str
      returned: always
      sample: up
birdc:
  description: What C(birdc configure) answered when the new file was applied.
  returned: when the file was changed outside check mode
  type: str
  sample: Reconfigured
rendered:
  description: The file text for O(config).
  returned: when O(state=rendered)
  type: str
  sample: "# Managed by porter.lb.bird_bgp ..."
parsed:
  description: The structured configuration read from O(running_config).
  returned: when O(state=parsed)
  type: dict
  sample: {"local_as": 65000, "pools": ["203.0.113.0/24"]}
"""

import os
import tempfile

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.porter.lb.plugins.module_utils import network_resource
from ansible_collections.porter.lb.plugins.module_utils.bgp_session import bfd_option
from ansible_collections.porter.lb.plugins.module_utils.bird_bgp import (
    HEADER,
    RULES,
    BirdBgpConfigError,
    config_from_dict,
    parse,
    parse_show_protocols_all,
    redact,
    render,
)
from ansible_collections.porter.lb.plugins.module_utils.network_resource import (
    REQUIRED_IF,
    state_argument_spec,
)

MASK = "********"
EMPTY = HEADER + "\n# No BGP configuration.\n"


def argument_spec():
    as_number = {"type": "int"}
    return dict(
        config=dict(
            type="dict",
            options=dict(
                local_as=dict(type="int"),
                router_id=dict(type="str"),
                neighbors=dict(
                    type="list",
                    elements="dict",
                    options={
                        "name": dict(type="str", required=True),
                        "address": dict(type="str"),
                        "as": as_number,
                        "port": dict(type="int"),
                        "bfd": bfd_option(),
                    },
                ),
                neighbor_range=dict(
                    type="dict",
                    options={
                        "name": dict(type="str", default="dynamic"),
                        "prefix": dict(type="str"),
                        "as": as_number,
                        "bfd": bfd_option(),
                    },
                ),
                pools=dict(type="list", elements="str"),
                add_paths_rx=dict(type="bool"),
                merge_paths_limit=dict(type="int"),
                timers=dict(
                    type="dict",
                    options=dict(
                        hold=dict(type="int"),
                        keepalive=dict(type="int"),
                        connect_retry=dict(type="int"),
                        error_wait_min=dict(type="int"),
                        error_wait_max=dict(type="int"),
                    ),
                ),
                password=dict(type="str", no_log=True),
            ),
        ),
        path=dict(type="path", default="/etc/bird/porter-lb-bgp.conf"),
        bird_config=dict(type="path", default="/etc/bird/bird.conf"),
        socket=dict(type="path", default="/run/bird/bird.ctl"),
        **state_argument_spec(),
    )


def masked(config):
    if config is None:
        return None
    data = config.to_dict()
    if data.get("password") is not None:
        data["password"] = MASK
    return data


def parse_text(module, text, where):
    statements = [
        line
        for line in (text or "").splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    if not statements:
        return None
    try:
        return parse(text)
    except BirdBgpConfigError as exc:
        module.fail_json(msg=f"{where}: {exc}")


def read_file(path):
    try:
        with open(path) as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def write_file(module, path, text):
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", dir=directory)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(tmp, 0o640)
    module.atomic_move(tmp, path)


def include_targets(line, base):
    words = line.strip().split(None, 1)
    if len(words) != 2 or words[0] != "include":
        return None
    target = words[1].strip().rstrip(";").strip().strip('"')
    return os.path.normpath(os.path.join(base, target))


def validate_with_bird(module, text):
    """Run `bird -p` on a copy of the main file whose include of `path` names a copy of `text`."""
    path, main = module.params["path"], module.params["bird_config"]
    main_text = read_file(main)
    if main_text is None:
        module.fail_json(msg=f"bird_config {main!r}: file not found; it must include path {path!r}")
    base = os.path.dirname(os.path.abspath(main))
    directory = os.path.dirname(os.path.abspath(path))
    fd, candidate = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", dir=directory)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    lines, found = [], False
    for original in main_text.splitlines():
        line = original
        if include_targets(line, base) == os.path.normpath(os.path.abspath(path)):
            line, found = f'include "{candidate}";', True
        lines.append(line)
    fd, main_copy = tempfile.mkstemp(prefix=f".{os.path.basename(main)}.", dir=base)
    with os.fdopen(fd, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    try:
        if not found:
            module.fail_json(
                msg=f'bird_config {main!r} does not include path {path!r}: add the line include "{path}"; to it'
            )
        bird = module.get_bin_path("bird", required=True)
        rc, out, err = module.run_command([bird, "-p", "-c", main_copy])
        if rc != 0:
            detail = (err or out).strip().replace(candidate, path).replace(main_copy, main)
            module.fail_json(
                msg=f"BIRD rejected the configuration (bird -p -c {main}): {detail}; {path} was not changed",
                rendered=redact(text),
            )
    finally:
        for name in (candidate, main_copy):
            if os.path.exists(name):
                os.unlink(name)


def birdc(module, *command):
    birdc_bin = module.get_bin_path("birdc", required=True)
    return module.run_command([birdc_bin, "-s", module.params["socket"], *command])


def configure(module, path, old_text, new_text):
    """Put `new_text` in place and reconfigure BIRD; restore `old_text` if that fails."""
    write_file(module, path, new_text)
    rc, out, err = birdc(module, "configure")
    output = (out + err).strip()
    if rc == 0 and ("Reconfigured" in output or "Reconfiguration in progress" in output):
        return output
    if old_text is None:
        os.unlink(path)
    else:
        write_file(module, path, old_text)
    module.fail_json(
        msg=f"birdc -s {module.params['socket']} configure failed: {output or f'rc={rc}'}; "
        f"{path} was rolled back to its previous content",
        rolled_back=True,
    )


def desired(module, state, have):
    want = module.params["config"]
    if state in ("merged", "replaced", "overridden") and not want:
        module.fail_json(msg=f"config is required with state={state}")
    try:
        if state == "merged":
            return network_resource.merged(RULES, have, want)
        if state == "replaced":
            return network_resource.replaced(RULES, have, want)
        if state == "overridden":
            return network_resource.overridden(RULES, want)
        return network_resource.deleted(RULES, have, want)
    except BirdBgpConfigError as exc:
        module.fail_json(msg=f"config.{exc}")


def run_gathered(module):
    path = module.params["path"]
    config = parse_text(module, read_file(path), f"path {path!r}")
    rc, out, err = birdc(module, "show", "protocols", "all")
    if rc != 0 or "Unable to connect" in out + err:
        module.fail_json(
            msg="socket {!r}: birdc show protocols all failed: {}".format(
                module.params["socket"], (out + err).strip()
            )
        )
    sessions = [s.to_dict() for s in parse_show_protocols_all(out)]
    module.exit_json(changed=False, gathered=masked(config), sessions=sessions)


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(),
        required_if=[("state", "rendered", ["config"]), *REQUIRED_IF],
        supports_check_mode=True,
    )
    state = module.params["state"]
    if state == "rendered":
        try:
            text = render(config_from_dict(module.params["config"]))
        except BirdBgpConfigError as exc:
            module.fail_json(msg=f"config.{exc}")
        module.exit_json(changed=False, rendered=text)
    if state == "parsed":
        config = parse_text(module, module.params["running_config"], "running_config")
        module.exit_json(changed=False, parsed=masked(config))
    if state == "gathered":
        run_gathered(module)

    path = module.params["path"]
    old_text = read_file(path)
    have = parse_text(module, old_text, f"path {path!r}")
    want = desired(module, state, have)
    new_text = EMPTY if want is None else render(want)
    result = dict(changed=False, before=masked(have), after=masked(want))
    if old_text == new_text or (old_text is None and want is None):
        module.exit_json(**result)
    result["changed"] = True
    if module._diff:
        result["diff"] = dict(
            before=redact(old_text or ""),
            after=redact(new_text),
            before_header=path,
            after_header=path,
        )
    if module.check_mode:
        module.exit_json(**result)
    validate_with_bird(module, new_text)
    result["birdc"] = configure(module, path, old_text, new_text)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
