"""The speaker's decisions as tables: BgpPeer/BgpConf mapping, RIB and peer diffs, and the
incremental route table against the full computation of porter_lb.routing.routes."""

from __future__ import annotations

import base64
import random
from typing import Any

import pytest

from porter_lb.model.resources import Endpoint, ModelError, Node, ServiceTraffic
from porter_lb.routing.bgp_config import (
    DEFAULT_CENTRAL_SEND_MAX,
    Bfd,
    GlobalConfig,
    GracefulRestart,
    Mode,
    PeerConfig,
    PeerExport,
    PeerSpec,
    PeerStatus,
    choose_bgpconf,
    export_filters,
    families_without_next_hop,
    global_config_from_bgpconf,
    global_differs,
    peer_delta,
    peer_spec_from_bgppeer,
    peer_status_entry,
    plain_text_password_peers,
    usable_peer_specs,
)
from porter_lb.routing.gobgp import peer_config_from_message, peer_message
from porter_lb.routing.routes import (
    EXCLUDE_FROM_EXTERNAL_LOAD_BALANCERS_LABEL,
    LabelSelector,
    Peer,
    Route,
    RouteTable,
    announced_ips,
    bgp_pools,
    central_rib,
    desired_routes,
    node_next_hops,
    node_rib,
    nodes_without_next_hop,
    path_identifier,
    rib_delta,
    service_next_hops,
)

NS = "porter-lb-system"


def bgppeer(name: str = "tor", **spec: Any) -> dict[str, Any]:
    spec.setdefault("conf", {"neighborAddress": "198.51.100.1", "peerAs": 65000})
    return {"metadata": {"name": name}, "spec": spec}


def secret(name: str, **data: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": NS},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


# --- BgpPeer -> PeerConfig ---------------------------------------------------------------------


def test_porter_sample_bgppeer_maps_to_gobgp_v3_names() -> None:
    spec = peer_spec_from_bgppeer(
        {
            "metadata": {"name": "bgppeer-sample"},
            "spec": {
                "conf": {"peerAs": 65001, "neighborAddress": "192.168.0.5"},
                "transport": {"passiveMode": False},
                "afiSafis": [
                    {
                        "config": {
                            "family": {"afi": "AFI_IP", "safi": "SAFI_UNICAST"},
                            "enabled": True,
                        },
                        "addPaths": {"config": {"sendMax": 10}},
                    }
                ],
            },
        },
        {},
    )
    assert spec.name == "bgppeer-sample"
    assert spec.peer == Peer("bgppeer-sample", LabelSelector())
    assert spec.config == PeerConfig(
        neighbor_address="192.168.0.5",
        peer_asn=65001,
        families=(4,),
        add_paths_send_max=10,
        hold_time=90,
        keepalive=30,
        connect_retry=5,
    )


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (  # Porter's timers are strings; keepalive defaults to a third of hold
            {"timers": {"config": {"holdTime": "9", "connectRetry": "1"}}},
            {"hold_time": 9, "keepalive": 3, "connect_retry": 1},
        ),
        (
            {"timers": {"config": {"holdTime": 30, "keepaliveInterval": "10"}}},
            {"hold_time": 30, "keepalive": 10},
        ),
        ({"transport": {"passiveMode": True, "remotePort": 1790}}, {"passive": True, "port": 1790}),
        ({"ebgpMultihop": {"enabled": True}}, {"ebgp_multihop_ttl": 255}),
        ({"ebgpMultihop": {"enabled": True, "multihopTtl": 3}}, {"ebgp_multihop_ttl": 3}),
        ({"ebgpMultihop": {"enabled": False, "multihopTtl": 3}}, {"ebgp_multihop_ttl": 0}),
        (
            {"gracefulRestart": {"enabled": True, "restartTime": 120}},
            {"graceful_restart": GracefulRestart(True, 120)},
        ),
        ({}, {"bfd": Bfd()}),  # no BFD unless asked
        ({"bfd": {"enabled": True}}, {"bfd": Bfd(True, 300, 300, 3)}),  # the defaults
        (
            {"bfd": {"enabled": True, "transmitInterval": 100, "receiveInterval": 50}},
            {"bfd": Bfd(True, 100, 50, 3)},
        ),
        ({"bfd": {"enabled": True, "detectMultiplier": 5}}, {"bfd": Bfd(True, 300, 300, 5)}),
        ({"bfd": {"enabled": False, "transmitInterval": 100}}, {"bfd": Bfd()}),
        (
            {
                "conf": {
                    "neighborAddress": "198.51.100.1",
                    "peerAs": 65000,
                    "adminDown": True,
                    "description": "rack 1 leaf",
                    "allowOwnAs": 2,
                    "replacePeerAs": True,
                    "removePrivateAs": "replace",
                }
            },
            {
                "admin_down": True,
                "description": "rack 1 leaf",
                "allow_own_asn": 2,
                "replace_peer_asn": True,
                "remove_private": 2,
            },
        ),
        (
            {"transport": {"localAddress": "198.51.100.11", "tcpMss": 1400}},
            {"local_address": "198.51.100.11", "tcp_mss": 1400},
        ),
        (
            {"gracefulRestart": {"enabled": True, "helperOnly": True, "notificationEnabled": True}},
            {
                "graceful_restart": GracefulRestart(
                    True, 90, helper_only=True, notification_enabled=True
                )
            },
        ),
        (
            {
                "conf": {
                    "neighborAddress": "2001:db8::1",
                    "peerAs": 4200000000,
                    "localAs": 65010,
                }
            },
            {
                "neighbor_address": "2001:db8::1",
                "peer_asn": 4200000000,
                "local_asn": 65010,
                "families": (6,),
            },
        ),
        (
            {
                "afiSafis": [
                    {"config": {"family": {"afi": "AFI_IP"}, "enabled": True}},
                    {"config": {"family": {"afi": "AFI_IP6"}}},
                    {"config": {"family": {"afi": "AFI_IP6"}, "enabled": False}},
                ]
            },
            {"families": (4, 6)},
        ),
        (
            {"afiSafis": [{"config": {"family": {"afi": "AFI_IP"}, "enabled": False}}]},
            {"families": (4,)},  # nothing enabled: the neighbour's own family
        ),
    ],
)
def test_bgppeer_fields_map_to_peer_config(spec: dict[str, Any], expected: dict[str, Any]) -> None:
    config = peer_spec_from_bgppeer(bgppeer(**spec), {}).config
    for name, value in expected.items():
        assert getattr(config, name) == value, name


