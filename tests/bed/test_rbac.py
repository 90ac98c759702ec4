"""RBAC least privilege, proven by the real API server's authorizer.

The controller's and the agent's RBAC objects, rendered by the description the roles and the
chart share (plugin_utils/install_manifests.py), are applied to the bed's kube-apiserver. Then,
for every resource the server serves (subresources included) and every verb, a
SubjectAccessReview asks whether each ServiceAccount may do it — cluster-wide, in porter-lb's
namespace and in another namespace. What is allowed beyond what any authenticated user may do
must be exactly what the objects grant: nothing from elsewhere (no aggregated or default role
adds to it), and the namespaced grants (Leases, Secrets) do not reach other namespaces.
tests/collection/test_install_artifacts.py pins the grants themselves to the calls the runtime
makes.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from kubernetes import client

from ansible_collections.porter.lb.plugins.plugin_utils import install_manifests as description
from porter_lab import objects
from porter_lb.kube.api import KubeAPI, KubeError

RBAC_KINDS = ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")
PATHS = {
    "ServiceAccount": "/api/v1/namespaces/{namespace}/serviceaccounts",
    "ClusterRole": "/apis/rbac.authorization.k8s.io/v1/clusterroles",
    "ClusterRoleBinding": "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
    "Role": "/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/roles",
    "RoleBinding": "/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/rolebindings",
}
VERBS = ("get", "list", "watch", "create", "update", "patch", "delete", "deletecollection")
OTHER_NAMESPACE = "plb-rbac-elsewhere"
BASELINE = "plb-rbac-baseline"  # a ServiceAccount bound to nothing: what anyone may do

# (scope, group, resource, verb, name): scope "" is cluster-wide; name "" is any object
Access = tuple[str, str, str, str, str]
NAMED_VERBS = ("get", "update", "patch", "delete")  # the verbs that act on one named object


def rbac_objects(speaker: str) -> list[dict[str, Any]]:
    values = description.merged_values({"controller": {"speaker": speaker}})
    rendered = description.manifests(values, "controller")
    if speaker == "none":  # the agents run only beside a controller without a speaker
        rendered += description.manifests(values, "agent")
    return [o for o in rendered if o["kind"] in RBAC_KINDS]


def collection(obj: dict[str, Any]) -> str:
    return PATHS[obj["kind"]].format(namespace=obj["metadata"].get("namespace", ""))


def put(api: KubeAPI, obj: dict[str, Any]) -> None:
    """Create `obj`, or replace what a previous parameter left under its name."""
    path = collection(obj)
    try:
        api.create(path, obj)
    except KubeError as error:
        if error.status != 409:
            raise
        live = api.get(f"{path}/{obj['metadata']['name']}")
        api.replace(
            f"{path}/{obj['metadata']['name']}",
            {
                **obj,
                "metadata": {
                    **obj["metadata"],
                    **{"resourceVersion": live["metadata"]["resourceVersion"]},
                },
            },
        )


def served(api: KubeAPI) -> list[tuple[str, str, bool]]:
    """(group, resource, namespaced) for every resource and subresource the server serves."""
    lists = [("", api.get("/api/v1"))]
    for group in api.get("/apis")["groups"]:
        version = group["preferredVersion"]["groupVersion"]
        lists.append((group["name"], api.get(f"/apis/{version}")))
    return [
        (name, resource["name"], resource["namespaced"])
        for name, listing in lists
        for resource in listing["resources"]
    ]


def allowed(api: KubeAPI, user: str, namespace: str, wanted: list[Access]) -> set[Access]:
    """The accesses of `wanted` the API server's authorizer grants the ServiceAccount `user`."""

    def review(access: Access) -> bool:
        scope, group, resource, verb, name = access
        main, _, sub = resource.partition("/")
        attributes = {"verb": verb, "group": group, "resource": main, "subresource": sub}
        if name:
            attributes["name"] = name
        if scope:
            attributes["namespace"] = scope
        answer = api.create(
            "/apis/authorization.k8s.io/v1/subjectaccessreviews",
            {
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SubjectAccessReview",
                "spec": {
                    "user": f"system:serviceaccount:{namespace}:{user}",
                    "groups": [
                        "system:serviceaccounts",
                        f"system:serviceaccounts:{namespace}",
                        "system:authenticated",
                    ],
                    "resourceAttributes": attributes,
                },
            },
        )
        return bool(answer["status"].get("allowed"))

    with ThreadPoolExecutor(16) as pool:
        verdicts = list(pool.map(review, wanted))
    return {access for access, ok in zip(wanted, verdicts, strict=True) if ok}


