#!/usr/bin/python
# Copyright: porter-lb contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
# SPDX-License-Identifier: Apache-2.0

from __future__ import annotations

DOCUMENTATION = r"""
---
module: eip_address_info
short_description: Parse and validate a porter-lb Eip address pool
version_added: 0.1.0
description:
  - Parses the value of an Eip C(spec.address) the way Porter and OpenELB do
    and returns the resulting address pool (first and last address, IP
    version and number of addresses).
  - Accepted forms are a single address (C(192.0.2.10), C(2001:db8::1)), a
    CIDR network with no host bits set (C(192.0.2.0/24), C(2001:db8::/120))
    and an inclusive range C(first-last) of one IP family
    (C(192.0.2.10-192.0.2.20)).
  - Fails, naming the O(address) option and the rule that was broken, when the
    value is not a valid pool.
  - This module only computes; it never contacts a cluster and never changes
    anything.
author:
  - porter-lb maintainers (@porter-lb)
options:
  address:
    description:
      - The Eip address expression to parse.
      - Surrounding whitespace is ignored.
    type: str
    required: true
attributes:
  check_mode:
    support: full
    description: Can run in check_mode and return changed status prediction without modifying target.
  diff_mode:
    support: none
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
notes:
  - The same parser is used by the porter-lb runtime, so a value accepted here
    is accepted by the controller.
"""

EXAMPLES = r"""
- name: Validate an Eip range before creating it
  porter.lb.eip_address_info:
    address: 192.0.2.10-192.0.2.20
  register: eip_pool

- name: Show how many addresses the pool holds
  ansible.builtin.debug:
    msg: "{{ eip_pool.pool.size }} addresses, IPv{{ eip_pool.pool.version }}"

- name: Parse an IPv6 CIDR
  porter.lb.eip_address_info:
    address: 2001:db8::/120
"""

RETURN = r"""
pool:
  description: The address pool described by O(address).
  returned: success
  type: dict
  contains:
    first:
      description: The first (lowest) address of the pool.
      type: str
      returned: success
      sample: 192.0.2.10
    last:
      description: The last (highest) address of the pool, inclusive.
      type: str
      returned: success
      sample: 192.0.2.20
    version:
      description: The IP version of the pool.
      type: int
      returned: success
      sample: 4
    size:
      description: The number of addresses in the pool.
      type: int
      returned: success
      sample: 11
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.porter.lb.plugins.module_utils.addresses import (
    AddressPoolError,
    parse_address_pool,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            address=dict(type="str", required=True),
        ),
        supports_check_mode=True,
    )

    try:
        pool = parse_address_pool(module.params["address"], field="address")
    except AddressPoolError as exc:
        module.fail_json(msg=str(exc))

    module.exit_json(changed=False, pool=pool.to_dict())


if __name__ == "__main__":
    main()