def test_central_speaker_sends_every_path_by_default_and_keeps_an_explicit_send_max() -> None:
    assert peer_spec_from_bgppeer(bgppeer(), {}, mode="node").config.add_paths_send_max == 0
    central = peer_spec_from_bgppeer(bgppeer(), {}, mode="central").config
    assert central.add_paths_send_max == DEFAULT_CENTRAL_SEND_MAX
    explicit = bgppeer(afiSafis=[{"config": {}, "addPaths": {"config": {"sendMax": 8}}}])
    assert peer_spec_from_bgppeer(explicit, {}, mode="central").config.add_paths_send_max == 8


def test_node_selector_is_parsed_into_the_route_peer() -> None:
    spec = peer_spec_from_bgppeer(bgppeer(nodeSelector={"matchLabels": {"rack": "a"}}), {})
    assert spec.peer.node_selector.matches({"rack": "a"})
    assert not spec.peer.node_selector.matches({"rack": "b"})


def test_password_from_secret_plain_field_and_never_in_repr() -> None:
    ref = {"neighborAddress": "198.51.100.1", "peerAs": 65000}
    from_secret = peer_spec_from_bgppeer(
        bgppeer(conf={**ref, "authPasswordSecretRef": {"name": "tor-md5"}}),
        {"tor-md5": secret("tor-md5", password="s3cret-md5")},
        secret_namespace=NS,
    )
    assert from_secret.config.auth_password == "s3cret-md5"
    assert "s3cret-md5" not in repr(from_secret)
    other_key = peer_spec_from_bgppeer(
        bgppeer(conf={**ref, "authPasswordSecretRef": {"name": "tor-md5", "key": "md5"}}),
        {"tor-md5": secret("tor-md5", md5="other")},
        secret_namespace=NS,
    )
    assert other_key.config.auth_password == "other"
    plain = peer_spec_from_bgppeer(bgppeer(conf={**ref, "authPassword": "porter-style"}), {})
    assert plain.config.auth_password == "porter-style"