def granted(rbac: list[dict[str, Any]], account: str, namespace: str) -> set[Access]:
    """What the objects grant `account`, expanded to (scope, group, resource, verb)."""
    out: set[Access] = set()
    for binding in rbac:
        if binding["kind"] not in ("ClusterRoleBinding", "RoleBinding"):
            continue
        if {"kind": "ServiceAccount", "name": account, "namespace": namespace} not in binding[
            "subjects"
        ]:
            continue
        role_kind, role_name = binding["roleRef"]["kind"], binding["roleRef"]["name"]
        (role,) = [o for o in rbac if o["kind"] == role_kind and o["metadata"]["name"] == role_name]
        scopes = ("",) if binding["kind"] == "ClusterRoleBinding" else (namespace,)
        for rule in role["rules"]:
            out |= {
                (scope, group, resource, verb, name)
                for scope in scopes
                for group in rule["apiGroups"]
                for resource in rule["resources"]
                for verb in rule["verbs"]
                for name in rule.get("resourceNames") or [""]
            }
    return out


def accounts(rbac: list[dict[str, Any]]) -> list[str]:
    return sorted(o["metadata"]["name"] for o in rbac if o["kind"] == "ServiceAccount")


def effective(access: Access, namespace: str) -> set[Access]:
    """A cluster-wide grant also holds in every namespace."""
    scope, group, resource, verb, name = access
    return {access} | (
        {(namespace, group, resource, verb, name), (OTHER_NAMESPACE, group, resource, verb, name)}
        if not scope
        else set()
    )


@pytest.fixture(params=["none", "central"])
def applied(
    request: pytest.FixtureRequest, api_client: client.ApiClient
) -> Iterator[tuple[KubeAPI, list[dict[str, Any]]]]:
    api = KubeAPI(api_client)
    rbac = rbac_objects(request.param)
    namespace = rbac[0]["metadata"]["namespace"]
    for name in (namespace, OTHER_NAMESPACE):
        objects.ensure_namespace(api, name)
    baseline = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": BASELINE, "namespace": namespace},
    }
    for obj in [baseline, *rbac]:
        put(api, obj)
    try:
        yield api, rbac
    finally:
        for obj in reversed([baseline, *rbac]):
            objects.delete_if_present(api, f"{collection(obj)}/{obj['metadata']['name']}")


def test_service_accounts_may_do_exactly_what_their_roles_grant(
    applied: tuple[KubeAPI, list[dict[str, Any]]], crds: list[str]
) -> None:
    api, rbac = applied
    namespace = rbac[0]["metadata"]["namespace"]
    resources = served(api)
    assert ("network.kubesphere.io", "eips/status", False) in resources
    wanted: list[Access] = [
        (scope, group, resource, verb, "")
        for group, resource, namespaced in resources
        for scope in ((namespace, OTHER_NAMESPACE) if namespaced else ("",))
        for verb in VERBS
    ]
    # Cluster-wide list/watch of namespaced resources (what informers do without a namespace).
    wanted += [
        ("", g, r, v, "") for g, r, namespaced in resources if namespaced for v in ("list", "watch")
    ]
    # Rules that name objects (the leader-election Lease): every named verb on those names.
    named = {
        (scope, group, resource, name)
        for account in accounts(rbac)
        for scope, group, resource, _, name in granted(rbac, account, namespace)
        if name
    }
    wanted += [(s, g, r, v, n) for s, g, r, n in sorted(named) for v in NAMED_VERBS]
    anyone = allowed(api, BASELINE, namespace, wanted)
    assert accounts(rbac), "no ServiceAccount rendered"
    for account in accounts(rbac):
        expected: set[Access] = set()
        for access in granted(rbac, account, namespace):
            expected |= effective(access, namespace)
        # A grant without names holds for every name.
        expected |= {w for w in wanted if w[4] and (*w[:4], "") in expected}
        expected &= set(wanted)
        got = allowed(api, account, namespace, wanted) - anyone
        assert got == expected - anyone, (
            f"{account}: allowed but not granted {sorted(got - expected)}; "
            f"granted but denied {sorted(expected - anyone - got)}"
        )
        # The properties an operator asks about, spelled out.
        secrets = {a for a in got if a[2] == "secrets"}
        assert all(a[0] == namespace for a in secrets), f"{account}: {sorted(secrets)}"
        assert not [a for a in got if a[3] in ("delete", "deletecollection")], account
        assert not [a for a in got if a[2] in ("pods", "deployments", "daemonsets")], account
        assert not [a for a in got if a[1] == "rbac.authorization.k8s.io"], account
