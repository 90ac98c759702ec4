# Copyright: porter-lb contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
# SPDX-License-Identifier: Apache-2.0
"""The cluster modules' shell: kubernetes.core's client, server-side apply, and the two module
bodies (``present``/``absent`` and ``*_info``) every cluster module runs.

Authentication is kubernetes.core's: its argument spec, its doc fragment
(``kubernetes.core.k8s_auth_options``) and ``get_api_client``, so the ``K8S_AUTH_*``
environment variables (AWX's Kubernetes credential) work as they do for kubernetes.core.k8s.

What is decided (names, ``spec``, ``changed``, hidden fields, readiness, messages) is in the
pure ``cluster_resource``; this file only talks to the API server.
"""

from __future__ import annotations

import time

from ansible_collections.kubernetes.core.plugins.module_utils.args_common import AUTH_ARG_SPEC
from ansible_collections.kubernetes.core.plugins.module_utils.k8s.client import get_api_client
from ansible_collections.kubernetes.core.plugins.module_utils.k8s.core import AnsibleK8SModule
from ansible_collections.kubernetes.core.plugins.module_utils.k8s.exceptions import (
    CoreException,
)
from ansible_collections.porter.lb.plugins.module_utils.cluster_resource import (
    API_VERSION,
    READINESS,
    diff_views,
    hide_secrets,
    managed_view,
    refusal_message,
    timeout_message,
)

try:
    from kubernetes.dynamic import exceptions as api_errors
except ImportError:
    # AnsibleK8SModule fails with "kubernetes is required" before api_errors is used.
    api_errors = None

FIELD_MANAGER = "porter.lb"
"""The server-side apply field manager of every cluster module."""

WAIT_INTERVAL = 1.0
"""Seconds between two reads of an object that `wait` is waiting for."""


def resource_argument_spec(kind, waits):
    """The argument spec of a present/absent module for `kind` (kubernetes.core's auth too)."""
    spec = dict(
        name=dict(type="str", required=True),
        state=dict(type="str", default="present", choices=["present", "absent"]),
        labels=dict(type="dict"),
        force_conflicts=dict(type="bool", default=False),
    )
    if waits:
        spec.update(
            wait=dict(type="bool", default=False), wait_timeout=dict(type="int", default=120)
        )
    spec.update(kind.options)
    spec.update(AUTH_ARG_SPEC)
    return spec


def info_argument_spec():
    """The argument spec of an ``*_info`` module (kubernetes.core's auth too)."""
    spec = dict(
        name=dict(type="str"),
        label_selectors=dict(type="list", elements="str", default=[]),
    )
    spec.update(AUTH_ARG_SPEC)
    return spec


class Refused(Exception):
    """The API server refused a request; the message is for the user."""