@pytest.mark.parametrize(
    ("spec", "secrets", "field", "rule"),
    [
        ({"conf": {"peerAs": 65000}}, {}, "spec.conf.neighborAddress", "must be an IP address"),
        (
            {"conf": {"neighborAddress": "tor.example", "peerAs": 65000}},
            {},
            "spec.conf.neighborAddress",
            "must be an IP address",
        ),
        ({"conf": {"neighborAddress": "198.51.100.1"}}, {}, "spec.conf.peerAs", "is required"),
        (
            {"timers": {"config": {"holdTime": "soon"}}},
            {},
            "spec.timers.config.holdTime",
            "must be an integer",
        ),
        (
            {"afiSafis": [{"config": {"family": {"afi": "AFI_L2VPN"}}}]},
            {},
            "spec.afiSafis[0].config.family.afi",
            "AFI_IP or AFI_IP6",
        ),
        (
            {"conf": {"neighborAddress": "198.51.100.1", "peerAs": 1, "removePrivateAs": "some"}},
            {},
            "spec.conf.removePrivateAs",
            "must be NONE, ALL or REPLACE",
        ),
        (
            {"transport": {"localAddress": "node1"}},
            {},
            "spec.transport.localAddress",
            "must be an IP address",
        ),
        (
            {"bfd": {"enabled": True, "transmitInterval": 5}},
            {},
            "spec.bfd.transmitInterval",
            "must be between 10 and 60000",
        ),
        (
            {"bfd": {"enabled": True, "detectMultiplier": 1}},
            {},
            "spec.bfd.detectMultiplier",
            "must be between 2 and 255",
        ),
        (
            {"nodeSelector": {"matchExpressions": [{"key": "rack", "operator": "Near"}]}},
            {},
            "spec.nodeSelector.matchExpressions[0].operator",
            "must be one of",
        ),
        (
            {
                "conf": {
                    "neighborAddress": "198.51.100.1",
                    "peerAs": 65000,
                    "authPasswordSecretRef": {"name": "missing"},
                }
            },
            {},
            "spec.conf.authPasswordSecretRef",
            "Secret not found",
        ),
        (
            {
                "conf": {
                    "neighborAddress": "198.51.100.1",
                    "peerAs": 65000,
                    "authPasswordSecretRef": {"name": "tor-md5", "namespace": "kube-system"},
                }
            },
            {"tor-md5": secret("tor-md5", password="x")},
            "spec.conf.authPasswordSecretRef.namespace",
            "only in its own namespace",
        ),
        (
            {
                "conf": {
                    "neighborAddress": "198.51.100.1",
                    "peerAs": 65000,
                    "authPasswordSecretRef": {"name": "tor-md5"},
                }
            },
            {"tor-md5": secret("tor-md5", other="x")},
            "spec.conf.authPasswordSecretRef.key",
            "has no such key",
        ),
    ],
)
def test_unusable_bgppeer_names_the_field(
    spec: dict[str, Any], secrets: dict[str, Any], field: str, rule: str
) -> None:
    with pytest.raises(ModelError) as refused:
        peer_spec_from_bgppeer(bgppeer("bad", **spec), secrets, secret_namespace=NS)
    assert refused.value.kind == "BgpPeer"
    assert refused.value.name == "bad"
    assert refused.value.field == field
    assert rule in str(refused.value)


def test_peer_config_round_trips_through_the_gobgp_message() -> None:
    """What ListPeer gives back compares equal to what was configured: no needless update."""
    config = PeerConfig(
        neighbor_address="198.51.100.1",
        peer_asn=65000,
        port=1790,
        local_asn=65010,
        passive=True,
        auth_password="pw",
        ebgp_multihop_ttl=4,
        hold_time=9,
        keepalive=3,
        connect_retry=1,
        families=(4, 6),
        add_paths_send_max=255,
        graceful_restart=GracefulRestart(True, 120),
        bfd=Bfd(True, 100, 50, 4),
        admin_down=True,
        description="leaf",
        allow_own_asn=1,
        replace_peer_asn=True,
        remove_private=1,
        local_address="198.51.100.11",
        tcp_mss=1400,
    )
    assert peer_config_from_message(peer_message(config)) == config
    sent = peer_message(config).bfd  # GoBGP takes microseconds
    assert (sent.desired_minimum_tx_interval, sent.required_minimum_receive) == (100000, 50000)
    assert peer_config_from_message(peer_message(PeerConfig("198.51.100.1", 65000))) == PeerConfig(
        "198.51.100.1", 65000
    )


@pytest.mark.parametrize(
    ("wanted", "configured", "expected"),
    [
        ({}, {}, ([], [], [])),
        ({"a": PeerConfig("a", 1)}, {}, (["a"], [], [])),
        ({}, {"a": PeerConfig("a", 1)}, ([], [], ["a"])),
        ({"a": PeerConfig("a", 1)}, {"a": PeerConfig("a", 1)}, ([], [], [])),
        ({"a": PeerConfig("a", 2)}, {"a": PeerConfig("a", 1)}, ([], ["a"], [])),
        (
            {"a": PeerConfig("a", 1, auth_password="new")},
            {"a": PeerConfig("a", 1), "b": PeerConfig("b", 1)},
            ([], ["a"], ["b"]),
        ),
    ],
)
def test_peer_delta(
    wanted: dict[str, PeerConfig],
    configured: dict[str, PeerConfig],
    expected: tuple[list[str], list[str], list[str]],
) -> None:
    add, update, delete = peer_delta(wanted, configured)
    assert ([c.neighbor_address for c in add], [c.neighbor_address for c in update], delete) == (
        expected
    )


UP = "198.51.100.11"  # the source address gobgpd reports once the session is connected


