# Copyright: porter-lb contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
# SPDX-License-Identifier: Apache-2.0

from __future__ import annotations


class ModuleDocFragment:
    """Options and attributes shared by the router modules (bird_bgp, frr_bgp, comware_bgp).

    They follow Ansible's network resource-module pattern: O(state) says what is done with
    O(config); each module's description says what belongs to the resource it owns.
    """

    DOCUMENTATION = r"""
options:
  state:
    description:
      - V(merged) merges O(config) into the configuration the module owns; what O(config) does not
        mention is kept.
      - V(replaced) replaces, as a whole, each part O(config) gives (the global settings, and each
        neighbour it lists) and keeps the neighbours it does not list.
      - V(overridden) makes the owned configuration exactly O(config).
      - V(deleted) removes the neighbours O(config) lists or, without O(config), the whole owned
        configuration.
      - V(gathered) returns the configuration running on the router and the live BGP sessions.
      - V(rendered) returns the configuration text for O(config), without a router.
      - V(parsed) reads O(running_config) into the structured form, without a router.
    type: str
    choices: [merged, replaced, overridden, deleted, gathered, rendered, parsed]
    default: merged
  running_config:
    description:
      - The configuration text to read with O(state=parsed).
    type: str
attributes:
  check_mode:
    support: full
    description: >-
      Can run in check_mode and return changed status prediction without modifying target.
  diff_mode:
    support: full
    description: >-
      Will return details on what has changed (or possibly needs changing in check_mode),
      when in diff mode.
"""
