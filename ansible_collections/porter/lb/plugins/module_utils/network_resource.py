# Copyright: porter-lb contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
# SPDX-License-Identifier: Apache-2.0
"""What the router modules (bird_bgp, frr_bgp, comware_bgp) share as resource modules.

The options match the doc fragment porter.lb.network_resource.
"""

from __future__ import annotations

STATES = ("merged", "replaced", "overridden", "deleted", "gathered", "rendered", "parsed")
"""The network resource-module states, in the order the docs list them."""

CHANGING_STATES = ("merged", "replaced", "overridden", "deleted")
"""The states that change the router (the others only read, or need no router at all)."""


def state_argument_spec():
    """The `state` and `running_config` options, for a module's argument_spec."""
    return dict(
        state=dict(type="str", default="merged", choices=list(STATES)),
        running_config=dict(type="str"),
    )


REQUIRED_IF = [("state", "parsed", ["running_config"])]
"""`parsed` reads `running_config`; each module adds what else it requires."""