@pytest.mark.parametrize(
    ("wanted", "reported", "sent", "updated"),
    [
        # No source address wanted: the one a connected session reports is the kernel's.
        ("", UP, None, False),
        ("", UP, "", False),
        ("", "", None, False),
        # This process had set one and it is now removed from the BgpPeer: update.
        ("", UP, UP, True),
        # One wanted: the reported one must be it, whatever was sent.
        (UP, UP, None, False),
        (UP, "", None, True),
        ("198.51.100.99", UP, None, True),
        ("198.51.100.99", UP, "", True),
        ("198.51.100.99", "198.51.100.99", "198.51.100.99", False),
    ],
)
def test_peer_delta_reads_local_address_as_gobgp_reports_it(
    wanted: str, reported: str, sent: str | None, updated: bool
) -> None:
    """GoBGP's ListPeer puts a connected session's own source address in place of the
    configured local address; an unchanged peer must not be updated for it (UpdatePeer
    soft-resets the session and re-sends every path)."""
    config = PeerConfig("198.51.100.1", 65000, local_address=wanted)
    running = {"198.51.100.1": PeerConfig("198.51.100.1", 65000, local_address=reported)}
    previous = (
        None
        if sent is None
        else {"198.51.100.1": PeerConfig("198.51.100.1", 65000, local_address=sent)}
    )
    add, update, delete = peer_delta({"198.51.100.1": config}, running, previous)
    assert (add, delete) == ([], [])
    assert update == ([config] if updated else [])


def test_peer_status_entry_uses_gobgp_state_names() -> None:
    config = PeerConfig("198.51.100.1", 65000)
    assert peer_status_entry(PeerStatus("198.51.100.1", 65000, "established"), config) == {
        "peerState": {
            "neighborAddress": "198.51.100.1",
            "peerAs": 65000,
            "sessionState": "ESTABLISHED",
        }
    }
    assert peer_status_entry(None, config)["peerState"]["sessionState"] == "UNKNOWN"


@pytest.mark.parametrize(
    ("bfd_state", "expected"),
    [("up", "UP"), ("down", "DOWN"), ("init", "INIT"), ("", "UNKNOWN")],
)
def test_peer_status_entry_shows_bfd_only_where_it_is_enabled(
    bfd_state: str, expected: str
) -> None:
    with_bfd = PeerConfig("198.51.100.1", 65000, bfd=Bfd(True))
    status = PeerStatus("198.51.100.1", 65000, "established", bfd_state=bfd_state)
    assert peer_status_entry(status, with_bfd)["bfdState"] == {"sessionState": expected}
    assert "bfdState" not in peer_status_entry(status, PeerConfig("198.51.100.1", 65000))


# --- BgpConf -> GlobalConfig ------------------------------------------------------------------


NODE = Node("node1", True, {}, ("2001:db8::11", "198.51.100.11"))
RACK2 = Node("node3", True, {"openelb.kubesphere.io/rack": "rack2"}, ("198.51.100.13",))
RACK9 = Node("node9", True, {"openelb.kubesphere.io/rack": "rack9"}, ("198.51.100.19",))
PER_RACK = {"as": 65001, "routerId": "10.0.0.1", "asPerRack": {"rack1": 65011, "rack2": 65012}}


@pytest.mark.parametrize(
    ("spec", "node", "default", "expected"),
    [
        ({"as": 65001}, NODE, "", GlobalConfig(65001, "198.51.100.11")),
        (
            {"as": 65001, "routerId": "10.0.0.1", "listenPort": 17900},
            NODE,
            "",
            GlobalConfig(65001, "10.0.0.1", 17900),
        ),
        ({"as": 65001, "listenPort": -1}, None, "10.9.9.9", GlobalConfig(65001, "10.9.9.9", -1)),
        # OpenELB's asPerRack: the rack's AS, and the node's own address as router ID.
        (PER_RACK, RACK2, "", GlobalConfig(65012, "198.51.100.13")),
        (PER_RACK, RACK9, "", GlobalConfig(65001, "10.0.0.1")),  # rack not listed
        (PER_RACK, NODE, "", GlobalConfig(65001, "10.0.0.1")),  # no rack label
        (PER_RACK, None, "10.9.9.9", GlobalConfig(65001, "10.0.0.1")),  # central: spec.as
        (
            {
                "as": 4200000001,
                "listenAddresses": ["198.51.100.11"],
                "gracefulRestart": {"enabled": True, "restartTime": 90},
            },
            NODE,
            "",
            GlobalConfig(
                4200000001, "198.51.100.11", 179, ("198.51.100.11",), GracefulRestart(True, 90)
            ),
        ),
    ],
)
def test_bgpconf_maps_to_global_config(
    spec: dict[str, Any], node: Node | None, default: str, expected: GlobalConfig
) -> None:
    conf = {"metadata": {"name": "default"}, "spec": spec}
    assert global_config_from_bgpconf(conf, node, default) == expected


