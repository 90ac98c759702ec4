# Copyright: porter-lb contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
# SPDX-License-Identifier: Apache-2.0
"""Filters rendering porter-lb's Kubernetes manifests (the roles controller and agent)."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.porter.lb.plugins.plugin_utils import install_manifests as description
from ansible_collections.porter.lb.plugins.plugin_utils import webhook_certificate


def install_manifests(values, component, certificate=None):
    """The objects installing `component` for chart-shaped `values`, in apply order."""
    if not isinstance(values, dict):
        raise AnsibleFilterError(f"install_manifests: values must be a mapping, got {values!r}")
    try:
        return description.manifests(
            description.merged_values(values), component, dict(certificate or {}) or None
        )
    except (KeyError, ValueError) as error:
        raise AnsibleFilterError(f"install_manifests: {error}") from error


def webhook_certificate_data(
    stored,
    namespace,
    days=3650,
    renew_days=30,
    *,
    rotate=False,
    overlap_minutes=webhook_certificate.OVERLAP_MINUTES,
):
    """The webhook Secret's data: `stored` while still good (and no rotation is asked), else a
    new CA and certificate whose ca.crt also trusts the old CA for a while."""
    names = description.webhook_dns_names(namespace)
    try:
        return webhook_certificate.certificate(
            dict(stored or {}),
            names,
            int(days),
            int(renew_days),
            rotate=bool(rotate),
            overlap_minutes=int(overlap_minutes),
        )
    except RuntimeError as error:
        raise AnsibleFilterError(f"webhook_certificate: {error}") from error


class FilterModule:
    def filters(self):
        return {
            "install_manifests": install_manifests,
            "webhook_certificate": webhook_certificate_data,
        }
