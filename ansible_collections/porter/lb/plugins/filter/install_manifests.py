# Copyright: porter-lb contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
# SPDX-License-Identifier: Apache-2.0
"""Filters rendering porter-lb's Kubernetes manifests (the roles controller and agent)."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.porter.lb.plugins.plugin_utils import install_manifests as description


def install_manifests(values, component):
    """The objects of `component` for chart-shaped `values`, in apply order."""
    if not isinstance(values, dict):
        raise AnsibleFilterError(f"install_manifests: values must be a mapping, got {values!r}")
    try:
        return description.manifests(description.merged_values(values), component)
    except (KeyError, ValueError) as error:
        raise AnsibleFilterError(f"install_manifests: {error}") from error


class FilterModule:
    def filters(self):
        return {"install_manifests": install_manifests}