class Cluster:
    """One kind of porter-lb object on the API server, through kubernetes.core's client."""

    def __init__(self, module, kind):
        self.module = module
        self.kind = kind
        try:
            self.client = get_api_client(module=module).client
            self.resource = self.client.resources.get(api_version=API_VERSION, kind=kind.kind)
        except CoreException as error:
            module.fail_json(msg="cannot reach the API server: %s" % error)
        except api_errors.ResourceNotFoundError:
            module.fail_json(
                msg="the API server does not serve %s %s: are porter-lb's CRDs installed?"
                % (API_VERSION, kind.kind)
            )
        except api_errors.DynamicApiError as error:
            module.fail_json(msg="cannot reach the API server: %s" % _reason(error))
        except Exception as error:  # noqa: BLE001 - connection errors of urllib3, TLS, DNS
            module.fail_json(msg="cannot reach the API server: %s" % error)

    def get(self, name):
        """The object, or None when there is none."""
        try:
            return self.client.get(self.resource, name=name).to_dict()
        except api_errors.NotFoundError:
            return None
        except api_errors.DynamicApiError as error:
            raise Refused(refusal_message(self.kind.kind, name, _reason(error), "get")) from error

    def list(self, name, label_selectors):
        """The objects matching the label selectors (all of them), only `name` if given."""
        params = dict(label_selector=",".join(label_selectors))
        if name:
            params["field_selector"] = "metadata.name=" + name
        try:
            listed = self.client.get(self.resource, **params)
        except api_errors.DynamicApiError as error:
            raise Refused(refusal_message(self.kind.kind, "*", _reason(error), "list")) from error
        items = listed.to_dict().get("items") or []
        # A list's items carry no apiVersion and kind of their own; give them, as a get does.
        return [dict(item, apiVersion=API_VERSION, kind=self.kind.kind) for item in items]

    def apply(self, manifest, dry_run, force):
        """Server-side apply `manifest` as FIELD_MANAGER; with `dry_run` nothing is stored but
        the API server validates, defaults and merges all the same (dryRun=All)."""
        name = manifest["metadata"]["name"]
        params = dict(field_manager=FIELD_MANAGER, force_conflicts=force)
        if dry_run:
            params["dry_run"] = "All"
        try:
            return self.client.server_side_apply(
                self.resource, body=manifest, name=name, **params
            ).to_dict()
        except api_errors.DynamicApiError as error:
            raise Refused(refusal_message(self.kind.kind, name, _reason(error), "apply")) from error

    def delete(self, name, dry_run):
        params = {"dry_run": "All"} if dry_run else {}
        try:
            self.client.delete(self.resource, name=name, **params)
        except api_errors.NotFoundError:
            pass
        except api_errors.DynamicApiError as error:
            raise Refused(
                refusal_message(self.kind.kind, name, _reason(error), "delete")
            ) from error

    def wait_ready(self, name, timeout):
        """The object once READINESS says it is ready; Refused with the last status seen when
        `timeout` seconds pass first."""
        readiness, awaited = READINESS[self.kind.kind]
        deadline = time.monotonic() + timeout
        while True:
            obj = self.get(name)
            if obj is None:
                ready, seen = False, "the object is gone"
            else:
                ready, seen = readiness(obj)
            if ready:
                return obj
            if time.monotonic() >= deadline:
                raise Refused(timeout_message(self.kind.kind, name, timeout, awaited, seen))
            time.sleep(WAIT_INTERVAL)

    def wait_absent(self, name, timeout):
        deadline = time.monotonic() + timeout
        while self.get(name) is not None:
            if time.monotonic() >= deadline:
                raise Refused(
                    timeout_message(
                        self.kind.kind, name, timeout, "to be deleted", "it still exists"
                    )
                )
            time.sleep(WAIT_INTERVAL)


def _reason(error):
    return getattr(error, "body", None) or str(error)


def new_module(argument_spec, required_if=None):
    return AnsibleK8SModule(
        argument_spec=argument_spec, required_if=required_if or [], supports_check_mode=True
    )


def run_resource_module(kind, waits):
    """The whole of a present/absent cluster module for `kind`."""
    required = list(kind.required_for_present)
    module = new_module(
        resource_argument_spec(kind, waits),
        required_if=[("state", "present", required)] if required else None,
    )
    params = module.params
    cluster = Cluster(module, kind)
    name = params["name"]
    try:
        if params["state"] == "present":
            result = _present(module, cluster, kind, name, waits)
        else:
            result = _absent(module, cluster, kind, name, waits)
    except Refused as error:
        module.fail_json(msg=str(error))
    module.exit_json(**result)


def _present(module, cluster, kind, name, waits):
    manifest = kind.manifest(name, module.params)
    force = module.params["force_conflicts"]
    before = cluster.get(name)
    # The API server computes the result of the apply (defaults, merging with other field
    # managers' fields, CEL validation) without storing it: changed iff it differs from now.
    after = cluster.apply(manifest, dry_run=True, force=force)
    changed = before is None or managed_view(before) != managed_view(after)
    if changed and not module.check_mode:
        after = cluster.apply(manifest, dry_run=False, force=force)
    if waits and module.params["wait"] and not module.check_mode:
        after = cluster.wait_ready(name, module.params["wait_timeout"])
    result = dict(changed=changed, result=hide_secrets(after, kind))
    if module._diff:
        result["diff"] = diff_views(before, after, kind)
    return result


def _absent(module, cluster, kind, name, waits):
    before = cluster.get(name)
    result = dict(changed=False, result={})
    if before is None:
        return result
    if not (before.get("metadata") or {}).get("deletionTimestamp"):
        cluster.delete(name, dry_run=module.check_mode)
        result["changed"] = True
    if waits and module.params["wait"] and not module.check_mode:
        cluster.wait_absent(name, module.params["wait_timeout"])
    if module._diff:
        result["diff"] = diff_views(before, None, kind)
    return result


def run_info_module(kind):
    """The whole of an ``*_info`` module for `kind`: one object by name, or all (matching the
    label selectors)."""
    module = new_module(info_argument_spec())
    cluster = Cluster(module, kind)
    name, selectors = module.params["name"], module.params["label_selectors"]
    try:
        found = cluster.list(name, selectors)
    except Refused as error:
        module.fail_json(msg=str(error))
    module.exit_json(changed=False, resources=[hide_secrets(o, kind) for o in found])
