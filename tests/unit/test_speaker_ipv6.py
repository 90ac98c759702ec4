"""A node speaker's IPv6 routes over an IPv4 session (MP-BGP): the node's IPv6 address as an
explicit next hop, or, for a node with none, no IPv6 on that session and a Warning Event
naming the node; a central speaker's Warning on a Service whose IPv6 IP has a node without
an IPv6 address left out (the speaker against in-memory caches, gobgpd and API server; the bed's
tests/reliability/test_ipv6.py runs the same against BIRD and FRR)."""

from __future__ import annotations

from typing import Any

from porter_lab import objects
from porter_lab.memory import MemoryCaches, MemoryGobgpd, MemoryKube
from porter_lb.kube.events import EventRecorder
from porter_lb.routing.routes import Route
from porter_lb.routing.speaker import Speaker

NODE = "node1"
NODE_V4, NODE_V6 = "198.51.100.11", "2001:db8:198::11"
EIP_V4, EIP_V6 = "203.0.113.7", "2001:db8:203::7"
MP_BGP = [
    {"config": {"family": {"afi": "AFI_IP"}, "enabled": True}},
    {"config": {"family": {"afi": "AFI_IP6"}, "enabled": True}},
]


def _node(*addresses: str, name: str = NODE) -> dict[str, Any]:
    node = objects.node(name) | objects.node_status()
    node["status"]["addresses"] = [{"type": "InternalIP", "address": a} for a in addresses]
    return node


def _speaker(
    node: dict[str, Any],
    peers: list[dict[str, Any]],
    *more_nodes: dict[str, Any],
    central: bool = False,
) -> tuple[Speaker, MemoryKube]:
    service = objects.load_balancer_service("web", "default")
    service["spec"] |= {"ipFamilyPolicy": "RequireDualStack", "ipFamilies": ["IPv4", "IPv6"]}
    service["status"] = {"loadBalancer": {"ingress": [{"ip": EIP_V4}, {"ip": EIP_V6}]}}
    caches = MemoryCaches(
        {
            "Node": [node, *more_nodes],
            "Eip": [
                objects.eip("v4", "203.0.113.0/24"),
                objects.eip("v6", "2001:db8:203::/120"),
            ],
            "BgpConf": [objects.bgp_conf(65001, "192.0.2.1" if central else "")],
            "BgpPeer": peers,
            "Service": [service],
        }
    )
    kube = MemoryKube()
    where: dict[str, Any] = {"mode": "central"} if central else {"node_name": NODE}
    speaker = Speaker(caches, MemoryGobgpd(), kube, recorder=EventRecorder(kube), **where)
    return speaker, kube


def _warnings(kube: MemoryKube) -> list[dict[str, Any]]:
    return [o for path, o in kube.objects.items() if "/events/" in path]


def test_ipv6_over_an_ipv4_session_carries_the_nodes_ipv6_address() -> None:
    speaker, kube = _speaker(
        _node(NODE_V4, NODE_V6), [objects.bgp_peer("tor", "198.51.100.1", afiSafis=MP_BGP)]
    )
    speaker.reconcile_all()
    gobgp = speaker.gobgp
    assert isinstance(gobgp, MemoryGobgpd)
    # Rule: same-family prefix -> self; IPv6 over the IPv4 session -> the node's IPv6 address.
    assert gobgp.paths == {Route(f"{EIP_V4}/32", "0.0.0.0"), Route(f"{EIP_V6}/128", NODE_V6)}
    assert gobgp.peer_configs()["198.51.100.1"].families == (4, 6)
    assert _warnings(kube) == []


def test_ipv6_sessions_keep_next_hop_self() -> None:
    peers = [
        objects.bgp_peer("tor", "198.51.100.1"),
        objects.bgp_peer("tor6", "2001:db8:198::1"),
    ]
    speaker, _ = _speaker(_node(NODE_V4, NODE_V6), peers)
    speaker.reconcile_all()
    assert isinstance(speaker.gobgp, MemoryGobgpd)
    assert speaker.gobgp.paths == {
        Route(f"{EIP_V4}/32", "0.0.0.0"),
        Route(f"{EIP_V6}/128", "::"),
    }


def test_a_node_without_ipv6_gets_no_ipv6_on_the_ipv4_session_and_a_warning() -> None:
    speaker, kube = _speaker(
        _node(NODE_V4), [objects.bgp_peer("tor", "198.51.100.1", afiSafis=MP_BGP)]
    )
    speaker.reconcile_all()
    speaker.reconcile_all()  # the Warning is not repeated
    assert isinstance(speaker.gobgp, MemoryGobgpd)
    assert speaker.gobgp.peer_configs()["198.51.100.1"].families == (4,)
    [event] = _warnings(kube)
    assert event["type"] == "Warning" and event["reason"] == "NoNextHopAddress"
    assert event["count"] == 1
    assert event["involvedObject"]["kind"] == "BgpPeer"
    assert event["involvedObject"]["name"] == "tor"
    for word in ("spec.afiSafis", "IPv6", NODE, "198.51.100.1"):
        assert word in event["message"]

    # The node gets an IPv6 address: the session carries IPv6, with it as next hop.
    speaker.informers.put("Node", _node(NODE_V4, NODE_V6))  # type: ignore[attr-defined]
    speaker.reconcile_all()
    assert speaker.gobgp.peer_configs()["198.51.100.1"].families == (4, 6)
    assert Route(f"{EIP_V6}/128", NODE_V6) in speaker.gobgp.paths


def test_a_central_speaker_warns_of_a_node_it_leaves_out_for_want_of_an_ipv6_address() -> None:
    """Service web (externalTrafficPolicy Cluster: every node eligible) on node1 (dual-stack)
    and node2 (IPv4 only): its IPv6 IP goes via node1 alone, and the Service says why."""
    speaker, kube = _speaker(
        _node(NODE_V4, NODE_V6),
        [objects.bgp_peer("tor", "198.51.100.1", afiSafis=MP_BGP)],
        _node("198.51.100.12", name="node2"),
        central=True,
    )
    speaker.reconcile_all()
    assert isinstance(speaker.gobgp, MemoryGobgpd)
    hops = {(r.prefix, r.next_hop) for r in speaker.gobgp.paths}
    assert hops == {
        (f"{EIP_V4}/32", NODE_V4),
        (f"{EIP_V4}/32", "198.51.100.12"),
        (f"{EIP_V6}/128", NODE_V6),
    }
    [event] = _warnings(kube)
    assert (event["reason"], event["involvedObject"]["kind"]) == ("NoNextHopAddress", "Service")
    for word in (EIP_V6, "node2", "IPv6"):
        assert word in event["message"]
    assert "node1" not in event["message"]
