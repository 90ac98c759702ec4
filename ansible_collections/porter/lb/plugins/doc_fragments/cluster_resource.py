# Copyright: porter-lb contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
# SPDX-License-Identifier: Apache-2.0

from __future__ import annotations


class ModuleDocFragment:
    """Options and attributes shared by the cluster modules (eip, bgp_conf, bgp_peer and their
    ``*_info``), which manage porter-lb's custom resources through the Kubernetes API.

    The options match ``module_utils.cluster_api``'s argument specs.
    """

    DOCUMENTATION = r"""
options:
  name:
    description:
      - The object's name (C(metadata.name)). The objects are cluster-scoped.
    type: str
    required: true
  state:
    description:
      - V(present) creates the object or updates it to what the options say, by server-side apply
        with the field manager C(porter.lb). Fields the options leave out (V(null)) are not
        managed by the module; fields it set before and no longer sets are removed.
      - V(absent) deletes the object if it exists.
    type: str
    choices: [present, absent]
    default: present
  labels:
    description:
      - Labels of the object (C(metadata.labels)), for example to select it with an C(*_info)
        module. Labels set by others are kept.
    type: dict
  force_conflicts:
    description:
      - Take over fields another field manager (C(kubectl), another tool) owns instead of failing
        with a conflict.
    type: bool
    default: false
requirements:
  - kubernetes >= 24.2.0 (the Python client)
  - PyYAML >= 3.11
attributes:
  check_mode:
    support: full
    description: >-
      Can run in check_mode and return changed status prediction without modifying target. The
      API server validates the object (a server-side dry run, C(dryRun=All)) and nothing is
      stored.
  diff_mode:
    support: full
    description: >-
      Will return details on what has changed (or possibly needs changing in check_mode), when in
      diff mode. The diff shows the name, labels and spec; passwords are hidden.
notes:
  - C(changed) is decided by comparing the object as it is with the result of the apply (computed
    by the API server in a dry run), so a second run with the same options reports no change.
  - Authentication is kubernetes.core's (the K8S_AUTH_* environment variables work, as with AWX's
    Kubernetes credential).
"""

    WAIT = r"""
options:
  wait:
    description:
      - With O(state=present), wait until the porter-lb runtime reports the object ready (see the
        module's description for what ready means); with O(state=absent), until it is gone.
      - Not done in check mode.
    type: bool
    default: false
  wait_timeout:
    description:
      - How many seconds to wait with O(wait=true) before failing. The failure message names what
        was awaited and the last status seen.
    type: int
    default: 120
"""

    INFO = r"""
options:
  name:
    description:
      - Return only the object of this name.
    type: str
  label_selectors:
    description:
      - Return only the objects with these labels, each selector as in C(kubectl -l)
        (V(app=web), V(tier!=db), V(env in (a,b))); all must match.
    type: list
    elements: str
    default: []
requirements:
  - kubernetes >= 24.2.0 (the Python client)
  - PyYAML >= 3.11
attributes:
  check_mode:
    support: full
    description: >-
      Can run in check_mode and return changed status prediction without modifying target.
  diff_mode:
    support: N/A
    description: >-
      Will return details on what has changed (or possibly needs changing in check_mode),
      when in diff mode.
notes:
  - Authentication is kubernetes.core's (the K8S_AUTH_* environment variables work, as with AWX's
    Kubernetes credential).
"""

    # The graceful_restart option of bgp_conf and bgp_peer (module_utils.cluster_resource
    # GRACEFUL_RESTART_OPTIONS): the same GoBGP settings on both objects.
    GRACEFUL_RESTART = r"""
options:
  graceful_restart:
    description:
      - BGP graceful restart (C(spec.gracefulRestart)), GoBGP's settings, for every session
        (BgpConf) or for this one (BgpPeer).
    type: dict
    suboptions:
      enabled:
        description: Enable graceful restart (C(enabled)).
        type: bool
      restart_time:
        description: Restart time in seconds (C(restartTime)).
        type: int
      helper_only:
        description: Only help the peers restart (C(helperOnly)).
        type: bool
      deferral_time:
        description: Deferral time in seconds (C(deferralTime)).
        type: int
      notification_enabled:
        description: Graceful restart also on NOTIFICATION (C(notificationEnabled), RFC 8538).
        type: bool
      longlived_enabled:
        description: Long-lived graceful restart (C(longlivedEnabled)).
        type: bool
      stale_routes_time:
        description: Stale routes time in seconds (C(staleRoutesTime)).
        type: int
      peer_restart_time:
        description: The peer's restart time in seconds (C(peerRestartTime)).
        type: int
      peer_restarting:
        description: C(peerRestarting), as GoBGP.
        type: bool
      local_restarting:
        description: C(localRestarting), as GoBGP.
        type: bool
      mode:
        description: C(mode), as GoBGP.
        type: str
"""
