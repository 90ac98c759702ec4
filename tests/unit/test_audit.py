"""The route audit as tables: desired routes from cluster objects (the speaker's own
functions), the comparison with a router's RIB, and the parsers of BIRD's and FRR's output
(captured from BIRD 2.0.12 and FRR 8.4.4 on the bed: two nodes, 203.0.113.193 from both,
203.0.113.194 from node1)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from porter_lab import objects
from porter_lb.cli import build_parser
from porter_lb.model.addresses import parse_address_pool
from porter_lb.routing.audit import (
    AuditError,
    ClusterState,
    RouterKind,
    compare,
    desired_routes_from_cluster,
    drift_summary,
    parse_bird_routes,
    parse_frr_bgp_json,
    routes_from_output,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "route_audit"
POOL = [("bgp", parse_address_pool("203.0.113.192/27"))]
N1, N2, N3 = "198.51.100.11", "198.51.100.12", "198.51.100.13"


# --- compare ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("desired", "observed", "missing", "stale", "wrong"),
    [
        ({}, {}, [], [], []),
        ({"203.0.113.193/32": {N1, N2}}, {"203.0.113.193/32": {N2, N1}}, [], [], []),
        ({"203.0.113.193/32": {N1}}, {}, ["203.0.113.193/32"], [], []),
        ({}, {"203.0.113.200/32": {N1}}, [], ["203.0.113.200/32"], []),
        ({"203.0.113.193/32": {N1, N2}}, {"203.0.113.193/32": {N1}}, [], [], ["203.0.113.193/32"]),
        ({"203.0.113.193/32": {N1}}, {"203.0.113.193/32": {N1, N3}}, [], [], ["203.0.113.193/32"]),
        # outside the pool: not porter-lb's, on either side
        ({"198.18.0.1/32": {N1}}, {"10.0.0.1/32": {N1}, "0.0.0.0/0": {N1}}, [], [], []),
        # an aggregate covering the pool is not ours; a /28 inside it is stale
        ({}, {"203.0.113.0/24": {N1}, "203.0.113.208/28": {N1}}, [], ["203.0.113.208/28"], []),
        # a router entry without a next hop is no route
        ({"203.0.113.193/32": {N1}}, {"203.0.113.193/32": set()}, ["203.0.113.193/32"], [], []),
    ],
)
def test_compare(
    desired: dict[str, set[str]],
    observed: dict[str, set[str]],
    missing: list[str],
    stale: list[str],
    wrong: list[str],
) -> None:
    report = compare({p: frozenset(h) for p, h in desired.items()}, observed, POOL)
    assert [e["prefix"] for e in report["missing"]] == missing
    assert [e["prefix"] for e in report["stale"]] == stale
    assert [e["prefix"] for e in report["wrong_next_hops"]] == wrong
    assert report["in_sync"] is not (missing or stale or wrong)
    assert report["counts"]["missing"] == len(missing)


def test_compare_report_entries() -> None:
    report = compare(
        {"203.0.113.193/32": frozenset({N1, N2}), "203.0.113.194/32": frozenset({N1})},
        {"203.0.113.193/32": {N2, N3}, "203.0.113.201/32": {N3}},
        POOL,
        services={"203.0.113.193/32": ("ns/web",), "203.0.113.194/32": ("ns/local",)},
    )
    assert report["missing"] == [
        {"prefix": "203.0.113.194/32", "want": [N1], "services": ["ns/local"]}
    ]
    assert report["stale"] == [{"prefix": "203.0.113.201/32", "have": [N3]}]
    assert report["wrong_next_hops"] == [
        {
            "prefix": "203.0.113.193/32",
            "want": [N1, N2],
            "have": [N2, N3],
            "missing_next_hops": [N1],
            "unexpected_next_hops": [N3],
            "services": ["ns/web"],
        }
    ]
    assert report["counts"] == {
        "desired": 2,
        "observed": 2,
        "missing": 1,
        "stale": 1,
        "wrong_next_hops": 1,
    }
    assert drift_summary(report) == (
        "routes drift from the cluster: 1 missing (203.0.113.194/32); "
        "1 stale (203.0.113.201/32); 1 wrong next hops (203.0.113.193/32)"
    )
    json.dumps(report)  # JSON-ready


def test_compare_maps_other_node_addresses_through_aliases() -> None:
    desired = {"203.0.113.193/32": frozenset({N1})}
    observed = {"203.0.113.193/32": {"10.1.0.11"}}
    assert not compare(desired, observed, POOL)["in_sync"]
    assert compare(desired, observed, POOL, aliases={"10.1.0.11": N1})["in_sync"]


def test_compare_ipv6() -> None:
    pools = [("v6", parse_address_pool("2001:db8:1::/120"))]
    report = compare(
        {"2001:db8:1::10/128": frozenset({"2001:db8::11"})},
        {"2001:db8:1:0::10/128": {"2001:db8:0::11"}, "2001:db8:1::11/128": {"2001:db8::12"}},
        pools,
    )
    assert report["missing"] == [] and report["wrong_next_hops"] == []
    assert report["stale"] == [{"prefix": "2001:db8:1::11/128", "have": ["2001:db8::12"]}]


# --- desired routes from the cluster's objects ------------------------------------------------


def node(name: str, address: str | list[str], *, ready: bool = True, **labels: str) -> Any:
    body = objects.node(name, {"rack": "a", **labels})
    addresses = [address] if isinstance(address, str) else address
    body["status"] = objects.node_status(ready=ready)["status"]
    body["status"]["addresses"] = [{"type": "InternalIP", "address": a} for a in addresses]
    return body


def service(name: str, ip: str, policy: str = "Cluster", *, porter: bool = True) -> Any:
    body = objects.load_balancer_service(name, "ns", policy=policy, porter=porter)
    return {**body, "status": objects.load_balancer_status(ip)["status"]}


def state(**changes: Any) -> ClusterState:
    base: dict[str, Any] = {
        "services": [
            service("web", "203.0.113.193"),
            service("local", "203.0.113.194", "Local"),
            service("foreign", "203.0.113.195", porter=False),
            service("l2", "203.0.113.225"),
            service("outside", "198.18.0.1"),
        ],
        "endpoint_slices": [objects.endpoint_slice("local-1", "ns", "local", ["n1"])],
        "nodes": [node("n1", N1), node("n2", N2), node("n3", N3, ready=False)],
        "eips": [
            objects.eip("bgp", "203.0.113.192/27"),
            objects.eip("l2", "203.0.113.224/28", layer2_interface="eth0"),
            objects.eip("other", "198.18.0.0/24"),
        ],
        "bgpconfs": [objects.bgp_conf(65001)],
        "bgppeers": [objects.bgp_peer("tor", "198.51.100.1", node_labels={"rack": "a"})],
        "secrets": {},
    }
    return ClusterState(**(base | changes))


def test_desired_routes_are_the_speakers() -> None:
    routes = desired_routes_from_cluster(state())
    assert routes.desired == {
        "198.18.0.1/32": frozenset({N1, N2}),
        "203.0.113.193/32": frozenset({N1, N2}),
        "203.0.113.194/32": frozenset({N1}),
    }
    assert routes.services["203.0.113.194/32"] == ("ns/local",)
    assert [name for name, _ in routes.pools] == ["bgp", "other"]
    assert routes.warnings == []


def test_desired_routes_limited_to_named_pools_and_peers() -> None:
    two_peers = [
        objects.bgp_peer("tor-a", "198.51.100.1", node_labels={"rack": "a"}),
        objects.bgp_peer("tor-b", "198.51.100.2", node_labels={"rack": "b"}),
    ]
    nodes = [node("n1", N1), node("n2", N2, rack="b")]
    routes = desired_routes_from_cluster(
        state(bgppeers=two_peers, nodes=nodes), pools=["bgp", "nope"], bgp_peers=["tor-b"]
    )
    assert routes.desired == {"203.0.113.193/32": frozenset({N2})}
    assert routes.warnings == ["pools: Eip 'nope': no such Eip with protocol bgp"]


def test_no_bgpconf_means_nothing_is_announced() -> None:
    routes = desired_routes_from_cluster(state(bgpconfs=[]))
    assert routes.desired == {}
    assert "no BgpConf" in routes.warnings[0]


def test_unreadable_secrets_trust_the_reference_missing_ones_reject_the_peer() -> None:
    conf = {
        "neighborAddress": "198.51.100.1",
        "peerAs": 65000,
        "authPasswordSecretRef": {"name": "md5"},
    }
    peer = objects.bgp_peer("tor", "198.51.100.1", node_labels={"rack": "a"}, conf=conf)
    trusted = desired_routes_from_cluster(state(bgppeers=[peer], secrets=None))
    assert trusted.desired["203.0.113.193/32"] == frozenset({N1, N2})
    rejected = desired_routes_from_cluster(state(bgppeers=[peer], secrets={}))
    assert rejected.desired == {}
    assert "Secret not found" in rejected.warnings[0]


def test_central_mode_uses_the_first_address_of_the_family_node_mode_aliases_the_rest() -> None:
    nodes = [node("n1", [N1, "10.1.0.11", "2001:db8::11"]), node("n2", N2)]
    central = desired_routes_from_cluster(state(nodes=nodes), mode="central")
    assert central.desired["203.0.113.193/32"] == frozenset({N1, N2})
    assert central.aliases == {}
    per_node = desired_routes_from_cluster(state(nodes=nodes))
    assert per_node.aliases["10.1.0.11"] == N1
    assert per_node.aliases["2001:db8::11"] == "2001:db8::11"
    observed = {"203.0.113.193/32": {"10.1.0.11", N2}, "203.0.113.194/32": {N1}}
    observed["198.18.0.1/32"] = {N1, N2}
    assert compare(per_node.desired, observed, per_node.pools, aliases=per_node.aliases)["in_sync"]


# --- router output parsers ----------------------------------------------------------------------

BOTH = {"203.0.113.193/32": {N1, N2}, "203.0.113.194/32": {N1}}


def test_parse_bird_show_route_all() -> None:
    text = (FIXTURES / "bird-show-route-all.txt").read_text()
    assert parse_bird_routes(text) == BOTH


def test_parse_bird_via_lines_ipv6_and_empty() -> None:
    text = (
        "BIRD 2.0.12 ready.\n"
        "Access restricted\n"
        "Table master4:\n"
        "203.0.113.200/32     unicast [merged 10:00:00.000] * (100)\n"
        "\tvia 198.51.100.11 on br0 weight 1\n"
        "\tvia 198.51.100.12 on br0 weight 1\n"
        "Table master6:\n"
        "2001:db8:1::10/128   unicast [node1 10:00:00.000] * (100) [AS65001i]\n"
        "\tvia 2001:db8::11 on br0\n"
        "\tType: BGP univ\n"
        "\tBGP.next_hop: 2001:db8::11 fe80::1\n"
    )
    assert parse_bird_routes(text) == {
        "203.0.113.200/32": {N1, N2},
        "2001:db8:1::10/128": {"2001:db8::11"},
    }
    assert parse_bird_routes("BIRD 2.0.12 ready.\n") == {}


def test_parse_frr_show_bgp_json() -> None:
    text = (FIXTURES / "frr-show-bgp-ipv4-unicast.json").read_text()
    assert parse_frr_bgp_json(text) == BOTH
    empty = (FIXTURES / "frr-show-bgp-ipv6-unicast-empty.json").read_text()
    assert parse_frr_bgp_json(empty) == {}


def test_parse_frr_skips_invalid_paths_and_link_local_next_hops() -> None:
    document = {
        "routes": {
            "2001:db8:1::10/128": [
                {
                    "valid": True,
                    "nexthops": [
                        {"ip": "2001:db8::11", "scope": "global"},
                        {"ip": "fe80::1", "scope": "link-local"},
                    ],
                },
                {"valid": False, "nexthops": [{"ip": "2001:db8::12", "scope": "global"}]},
            ]
        }
    }
    assert parse_frr_bgp_json(document) == {"2001:db8:1::10/128": {"2001:db8::11"}}


@pytest.mark.parametrize(
    ("router", "outputs", "expected"),
    [
        ("bird", ["bird-show-route-all.txt"], BOTH),
        ("frr", ["frr-show-bgp-ipv4-unicast.json", "frr-show-bgp-ipv6-unicast-empty.json"], BOTH),
        ("frr", ["frr-show-bgp-ipv6-unicast-empty.json"], {}),
        ("bird", [], {}),
        ("frr", [], {}),
    ],
)
def test_routes_from_output_read_elsewhere(
    router: RouterKind, outputs: list[str], expected: dict[str, set[str]]
) -> None:
    texts = [(FIXTURES / name).read_text() for name in outputs]
    assert routes_from_output(router, texts) == expected


@pytest.mark.parametrize(
    ("router", "outputs", "message"),
    [
        (
            "bird",
            ["Unable to connect to server control socket (/run/bird/bird.ctl): No such file"],
            "router_output: birdc could not read the routes: Unable to connect",
        ),
        (
            "bird",
            ["BIRD 2.0.12 ready.\nAccess denied"],
            "router_output: birdc could not read the routes: Access denied",
        ),
        (
            "frr",
            ["{}", "% BGP instance not found"],
            "router_output[1]: not the JSON of vtysh's 'show bgp ... unicast json'",
        ),
        ("frr", ["[1, 2]"], "router_output[0]: a JSON object expected"),
        ("gobgp", ["anything"], "router_output: only for router bird or frr, not gobgp"),
    ],
)
def test_routes_from_output_names_what_is_wrong(
    router: RouterKind, outputs: list[str], message: str
) -> None:
    with pytest.raises(AuditError) as raised:
        routes_from_output(router, outputs)
    assert str(raised.value).startswith(message)


def test_cli_has_audit() -> None:
    args = build_parser().parse_args(
        ["audit", "--router", "bird", "--socket", "/run/bird.ctl", "--pool", "a", "--pool", "b"]
    )
    assert (args.router, args.socket, args.pool, args.mode) == (
        "bird",
        "/run/bird.ctl",
        ["a", "b"],
        "node",
    )
