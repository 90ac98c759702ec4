# Copyright: porter-lb contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
# SPDX-License-Identifier: Apache-2.0
"""Table-driven tests for plugins/module_utils/cluster_resource.py: names, options against the
CRDs, spec conversion, hidden secrets, readiness and refusal messages."""

from __future__ import annotations

import json
import os

import pytest
import yaml

from ansible_collections.porter.lb.plugins.module_utils.cluster_resource import (
    BGP_CONF,
    BGP_PEER,
    EIP,
    HIDDEN,
    LAST_APPLIED,
    bgp_peer_readiness,
    camel_to_snake,
    diff_views,
    eip_readiness,
    hide_secrets,
    managed_view,
    option_for_field,
    option_paths,
    options_from_spec,
    refusal_message,
    snake_to_camel,
    spec_from_options,
    timeout_message,
)

CRD_DIR = os.path.join(
    os.path.dirname(__file__), *([os.pardir] * 4), "roles", "controller", "files", "crds"
)

NAMES = [
    # option name, API field name
    ("address", "address"),
    ("as", "as"),
    ("router_id", "routerId"),
    ("as_per_rack", "asPerRack"),
    ("using_known_ips", "usingKnownIPs"),
    ("namespace_selector", "namespaceSelector"),
    ("neighbor_address", "neighborAddress"),
    ("auth_password_secret_ref", "authPasswordSecretRef"),
    ("minimum_advertisement_interval", "minimumAdvertisementInterval"),
    ("afi_safis", "afiSafis"),
    ("send_max", "sendMax"),
    ("tcp_mss", "tcpMss"),
    ("multihop_ttl", "multihopTtl"),
    ("v4", "v4"),
]


@pytest.mark.parametrize(("snake", "camel"), NAMES)
def test_names_convert_both_ways(snake, camel):
    assert snake_to_camel(snake) == camel
    assert camel_to_snake(camel) == snake


def _crd_spec_paths(schema, prefix=""):
    """Dotted camelCase paths of every field a CRD schema declares (lists by their items)."""
    paths = []
    for field, sub in (schema.get("properties") or {}).items():
        path = prefix + field
        paths.append(path)
        nested = sub.get("items") or {} if sub.get("type") == "array" else sub
        paths.extend(_crd_spec_paths(nested, path + "."))
    return paths


def _crd_spec(plural):
    with open(os.path.join(CRD_DIR, "network.kubesphere.io_" + plural + ".yaml")) as crd:
        document = yaml.safe_load(crd)
    (version,) = document["spec"]["versions"]
    return version["schema"]["openAPIV3Schema"]["properties"]["spec"]


@pytest.mark.parametrize("kind", [EIP, BGP_CONF, BGP_PEER], ids=lambda k: k.kind)
def test_options_mirror_every_spec_field_of_the_crd(kind):
    from_crd = sorted(_crd_spec_paths(_crd_spec(kind.plural)))
    from_options = sorted(
        ".".join(snake_to_camel(part) for part in path.split("."))
        for path in option_paths(kind.options)
    )
    assert from_options == from_crd


@pytest.mark.parametrize("kind", [EIP, BGP_CONF, BGP_PEER], ids=lambda k: k.kind)
def test_every_option_name_survives_the_round_trip(kind):
    for path in option_paths(kind.options):
        for part in path.split("."):
            assert camel_to_snake(snake_to_camel(part)) == part


PEER_PARAMS = {
    "conf": {
        "neighbor_address": "198.51.100.1",
        "peer_as": 65000,
        "auth_password": None,
        "auth_password_secret_ref": {"name": "tor", "namespace": None, "key": None},
    },
    "afi_safis": [
        {
            "config": {"enabled": True, "family": {"afi": "AFI_IP", "safi": "SAFI_UNICAST"}},
            "add_paths": {"config": {"receive": None, "send_max": 8}},
            "mp_graceful_restart": None,
        }
    ],
    "node_selector": {
        "match_labels": {"rack_id": "r1", "topology.kubernetes.io/zone": "a"},
        "match_expressions": [{"key": "node_role", "operator": "Exists", "values": None}],
    },
    "timers": None,
}
PEER_SPEC = {
    "conf": {
        "neighborAddress": "198.51.100.1",
        "peerAs": 65000,
        "authPasswordSecretRef": {"name": "tor"},
    },
    "afiSafis": [
        {
            "config": {"enabled": True, "family": {"afi": "AFI_IP", "safi": "SAFI_UNICAST"}},
            "addPaths": {"config": {"sendMax": 8}},
        }
    ],
    # free-form maps and values keep their keys: labels are data, not option names
    "nodeSelector": {
        "matchLabels": {"rack_id": "r1", "topology.kubernetes.io/zone": "a"},
        "matchExpressions": [{"key": "node_role", "operator": "Exists"}],
    },
}