@pytest.mark.parametrize(
    ("spec", "node", "field"),
    [
        ({}, NODE, "spec.as"),
        ({"as": 65001}, Node("v6only", True, {}, ("2001:db8::1",)), "spec.routerId"),
        ({"as": 65001}, None, "spec.routerId"),
        ({"as": 65001, "routerId": "2001:db8::1"}, NODE, "spec.routerId"),
        ({"as": 65001, "listenAddresses": ["here"]}, NODE, "spec.listenAddresses"),
        ({"as": 65001, "asPerRack": {"rack2": 0}}, RACK2, "spec.asPerRack.rack2"),
        ({"as": 65001, "asPerRack": ["rack2"]}, RACK2, "spec.asPerRack"),
    ],
)
def test_unusable_bgpconf_names_the_field(
    spec: dict[str, Any], node: Node | None, field: str
) -> None:
    with pytest.raises(ModelError) as refused:
        global_config_from_bgpconf({"metadata": {"name": "default"}, "spec": spec}, node)
    assert refused.value.field == field


def test_choose_bgpconf_prefers_default_and_skips_deleted() -> None:
    def conf(name: str, deleting: bool = False) -> dict[str, Any]:
        metadata: dict[str, Any] = {"name": name}
        if deleting:
            metadata["deletionTimestamp"] = "2026-01-01T00:00:00Z"
        return {"metadata": metadata, "spec": {"as": 1}}

    assert choose_bgpconf([]) is None
    assert choose_bgpconf([conf("b"), conf("a")])["metadata"]["name"] == "a"  # type: ignore[index]
    chosen = choose_bgpconf([conf("a"), conf("default")])
    assert chosen is not None and chosen["metadata"]["name"] == "default"
    assert choose_bgpconf([conf("default", deleting=True)]) is None


def test_global_differs_ignores_what_getbgp_does_not_report() -> None:
    running = GlobalConfig(65001, "198.51.100.11", 179, ("0.0.0.0", "::"))
    assert not global_differs(running, GlobalConfig(65001, "198.51.100.11"))
    assert not global_differs(
        running, GlobalConfig(65001, "198.51.100.11", graceful_restart=GracefulRestart(True, 9))
    )
    assert global_differs(running, GlobalConfig(65002, "198.51.100.11"))
    assert global_differs(running, GlobalConfig(65001, "198.51.100.12"))
    assert global_differs(running, GlobalConfig(65001, "198.51.100.11", 17900))
    assert global_differs(running, GlobalConfig(65001, "198.51.100.11", 179, ("198.51.100.11",)))


# --- routes -----------------------------------------------------------------------------------


def eip(name: str, address: str, protocol: str = "bgp", deleting: bool = False) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if deleting:
        metadata["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": metadata, "spec": {"address": address, "protocol": protocol}}


def test_only_ips_of_bgp_pools_not_being_deleted_are_announced() -> None:
    pools, errors = bgp_pools(
        [
            eip("bgp", "203.0.113.0/28"),
            eip("l2", "203.0.113.64/28", "layer2"),
            eip("going", "203.0.113.128/28", deleting=True),
            eip("broken", "203.0.113.9-203.0.113.1"),
        ]
    )
    assert [name for name, _ in [(e["metadata"]["name"], r) for e, r in errors]] == ["broken"]
    ips = ["203.0.113.5", "203.0.113.70", "203.0.113.130", "192.0.2.1"]
    assert announced_ips(ips, pools) == ("203.0.113.5",)


NODES = {
    n.name: n
    for n in [
        Node("n1", True, {"rack": "a"}, ("192.0.2.11",)),
        Node("n2", True, {"rack": "b"}, ("192.0.2.12",)),
        Node("n3", False, {"rack": "a"}, ("192.0.2.13",)),
        Node("n4", True, {EXCLUDE_FROM_EXTERNAL_LOAD_BALANCERS_LABEL: ""}, ("192.0.2.14",)),
    ]
}
ALL = frozenset(NODES)


@pytest.mark.parametrize(
    ("traffic", "endpoints", "selected", "expected"),
    [
        (
            ServiceTraffic("a/web", "Cluster", ("203.0.113.1",)),
            [],
            ALL,
            {"203.0.113.1/32": frozenset({"n1", "n2"})},
        ),
        (
            ServiceTraffic("a/web", "Local", ("203.0.113.1",)),
            [Endpoint("n2"), Endpoint("n3"), Endpoint("n1", ready=False)],
            ALL,
            {"203.0.113.1/32": frozenset({"n2"})},
        ),
        (
            ServiceTraffic("a/web", "Cluster", ("203.0.113.1", "2001:db8::1")),
            [],
            frozenset({"n1"}),
            {"203.0.113.1/32": frozenset({"n1"}), "2001:db8::1/128": frozenset({"n1"})},
        ),
        (ServiceTraffic("a/web", "Local", ("203.0.113.1",)), [], ALL, {}),
        (ServiceTraffic("a/web", "Cluster", ("203.0.113.1",)), [], frozenset(), {}),
    ],
)
def test_service_next_hops(
    traffic: ServiceTraffic,
    endpoints: list[Endpoint],
    selected: frozenset[str],
    expected: dict[str, frozenset[str]],
) -> None:
    assert service_next_hops(traffic, endpoints, NODES, selected) == expected


