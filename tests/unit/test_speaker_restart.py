"""The speaker when gobgpd comes back from a crash: how soon it tries again, what it tells a
graceful-restart helper, and in which order it re-programs a new instance (pure logic and
fakes; tests/reliability/test_gobgpd_crash.py runs the same against real daemons)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from porter_lab import objects
from porter_lab.memory import MemoryCaches, MemoryGobgpd, MemoryKube
from porter_lb.gobgp_api import gobgp_pb2
from porter_lb.routing.bgp_config import (
    DEFAULT_DEFERRAL_TIME,
    GracefulRestart,
    PeerConfig,
    PeerExport,
    peer_spec_from_bgppeer,
)
from porter_lb.routing.gobgp import GoBGP, GoBGPError, peer_config_from_message, peer_message
from porter_lb.routing.routes import Route
from porter_lb.routing.speaker import GOBGP_RETRY_MAX, OTHER_RETRY_MAX, Speaker, retry_delay


@pytest.mark.parametrize(
    ("previous", "ceiling", "expected"),
    [
        (0.0, GOBGP_RETRY_MAX, 0.2),
        (0.2, GOBGP_RETRY_MAX, 0.4),
        (0.4, GOBGP_RETRY_MAX, GOBGP_RETRY_MAX),
        (OTHER_RETRY_MAX, GOBGP_RETRY_MAX, GOBGP_RETRY_MAX),  # after other failures
        (2.5, OTHER_RETRY_MAX, OTHER_RETRY_MAX),
    ],
)
def test_retry_delay(previous: float, ceiling: float, expected: float) -> None:
    assert retry_delay(previous, ceiling) == expected


def test_a_long_gobgpd_outage_never_waits_longer_than_the_gobgpd_ceiling() -> None:
    """A gobgpd back after minutes is tried again within GOBGP_RETRY_MAX (the target is its
    whole RIB within 2 s of it answering; the old 5 s ceiling missed it)."""
    delay, waits = 0.0, []
    for _ in range(1000):
        delay = retry_delay(delay, GOBGP_RETRY_MAX)
        waits.append(delay)
    assert max(waits) <= GOBGP_RETRY_MAX <= 1.0


def _peer(graceful_restart: dict[str, Any], hold: str = "9") -> PeerConfig:
    body = objects.bgp_peer("tor", "198.51.100.1", gracefulRestart=graceful_restart)
    body["spec"]["timers"]["config"]["holdTime"] = hold
    return peer_spec_from_bgppeer(body, {}).config


def test_graceful_restart_defaults_are_the_ones_gobgpd_reports_back() -> None:
    """gobgpd fills a 0 restart time with the hold time and a 0 deferral time with 360 s; a
    PeerConfig that left them 0 would differ from ListPeer's forever, and the UpdatePeer that
    follows resets the session (and the router drops its routes) at every full reconcile."""
    assert _peer({"enabled": True}).graceful_restart == GracefulRestart(
        True, 9, DEFAULT_DEFERRAL_TIME
    )
    assert _peer({"enabled": True}, hold="30").graceful_restart.restart_time == 30
    assert _peer(
        {"enabled": True, "restartTime": 120, "deferralTime": 20}
    ).graceful_restart == GracefulRestart(True, 120, 20)
    assert _peer({"enabled": False, "restartTime": 120}).graceful_restart == GracefulRestart()
    config = _peer({"enabled": True})
    assert peer_config_from_message(peer_message(config)) == config


def recording_gobgp(
    replies: dict[str, list[Any]] | None = None,
) -> tuple[GoBGP, list[Any]]:
    """A GoBGP adapter whose gRPC calls are recorded, not sent: (adapter, requests sent).
    `replies`: what a named call returns (a list, as a streaming call's replies)."""
    sent: list[Any] = []

    def call(name: str, request: Any, stream: bool = False) -> Any:
        sent.append(request)
        return (replies or {}).get(name)

    gobgp = GoBGP("unix:///nonexistent/gobgp.sock")
    gobgp._call = call  # type: ignore[method-assign]
    return gobgp, sent


def test_a_restarting_peer_is_added_with_the_restart_state_bit() -> None:
    gobgp, sent = recording_gobgp()
    with_gr = PeerConfig("198.51.100.1", 65000, graceful_restart=GracefulRestart(True, 120))
    gobgp.add_peer_config(with_gr, restarting=True)
    gobgp.add_peer_config(with_gr)
    gobgp.add_peer_config(PeerConfig("198.51.100.1", 65000), restarting=True)
    gobgp.close()
    assert [r.peer.graceful_restart.local_restarting for r in sent] == [True, False, False]
    assert sent[0].peer.afi_safis[0].mp_graceful_restart.config.enabled
    assert sent[0].peer.graceful_restart.deferral_time == DEFAULT_DEFERRAL_TIME


# A whole reconcile against fakes: what a new instance gets, in which order.

NODE = "node1"
IP = "203.0.113.7"


def _cluster(graceful_restart: bool = True, ip: str = IP) -> MemoryCaches:
    """One node, one BGP Eip, one BgpConf, one BgpPeer and one Service holding `ip`."""
    node = objects.node(NODE) | objects.node_status(address="198.51.100.11")
    peer = objects.bgp_peer("tor", "198.51.100.1")
    if graceful_restart:
        peer["spec"]["gracefulRestart"] = {"enabled": True, "restartTime": 120}
    return MemoryCaches(
        {
            "Node": [node],
            "Eip": [objects.eip("pool", "203.0.113.0/24")],
            "BgpConf": [objects.bgp_conf(65001)],
            "BgpPeer": [peer],
            "Service": [_service(ip)],
        }
    )


def _service(ip: str) -> dict[str, Any]:
    return objects.load_balancer_service("web", "default") | objects.load_balancer_status(ip)


def _speaker(gobgp: MemoryGobgpd, graceful_restart: bool = True) -> Speaker:
    return Speaker(_cluster(graceful_restart), gobgp, MemoryKube(), node_name=NODE)


@pytest.mark.parametrize("graceful_restart", [True, False])
def test_a_new_instance_gets_its_paths_before_its_peers(graceful_restart: bool) -> None:
    """Paths first: a session's first UPDATEs and End-of-RIB carry the whole RIB, so a
    graceful-restart helper has nothing stale left to drop that is still wanted."""
    gobgp = MemoryGobgpd()
    speaker = _speaker(gobgp, graceful_restart)
    speaker.reconcile_all()
    restarting = " restarting" if graceful_restart else ""
    assert gobgp.calls == ["start", "add 1 paths", f"add peer{restarting}"]
    assert gobgp.paths == {Route(f"{IP}/32", "0.0.0.0")}

    gobgp.calls.clear()
    speaker.reconcile_all()  # the same instance: nothing to do
    assert gobgp.calls == []

    gobgp.crash()  # gobgpd restarted empty
    speaker.resync()
    speaker.reconcile_all()
    assert gobgp.calls == ["start", "add 1 paths", f"add peer{restarting}"]
    assert gobgp.paths == {Route(f"{IP}/32", "0.0.0.0")}


@pytest.mark.parametrize(
    "change",
    [{"as": 65002}, {"routerId": "192.0.2.9"}, {"listenPort": 1790}],
    ids=["asn", "router-id", "listen-port"],
)
def test_a_changed_instance_restarts_gobgpd_and_keeps_the_node_accepting(
    change: dict[str, Any],
) -> None:
    """GoBGP 4 starts a new instance only in a new process: the speaker stops the old one
    letting graceful-restart peers keep its routes ("stop graceful"), asks for the restart,
    and programs the new gobgpd as after a crash (paths, then peers as a restarting speaker).
    The node never stops accepting the announced prefix meanwhile."""
    gobgp = MemoryGobgpd()
    cluster = _cluster()
    accepted: list[frozenset[str]] = []
    speaker = Speaker(
        cluster,
        gobgp,
        MemoryKube(),
        node_name=NODE,
        accept_prefixes=accepted.append,
        restart_gobgpd=gobgp.restart_process,
    )
    speaker.reconcile_all()
    gobgp.calls.clear()
    conf = objects.bgp_conf(65001)
    conf["spec"].update(change)
    cluster.put("BgpConf", conf)

    with pytest.raises(GoBGPError, match="restarting gobgpd"):
        speaker.reconcile_all()
    assert gobgp.calls == ["stop graceful", "restart"]
    speaker.reconcile_all()  # the loop retries at once
    assert gobgp.calls[2:] == ["start", "add 1 paths", "add peer restarting"]
    running = gobgp.running_global()
    assert running is not None
    expected = {"as": 65001, "listenPort": 179} | change
    assert (running.asn, running.listen_port) == (expected["as"], expected["listenPort"])
    if "routerId" in change:
        assert running.router_id == change["routerId"]
    assert gobgp.paths == {Route(f"{IP}/32", "0.0.0.0")}
    assert accepted and all(prefixes == {f"{IP}/32"} for prefixes in accepted)


def test_without_a_way_to_restart_gobgpd_the_speaker_says_so_and_keeps_trying() -> None:
    gobgp = MemoryGobgpd()
    cluster = _cluster()
    speaker = Speaker(cluster, gobgp, MemoryKube(), node_name=NODE)
    speaker.reconcile_all()
    cluster.put("BgpConf", objects.bgp_conf(65002))
    with pytest.raises(GoBGPError, match=r"gobgpd must be restarted .* no way to restart it"):
        speaker.reconcile_all()
    with pytest.raises(GoBGPError, match="server stopped"):
        speaker.reconcile_all()  # until something restarts the process
    gobgp.crash()
    speaker.reconcile_all()
    assert gobgp.running_asn() == 65002


def test_a_deleted_bgpconf_stops_the_instance_and_asks_for_a_fresh_gobgpd() -> None:
    gobgp = MemoryGobgpd()
    cluster = _cluster()
    accepted: list[frozenset[str]] = []
    speaker = Speaker(
        cluster,
        gobgp,
        MemoryKube(),
        node_name=NODE,
        accept_prefixes=accepted.append,
        restart_gobgpd=gobgp.restart_process,
    )
    speaker.reconcile_all()
    gobgp.calls.clear()
    cluster.delete("BgpConf", "default")
    speaker.reconcile_all()
    # Notifications to every peer (no graceful restart: the routes must go), a fresh process
    # for a later BgpConf, and the node stops accepting what is no longer announced.
    assert gobgp.calls == ["stop", "restart"]
    assert accepted[-1] == frozenset()
    cluster.put("BgpConf", objects.bgp_conf(65001))
    speaker.reconcile_all()
    assert gobgp.running_asn() == 65001


def test_the_node_accepts_before_announcing_and_stops_after_withdrawing() -> None:
    """With host rules: the node accepts a prefix before gobgpd announces it, and stops
    accepting one only after gobgpd withdrew it (docs/agent.md, "Order")."""
    journal: list[str] = []
    cluster = _cluster()
    speaker = Speaker(
        cluster,
        MemoryGobgpd(journal),
        MemoryKube(),
        node_name=NODE,
        accept_prefixes=lambda prefixes: journal.append("accept " + " ".join(sorted(prefixes))),
    )
    speaker.reconcile_all()
    # Accept what is about to be announced, announce, then accept what is announced now.
    assert journal[:4] == ["start", f"accept {IP}/32", "add 1 paths", f"accept {IP}/32"]
    journal.clear()

    cluster.put("Service", _service("203.0.113.8"))  # the Service's IP moves
    speaker.reconcile_services(["default/web"])
    assert journal == [
        f"accept {IP}/32 203.0.113.8/32",
        "add 1 paths",
        "withdraw 1 paths",
        "accept 203.0.113.8/32",
    ]


def test_a_central_speaker_sets_per_peer_export_before_adding_its_peers() -> None:
    """Two BgpPeers picking different nodes: the export filters are in gobgpd before any
    session can come up, set again after a gobgpd restart, and only when they change."""
    rack_a = objects.node("node1") | objects.node_status(address="198.51.100.11")
    rack_a["metadata"]["labels"] = {"rack": "a"}
    rack_b = objects.node("node2") | objects.node_status(address="198.51.100.12")
    rack_b["metadata"]["labels"] = {"rack": "b"}
    peers = []
    for name, address, rack in (("tor-a", "198.51.100.1", "a"), ("tor-b", "198.51.100.2", "b")):
        peer = objects.bgp_peer(name, address)
        peer["spec"]["nodeSelector"] = {"matchLabels": {"rack": rack}}
        peers.append(peer)
    cluster = MemoryCaches(
        {
            "Node": [rack_a, rack_b],
            "Eip": [objects.eip("pool", "203.0.113.0/24")],
            "BgpConf": [objects.bgp_conf(65001, "192.0.2.1")],
            "BgpPeer": peers,
        }
    )
    gobgp = MemoryGobgpd()
    speaker = Speaker(cluster, gobgp, MemoryKube(), mode="central")
    speaker.reconcile_all()
    assert gobgp.calls == ["start", "export filters", "add peer", "add peer"]
    assert gobgp.export is not None
    assert [(e.neighbor_address, e.next_hops) for e in gobgp.export] == [
        ("198.51.100.1", ("198.51.100.11",)),
        ("198.51.100.2", ("198.51.100.12",)),
    ]
    gobgp.calls.clear()
    speaker.reconcile_all()
    assert gobgp.calls == []  # unchanged: not set again

    gobgp.crash()
    speaker.resync()
    speaker.reconcile_all()
    assert gobgp.calls[:2] == ["start", "export filters"]


@pytest.mark.parametrize(
    ("previous", "expected"),
    [
        (None, ["UpdatePeerRequest"]),  # nothing known before: no reset
        (PeerConfig("198.51.100.1", 65000, hold_time=9, keepalive=3), ["UpdatePeerRequest"]),
        (
            PeerConfig("198.51.100.1", 65000, hold_time=90, keepalive=3),
            ["UpdatePeerRequest", "ResetPeerRequest"],
        ),
        (
            PeerConfig("198.51.100.1", 65000, hold_time=9, keepalive=30),
            ["UpdatePeerRequest", "ResetPeerRequest"],
        ),
        (  # connect retry is not negotiated: no reset
            PeerConfig("198.51.100.1", 65000, hold_time=9, keepalive=3, connect_retry=30),
            ["UpdatePeerRequest"],
        ),
    ],
)
def test_new_hold_time_or_keepalive_resets_the_session(
    previous: PeerConfig | None, expected: list[str]
) -> None:
    """gobgpd only stores new timers (they are negotiated in the OPEN): without a reset an
    edited hold time would apply at some later session, or never."""
    gobgp, sent = recording_gobgp()
    gobgp.update_peer(PeerConfig("198.51.100.1", 65000, hold_time=9, keepalive=3), previous)
    gobgp.close()
    assert [type(r).__name__ for r in sent] == expected
    if len(sent) == 2:
        assert (sent[1].address, sent[1].soft) == ("198.51.100.1", False)


def _held(
    neighbor: str, next_hops: list[str], default_action: int = gobgp_pb2.ROUTE_ACTION_ACCEPT
) -> dict[str, list[Any]]:
    """gobgpd's replies when it holds porter-lb's export policy for one peer, spelled as
    gobgpd spells it back (addresses as networks)."""
    to_peer = gobgp_pb2.MatchSet(type=gobgp_pb2.MatchSet.TYPE_ANY, name="porter-lb-peer-0")
    policy = gobgp_pb2.Policy(
        name="porter-lb-export",
        statements=[
            gobgp_pb2.Statement(
                name="porter-lb-peer-0-accept",
                conditions=gobgp_pb2.Conditions(neighbor_set=to_peer, next_hop_in_list=next_hops),
                actions=gobgp_pb2.Actions(route_action=gobgp_pb2.ROUTE_ACTION_ACCEPT),
            ),
            gobgp_pb2.Statement(
                name="porter-lb-peer-0-reject",
                conditions=gobgp_pb2.Conditions(neighbor_set=to_peer),
                actions=gobgp_pb2.Actions(route_action=gobgp_pb2.ROUTE_ACTION_REJECT),
            ),
        ],
    )
    neighbors = gobgp_pb2.DefinedSet(
        defined_type=gobgp_pb2.DEFINED_TYPE_NEIGHBOR, name="porter-lb-peer-0", list=[neighbor]
    )
    assignment = gobgp_pb2.PolicyAssignment(
        name="global",
        direction=gobgp_pb2.POLICY_DIRECTION_EXPORT,
        policies=[gobgp_pb2.Policy(name="porter-lb-export")],
        default_action=default_action,
    )
    return {
        "ListPolicyAssignment": [gobgp_pb2.ListPolicyAssignmentResponse(assignment=assignment)],
        "ListPolicy": [gobgp_pb2.ListPolicyResponse(policy=policy)],
        "ListDefinedSet": [gobgp_pb2.ListDefinedSetResponse(defined_set=neighbors)],
    }


NOTHING_HELD = {
    "ListPolicyAssignment": [
        gobgp_pb2.ListPolicyAssignmentResponse(assignment=gobgp_pb2.PolicyAssignment(name="global"))
    ]
}
ONE_PEER = (PeerExport("198.51.100.1", ("198.51.100.11", "198.51.100.12")),)
READ = ["ListPolicyAssignmentRequest"]
EXPORT = gobgp_pb2.POLICY_DIRECTION_EXPORT
READ_ALL = [*READ, "ListPolicyRequest", "ListDefinedSetRequest"]
SET = ["SetPoliciesRequest", "SetPolicyAssignmentRequest", "ResetPeerRequest"]
REMOVE = ["SetPolicyAssignmentRequest", "SetPoliciesRequest", "ResetPeerRequest"]


@pytest.mark.parametrize(
    ("held", "wanted", "expected"),
    [
        (NOTHING_HELD, None, READ),  # nothing to remove: no reset, no re-send
        (_held("198.51.100.1/32", ["198.51.100.11/32"]), None, READ_ALL + REMOVE),
        (NOTHING_HELD, ONE_PEER, READ + SET),
        # the same policy, read back in gobgpd's spelling: nothing sent
        (_held("198.51.100.1/32", ["198.51.100.12/32", "198.51.100.11/32"]), ONE_PEER, READ_ALL),
        # a node more, a node less, another neighbour, another default action: replaced
        (_held("198.51.100.1/32", ["198.51.100.11/32"]), ONE_PEER, READ_ALL + SET),
        (
            _held("198.51.100.1/32", ["198.51.100.11/32", "198.51.100.12/32", "198.51.100.13/32"]),
            ONE_PEER,
            READ_ALL + SET,
        ),
        (
            _held("198.51.100.2/32", ["198.51.100.11/32", "198.51.100.12/32"]),
            ONE_PEER,
            READ_ALL + SET,
        ),
        (
            _held(
                "198.51.100.1/32",
                ["198.51.100.11/32", "198.51.100.12/32"],
                gobgp_pb2.ROUTE_ACTION_REJECT,
            ),
            ONE_PEER,
            READ_ALL + SET,
        ),
    ],
)
def test_an_export_policy_gobgpd_already_holds_is_not_sent_again(
    held: dict[str, list[Any]], wanted: tuple[PeerExport, ...] | None, expected: list[str]
) -> None:
    """A restarted central speaker must not soft-reset every session for a policy gobgpd
    already holds (that re-sent all 2000 paths of tests/reliability/test_controller_faults.py,
    and every path to every leaf in tests/reliability/test_leaf_spine.py)."""
    gobgp, sent = recording_gobgp(held)
    gobgp.set_export_filters(wanted)
    gobgp.close()
    assert [type(r).__name__ for r in sent] == expected
    # gobgpd's SetPolicies ignores assignments: the policy is assigned on its own, or emptied
    for request in sent:
        if isinstance(request, gobgp_pb2.SetPoliciesRequest):
            assert not request.assignments
        if isinstance(request, gobgp_pb2.SetPolicyAssignmentRequest):
            assigned = request.assignment
            assert (assigned.name, assigned.direction) == ("global", EXPORT)
            assert assigned.default_action == gobgp_pb2.ROUTE_ACTION_ACCEPT
            names = [policy.name for policy in assigned.policies]
            assert names == ([] if wanted is None else ["porter-lb-export"])


def test_the_delay_from_watch_event_to_gobgpd_is_observed_once_per_change() -> None:
    """`porter_lb_speaker_event_to_gobgp_seconds`: one sample per change that moved a path,
    measured from the watch event's time; none for a change that moved nothing."""
    from porter_lb.telemetry import metrics

    def buckets() -> dict[str, float]:
        return {
            s.labels["le"]: s.value
            for s in metrics.EVENT_TO_GOBGP_SECONDS.collect()[0].samples
            if s.name.endswith("_bucket")
        }

    cluster = _cluster()
    speaker = Speaker(cluster, MemoryGobgpd(), MemoryKube(), node_name=NODE)
    speaker.reconcile_all()
    before = buckets()
    cluster.put("Service", _service("203.0.113.8"))  # the IP moves: one add, one withdraw
    speaker.reconcile_services(["default/web"], event_at=time.monotonic() - 0.002)
    after = buckets()
    assert after["+Inf"] == before["+Inf"] + 1
    assert after["0.001"] == before["0.001"]  # the event came 2 ms before: not within 1 ms
    speaker.reconcile_services(["default/web"], event_at=time.monotonic())  # nothing moves
    assert buckets() == after