SPECS = [
    # kind, params, spec
    (BGP_PEER, PEER_PARAMS, PEER_SPEC),
    (
        EIP,
        {"address": "192.0.2.0/24", "using_known_ips": False, "namespace_selector": {"a_b": "c"}},
        {"address": "192.0.2.0/24", "usingKnownIPs": False, "namespaceSelector": {"a_b": "c"}},
    ),
    (
        BGP_CONF,
        {"as": 65001, "as_per_rack": {"rack_1": 65010}, "graceful_restart": {"enabled": True}},
        {"as": 65001, "asPerRack": {"rack_1": 65010}, "gracefulRestart": {"enabled": True}},
    ),
    (EIP, {"address": None, "disable": None}, {}),
]


@pytest.mark.parametrize(("kind", "params", "spec"), SPECS)
def test_spec_from_options_and_back(kind, params, spec):
    assert spec_from_options(params, kind.options) == spec
    back = options_from_spec(spec, kind.options)
    assert spec_from_options(back, kind.options) == spec


FIELDS = [
    ("spec.address", "address"),
    ("spec.routerId", "router_id"),
    ("spec.usingKnownIPs", "using_known_ips"),
    ("spec.conf.neighborAddress", "conf.neighbor_address"),
    ("spec.afiSafis[0].addPaths.config.sendMax", "afi_safis[0].add_paths.config.send_max"),
    ("spec.nodeSelector.matchExpressions[1].values", "node_selector.match_expressions[1].values"),
    ("metadata.name", "name"),
    ("metadata.labels", "labels"),
    ("status.usage", None),
    ("", None),
]


@pytest.mark.parametrize(("field", "option"), FIELDS)
def test_option_for_field(field, option):
    assert option_for_field(field) == option


def _peer(password=None, **metadata):
    conf = {"neighborAddress": "198.51.100.1", "peerAs": 65000}
    if password is not None:
        conf["authPassword"] = password
    return {
        "apiVersion": "network.kubesphere.io/v1alpha2",
        "kind": "BgpPeer",
        "metadata": {"name": "tor", "resourceVersion": "7", **metadata},
        "spec": {"conf": conf},
    }


def test_hide_secrets_hides_passwords_and_what_may_hold_them():
    peer = _peer(
        "pw",
        managedFields=[{"manager": "porter.lb"}],
        annotations={LAST_APPLIED: '{"spec": {"conf": {"authPassword": "pw"}}}', "a": "b"},
    )
    hidden = hide_secrets(peer, BGP_PEER)
    assert hidden["spec"]["conf"]["authPassword"] == HIDDEN
    assert hidden["metadata"]["annotations"] == {LAST_APPLIED: HIDDEN, "a": "b"}
    assert "managedFields" not in hidden["metadata"]
    assert peer["spec"]["conf"]["authPassword"] == "pw"  # the original is untouched
    assert hide_secrets(_peer(), BGP_PEER) == _peer()
    assert hide_secrets(None, BGP_PEER) is None
    # An Eip has no secret fields.
    eip = {"metadata": {"name": "p"}, "spec": {"address": "192.0.2.1"}}
    assert hide_secrets(eip, EIP) == eip


DIFFS = [
    # before, after, the password the diff shows before and after ("" no object, None no password)
    (None, _peer("pw"), "", HIDDEN),
    (_peer("pw"), _peer("pw"), HIDDEN, HIDDEN),
    (_peer("pw"), _peer("new"), HIDDEN, HIDDEN + " (changed)"),
    (_peer(), _peer("new"), None, HIDDEN),
    (_peer("pw"), None, HIDDEN, ""),
]


def _shown_password(side):
    return "" if side == {} else side["spec"]["conf"].get("authPassword")


@pytest.mark.parametrize(("before", "after", "shown_before", "shown_after"), DIFFS)
def test_diff_views_never_show_a_password(before, after, shown_before, shown_after):
    diff = diff_views(before, after, BGP_PEER)
    text = json.dumps(diff)
    assert "pw" not in text and "new" not in text and "resourceVersion" not in text
    assert _shown_password(diff["before"]) == shown_before
    assert _shown_password(diff["after"]) == shown_after


def test_managed_view_is_what_changed_compares():
    live = _peer("pw", generation=3, labels={"team": "net"})
    live["status"] = {"nodesPeerStatus": {"central": {}}}
    assert managed_view(live) == {
        "metadata": {"name": "tor", "labels": {"team": "net"}},
        "spec": live["spec"],
    }
    assert managed_view(None) == {}
    moved = _peer("pw", generation=4, resourceVersion="9", labels={"team": "net"})
    assert managed_view(moved) == managed_view(live)


def _eip(generation, condition=None):
    eip = {"metadata": {"name": "pool", "generation": generation}, "spec": {}}
    if condition:
        eip["status"] = {"conditions": [{"type": "Other", "status": "False"}, condition]}
    return eip