def test_node_and_central_ribs() -> None:
    table = RouteTable()
    table.set_service("a/web", {"203.0.113.1/32": frozenset({"n1", "n2"})})
    table.set_service("a/v6", {"2001:db8::1/128": frozenset({"n1"})})
    prefixes = table.prefixes()
    assert node_rib(table, prefixes, "n1") == {
        "203.0.113.1/32": {Route("203.0.113.1/32", "0.0.0.0")},
        "2001:db8::1/128": {Route("2001:db8::1/128", "::")},
    }
    assert node_rib(table, prefixes, "n2") == {
        "203.0.113.1/32": {Route("203.0.113.1/32", "0.0.0.0")}
    }
    addresses = {name: node.addresses for name, node in NODES.items()}
    assert central_rib(table, prefixes, addresses) == {
        "203.0.113.1/32": {
            Route("203.0.113.1/32", "192.0.2.11", path_identifier("192.0.2.11")),
            Route("203.0.113.1/32", "192.0.2.12", path_identifier("192.0.2.12")),
        }
        # n1 has no IPv6 address: it cannot be a next hop of 2001:db8::1/128
    }


@pytest.mark.parametrize(
    ("desired", "addresses", "expected"),
    [
        # n2 has no IPv6 address: it cannot be a next hop of the /128.
        (
            {"2001:db8::1/128": frozenset({"n1", "n2"}), "203.0.113.1/32": frozenset({"n2"})},
            {"n1": ("192.0.2.11", "2001:db8::11"), "n2": ("192.0.2.12",)},
            {"2001:db8::1/128": frozenset({"n2"})},
        ),
        # An IPv6-only node and an IPv4 prefix; a node not in the addresses at all.
        (
            {"203.0.113.1/32": frozenset({"n1", "n3"})},
            {"n1": ("2001:db8::11",)},
            {"203.0.113.1/32": frozenset({"n1", "n3"})},
        ),
        ({"203.0.113.1/32": frozenset({"n1"})}, {"n1": "192.0.2.11"}, {}),
    ],
)
def test_nodes_without_next_hop(
    desired: dict[str, frozenset[str]],
    addresses: dict[str, Any],
    expected: dict[str, frozenset[str]],
) -> None:
    assert nodes_without_next_hop(desired, addresses) == expected


def _rack_peer(name: str, rack: str | None, local_as: int) -> dict[str, Any]:
    conf = {"neighborAddress": "198.51.100.1", "peerAs": 65000, "localAs": local_as}
    selector = {"nodeSelector": {"matchLabels": {"rack": rack}}} if rack else {}
    return bgppeer(name, conf=conf, **selector)


RACK_A = Node("a1", True, {"rack": "a"})
RACK_B = Node("b1", True, {"rack": "b"})


@pytest.mark.parametrize(
    ("peers", "mode", "node", "used", "rejected"),
    [
        # One router, a BgpPeer per rack with its own localAs: each node takes its rack's.
        ([("ra", "a", 65101), ("rb", "b", 65102)], "node", RACK_A, {"ra": 65101}, []),
        ([("ra", "a", 65101), ("rb", "b", 65102)], "node", RACK_B, {"rb": 65102}, []),
        # The route audit (every node at once) keeps both.
        ([("ra", "a", 65101), ("rb", "b", 65102)], "node", None, {"ra": 65101, "rb": 65102}, []),
        # Two that pick the same node: the first by name wins there, the other is refused.
        ([("all", None, 65101), ("rb", "b", 65102)], "node", RACK_B, {"all": 65101}, ["rb"]),
        ([("all", None, 65101), ("rb", "b", 65102)], "node", RACK_A, {"all": 65101}, []),
        # One gobgpd for the cluster: one session per address.
        ([("ra", "a", 65101), ("rb", "b", 65102)], "central", None, {"ra": 65101}, ["rb"]),
    ],
)
def test_bgppeers_sharing_a_neighbour_are_one_per_node(
    peers: list[tuple[str, str | None, int]],
    mode: Mode,
    node: Node | None,
    used: dict[str, int],
    rejected: list[str],
) -> None:
    objs = [_rack_peer(*peer) for peer in peers]
    specs, refused = usable_peer_specs(objs, {}, mode=mode, node=node)
    assert {s.name: s.config.local_asn for s in specs} == used
    assert [obj["metadata"]["name"] for obj, _, _ in refused] == rejected
    assert all(reason == "DuplicateNeighbor" for _, reason, _ in refused)
    for _, _, message in refused:
        assert "spec.conf.neighborAddress" in message and "198.51.100.1" in message
        if node is not None:
            assert f"node {node.name}" in message


V4, V6 = "198.51.100.11", "2001:db8:198::11"


