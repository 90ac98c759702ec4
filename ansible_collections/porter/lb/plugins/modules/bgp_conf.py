#!/usr/bin/python
# Copyright: porter-lb contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
# SPDX-License-Identifier: Apache-2.0

from __future__ import annotations

DOCUMENTATION = r"""
---
module: bgp_conf
short_description: Manage porter-lb's BgpConf (the speakers' global BGP settings)
version_added: 0.1.0
description:
  - Creates, updates or deletes a BgpConf (C(network.kubesphere.io/v1alpha2), compatible with
    Porter and OpenELB) - the local AS, router ID and listening of porter-lb's BGP speakers.
  - porter-lb uses the BgpConf named V(default) (Porter's name), otherwise the first by name.
  - The options mirror the BgpConf's C(spec) in snake_case.
  - The API server checks the BgpConf (the CRD's schema and CEL rules), also in check mode; a
    refused BgpConf fails the task with the field, the option and the rule.
author:
  - porter-lb maintainers (@porter-lb)
options:
  as:
    description:
      - The local autonomous system number (C(spec.as)), 2- or 4-byte (1 to 4294967295).
    type: int
  as_per_rack:
    description:
      - An AS number per rack (C(spec.asPerRack)), keyed by the value of the node's rack label.
    type: dict
  router_id:
    description:
      - The BGP router ID (C(spec.routerId)), an IPv4 address (also on IPv6-only nodes); empty means
        each node uses its own address.
    type: str
  listen_port:
    description:
      - The TCP port the speakers listen on (C(spec.listenPort)); V(-1) disables listening.
    type: int
  listen_addresses:
    description:
      - The addresses the speakers listen on (C(spec.listenAddresses)).
    type: list
    elements: str
  families:
    description:
      - Address families (C(spec.families)), GoBGP's numbers.
    type: list
    elements: int
  use_multiple_paths:
    description:
      - Use multiple paths (C(spec.useMultiplePaths)).
    type: bool
extends_documentation_fragment:
  - kubernetes.core.k8s_auth_options
  - porter.lb.cluster_resource
  - porter.lb.cluster_resource.graceful_restart
seealso:
  - module: porter.lb.bgp_peer
"""

EXAMPLES = r"""
- name: The speakers' BGP settings, AS 65001, listening on port 179
  porter.lb.bgp_conf:
    name: default
    as: 65001
    listen_port: 179

- name: A router ID and graceful restart
  porter.lb.bgp_conf:
    name: default
    as: 65001
    router_id: 198.51.100.11
    listen_port: 179
    graceful_restart:
      enabled: true
      restart_time: 120
"""

RETURN = r"""
result:
  description:
    - The BgpConf as the API server holds it after the task (in check mode, as it would). Empty
      with O(state=absent).
    - C(metadata.managedFields) is left out.
  returned: success
  type: dict
  sample:
    apiVersion: network.kubesphere.io/v1alpha2
    kind: BgpConf
    metadata:
      name: default
    spec:
      as: 65001
      listenPort: 179
"""

from ansible_collections.porter.lb.plugins.module_utils.cluster_api import run_resource_module
from ansible_collections.porter.lb.plugins.module_utils.cluster_resource import BGP_CONF


def main():
    run_resource_module(BGP_CONF, waits=False)


if __name__ == "__main__":
    main()