def _ready(status, reason, observed, message="m"):
    return {
        "type": "Ready",
        "status": status,
        "reason": reason,
        "message": message,
        "observedGeneration": observed,
    }


EIP_READINESS = [
    (_eip(1), (False, "no Ready condition in status yet")),
    (_eip(1, _ready("True", "Ready", 1, "0 of 8")), (True, "Ready=True reason Ready: 0 of 8")),
    (_eip(2, _ready("True", "Exhausted", 2)), (True, "Ready=True reason Exhausted: m")),
    (_eip(2, _ready("True", "Disabled", 3)), (True, "Ready=True reason Disabled: m")),
    (
        _eip(2, _ready("False", "Overlaps", 2, "overlaps pool-a")),
        (False, "Ready=False reason Overlaps: overlaps pool-a"),
    ),
    (
        _eip(3, _ready("True", "Ready", 2)),
        (False, "Ready=True reason Ready: m (for generation 2, the spec is at 3)"),
    ),
]


@pytest.mark.parametrize(("eip", "expected"), EIP_READINESS)
def test_eip_readiness(eip, expected):
    assert eip_readiness(eip) == expected


def _peer_status(**states):
    return {
        "status": {
            "nodesPeerStatus": {
                node: {"peerState": {"sessionState": state}} if state else {}
                for node, state in states.items()
            }
        }
    }


PEER_READINESS = [
    ({}, (False, "no status.nodesPeerStatus yet (no speaker has picked the peer up)")),
    (
        {"status": {"nodesPeerStatus": {}}},
        (False, "no status.nodesPeerStatus yet (no speaker has picked the peer up)"),
    ),
    (_peer_status(central="ESTABLISHED"), (True, "sessions central: ESTABLISHED")),
    (
        _peer_status(node2="ESTABLISHED", node1="ESTABLISHED"),
        (True, "sessions node1: ESTABLISHED, node2: ESTABLISHED"),
    ),
    (
        _peer_status(node1="ESTABLISHED", node2="ACTIVE"),
        (False, "sessions node1: ESTABLISHED, node2: ACTIVE"),
    ),
    (_peer_status(node1=None), (False, "sessions node1: UNKNOWN")),
]


@pytest.mark.parametrize(("peer", "expected"), PEER_READINESS)
def test_bgp_peer_readiness(peer, expected):
    assert bgp_peer_readiness(peer) == expected


def test_timeout_message_names_what_was_awaited_and_what_was_seen():
    assert timeout_message("Eip", "pool", 5, "its Ready condition to be True", "x") == (
        "timed out after 5s waiting for Eip 'pool' its Ready condition to be True; last seen: x"
    )


INVALID = {
    "kind": "Status",
    "apiVersion": "v1",
    "status": "Failure",
    "message": 'Eip.network.kubesphere.io "p" is invalid: spec.address: Invalid value: ...',
    "reason": "Invalid",
    "details": {
        "name": "p",
        "causes": [
            {
                "reason": "FieldValueInvalid",
                "message": "Invalid value: \"string\": spec.address '10.0.0.9-10.0.0.1': "
                "range start is after its end",
                "field": "spec.address",
            },
            {"reason": "FieldValueRequired", "message": "Required value", "field": "status.x"},
        ],
    },
    "code": 422,
}

REFUSALS = [
    (
        json.dumps(INVALID),
        "Eip 'p': the API server refused the apply: spec.address (option address): Invalid "
        "value: \"string\": spec.address '10.0.0.9-10.0.0.1': range start is after its end; "
        "status.x: Required value",
    ),
    (
        json.dumps(INVALID).encode(),
        "Eip 'p': the API server refused the apply: spec.address (option address): Invalid "
        "value: \"string\": spec.address '10.0.0.9-10.0.0.1': range start is after its end; "
        "status.x: Required value",
    ),
    (
        {"kind": "Status", "message": 'Apply failed with 1 conflict: conflict with "kubectl"'},
        "Eip 'p': the API server refused the apply: Apply failed with 1 conflict: conflict "
        'with "kubectl"',
    ),
    (
        "503 Service Unavailable",
        "Eip 'p': the API server refused the apply: 503 Service Unavailable",
    ),
]


@pytest.mark.parametrize(("body", "message"), REFUSALS)
def test_refusal_message_names_the_field_and_the_option(body, message):
    assert refusal_message("Eip", "p", body) == message


def test_manifest_holds_only_what_the_options_say():
    params = {"address": "192.0.2.0/24", "protocol": None, "labels": {"team": "web"}}
    assert EIP.manifest("pool", params) == {
        "apiVersion": "network.kubesphere.io/v1alpha2",
        "kind": "Eip",
        "metadata": {"name": "pool", "labels": {"team": "web"}},
        "spec": {"address": "192.0.2.0/24"},
    }
    assert BGP_CONF.manifest("default", {"as": 65001})["metadata"] == {"name": "default"}