@pytest.mark.parametrize(
    ("addresses", "sessions", "expected"),
    [
        # Each session of its prefixes' own version: next hop self for both.
        ((V4, V6), [("198.51.100.1", (4,)), ("2001:db8:198::1", (6,))], {4: "0.0.0.0", 6: "::"}),
        # IPv6 over the IPv4 session (MP-BGP): the node's IPv6 address, explicitly.
        ((V4, V6), [("198.51.100.1", (4, 6))], {4: "0.0.0.0", 6: V6}),
        # IPv4 over an IPv6 session: the node's IPv4 address.
        ((V4, V6), [("2001:db8:198::1", (6, 4))], {4: V4, 6: "::"}),
        # No IPv6 address: self stays (the session is not given IPv6 at all, see below).
        ((V4,), [("198.51.100.1", (4, 6))], {4: "0.0.0.0", 6: "::"}),
        # The first address of the family, written normalised.
        (("2001:DB8:198:0::11", "2001:db8:198::99"), [("10.0.0.1", (6,))], {4: "0.0.0.0", 6: V6}),
        ((V4, V6), [], {4: "0.0.0.0", 6: "::"}),
    ],
)
def test_node_next_hops(
    addresses: tuple[str, ...],
    sessions: list[tuple[str, tuple[int, ...]]],
    expected: dict[int, str],
) -> None:
    assert node_next_hops(addresses, sessions) == expected


def test_node_rib_uses_the_next_hop_of_each_prefix_version() -> None:
    table = RouteTable()
    table.set_service("a/web", {"203.0.113.1/32": frozenset({"n1"})})
    table.set_service("a/v6", {"2001:db8::1/128": frozenset({"n1"})})
    assert node_rib(table, table.prefixes(), "n1", {4: "0.0.0.0", 6: V6}) == {
        "203.0.113.1/32": {Route("203.0.113.1/32", "0.0.0.0")},
        "2001:db8::1/128": {Route("2001:db8::1/128", V6)},
    }


@pytest.mark.parametrize(
    ("neighbor", "families", "addresses", "missing"),
    [
        ("198.51.100.1", (4, 6), (V4, V6), ()),
        ("198.51.100.1", (4, 6), (V4,), (6,)),
        ("198.51.100.1", (4,), (V4,), ()),
        ("2001:db8:198::1", (6,), (), ()),  # self is right on a session of its own version
        ("2001:db8:198::1", (4, 6), (V6,), (4,)),
        ("2001:db8:198::1", (4, 6), ("not an address", V4), ()),
    ],
)
def test_families_without_next_hop(
    neighbor: str, families: tuple[int, ...], addresses: tuple[str, ...], missing: tuple[int, ...]
) -> None:
    config = PeerConfig(neighbor, 65000, families=families)
    assert families_without_next_hop(config, addresses) == missing


R = Route
HOP = {n: R("203.0.113.1/32", f"192.0.2.1{n}", path_identifier(f"192.0.2.1{n}")) for n in (1, 2)}


@pytest.mark.parametrize(
    ("held", "desired", "prefixes", "add", "withdraw"),
    [
        ({}, {}, None, [], []),
        ({}, {"p/32": {R("p/32", "0.0.0.0")}}, None, [R("p/32", "0.0.0.0")], []),
        ({"p/32": {R("p/32", "0.0.0.0")}}, {}, None, [], [R("p/32", "0.0.0.0")]),
        ({"p/32": {R("p/32", "0.0.0.0")}}, {"p/32": {R("p/32", "0.0.0.0")}}, None, [], []),
        # central: one next hop more, one less; the staying path is not touched
        ({"203.0.113.1/32": {HOP[1]}}, {"203.0.113.1/32": {HOP[1], HOP[2]}}, None, [HOP[2]], []),
        ({"203.0.113.1/32": {HOP[1], HOP[2]}}, {"203.0.113.1/32": {HOP[2]}}, None, [], [HOP[1]]),
        # the same identifier with a new next hop: adding replaces, withdrawing would kill it
        (
            {"q/32": {R("q/32", "192.0.2.11", 7)}},
            {"q/32": {R("q/32", "192.0.2.99", 7)}},
            None,
            [R("q/32", "192.0.2.99", 7)],
            [],
        ),
        # only the named prefixes are compared
        (
            {"p/32": {R("p/32", "0.0.0.0")}, "q/32": {R("q/32", "0.0.0.0")}},
            {},
            ["q/32"],
            [],
            [R("q/32", "0.0.0.0")],
        ),
    ],
)
def test_rib_delta(
    held: dict[str, set[Route]],
    desired: dict[str, set[Route]],
    prefixes: list[str] | None,
    add: list[Route],
    withdraw: list[Route],
) -> None:
    assert rib_delta(held, desired, prefixes) == (add, withdraw)


# --- incremental == full -------------------------------------------------------------------------


def test_incremental_route_table_equals_full_recompute_of_routes_module() -> None:
    """Random Service and endpoint changes, applied one Service at a time to a RouteTable,
    always give what routes.desired_routes computes from scratch (union over the peers)."""
    rng = random.Random(7)
    nodes = {
        f"n{i}": Node(f"n{i}", rng.random() > 0.2, {"rack": rng.choice("ab")}, (f"192.0.2.{i}",))
        for i in range(1, 9)
    }
    peers = [
        Peer("rack-a", LabelSelector({"rack": "a"})),
        Peer("rack-b", LabelSelector({"rack": "b"})),
    ]
    selected = frozenset(
        name
        for name, node in nodes.items()
        if any(p.node_selector.matches(node.labels) for p in peers)
    )
    ips = [f"203.0.113.{i}" for i in range(1, 12)]  # few IPs: Services share some
    services: dict[str, ServiceTraffic] = {}
    endpoints: dict[str, list[Endpoint]] = {}
    table = RouteTable()
    for _step in range(600):
        key = f"ns/svc{rng.randrange(25)}"
        action = rng.random()
        if action < 0.15:
            services.pop(key, None)
        elif action < 0.6:
            services[key] = ServiceTraffic(
                key,
                rng.choice(["Cluster", "Local"]),
                tuple(rng.sample(ips, rng.choice([0, 1, 1, 2]))),
            )
        else:
            endpoints[key] = [
                Endpoint(rng.choice(list(nodes)), rng.random() > 0.3)
                for _ in range(rng.randrange(4))
            ]
        share = (
            service_next_hops(services[key], endpoints.get(key, []), nodes, selected)
            if key in services
            else {}
        )
        before = table.as_dict()
        changed = table.set_service(key, share)
        after = table.as_dict()
        # Prefixes not reported as changed really kept their next hops.
        assert all(before.get(p) == after.get(p) for p in (set(before) | set(after)) - changed)
        full = desired_routes(services.values(), endpoints, nodes, peers)
        union: dict[str, set[str]] = {}
        for per_peer in full.values():
            for prefix, hops in per_peer.items():
                union.setdefault(prefix, set()).update(hops)
        assert after == {p: frozenset(h) for p, h in sorted(union.items())}


@pytest.mark.parametrize(
    ("conf", "warned"),
    [
        ({"authPassword": "s3cret"}, True),  # Porter's plain-text field
        ({"authPassword": "s3cret", "authPasswordSecretRef": {"name": "p"}}, False),  # the ref wins
        ({"authPasswordSecretRef": {"name": "p"}}, False),
        ({"authPassword": ""}, False),
        ({}, False),
    ],
)
def test_plain_text_passwords_are_found_for_a_warning(conf: dict[str, Any], warned: bool) -> None:
    peer = {"metadata": {"name": "tor"}, "spec": {"conf": {"neighborAddress": "192.0.2.1", **conf}}}
    deleted = {**peer, "metadata": {"name": "old", "deletionTimestamp": "2026-01-01T00:00:00Z"}}
    assert plain_text_password_peers([peer, deleted]) == (["tor"] if warned else [])


# --- Per-peer export (central speaker) ------------------------------------------------------


def _peer_spec(name: str, address: str, rack: str = "") -> PeerSpec:
    selector = {"matchLabels": {"rack": rack}} if rack else {}
    return peer_spec_from_bgppeer(
        bgppeer(name, conf={"neighborAddress": address, "peerAs": 65000}, nodeSelector=selector),
        {},
        mode="central",
    )


RACKED = {
    "n1": Node("n1", True, {"rack": "a"}, ("198.51.100.11", "2001:db8::11")),
    "n2": Node("n2", True, {"rack": "a"}, ("198.51.100.12",)),
    "n3": Node("n3", True, {"rack": "b"}, ("198.51.100.13",)),
}


@pytest.mark.parametrize(
    ("peers", "expected"),
    [
        ([], None),
        ([_peer_spec("tor", "198.51.100.1")], None),  # one peer: nothing to tell apart
        ([_peer_spec("x", "198.51.100.1"), _peer_spec("y", "198.51.100.2")], None),  # same
        (
            [_peer_spec("b", "198.51.100.2", "b"), _peer_spec("a", "198.51.100.1", "a")],
            (
                PeerExport("198.51.100.1", ("198.51.100.11", "198.51.100.12", "2001:db8::11")),
                PeerExport("198.51.100.2", ("198.51.100.13",)),
            ),
        ),
        (  # a peer whose selector picks nobody gets nothing
            [_peer_spec("a", "198.51.100.1", "a"), _peer_spec("z", "198.51.100.9", "z")],
            (
                PeerExport("198.51.100.1", ("198.51.100.11", "198.51.100.12", "2001:db8::11")),
                PeerExport("198.51.100.9", ()),
            ),
        ),
    ],
)
def test_export_filters(peers: list[PeerSpec], expected: tuple[PeerExport, ...] | None) -> None:
    assert export_filters(peers, RACKED) == expected
