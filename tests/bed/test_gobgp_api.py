"""What porter-lb relies on in gobgpd's gRPC API, on the real gobgpd tools/gobgp pins.

The adapter (`porter_lb.routing.gobgp`) only translates; these tests state, on a running
gobgpd, the behaviour the speaker builds on: paths come back as they were added (prefix, next
hop, path identifier; IPv6 next hops through MP_REACH_NLRI), named withdrawals remove only
those paths, a peer's configuration reads back as it was given, and what StopBgp leaves.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from porter_lab.speakers import Gobgpd
from porter_lab.topology import Topology
from porter_lb.model.resources import BgpAttributes
from porter_lb.routing import grpc_client
from porter_lb.routing.bgp_config import (
    Bfd,
    GlobalConfig,
    GracefulRestart,
    PeerConfig,
    global_differs,
)
from porter_lb.routing.gobgp import GoBGP, GoBGPError
from porter_lb.routing.routes import Route

INSTANCE = GlobalConfig(asn=65001, router_id="198.51.100.11", listen_port=-1)


def test_paths_read_back_as_added_and_withdrawn_by_name(
    topology: Topology, start_gobgpd: Callable[[str], Gobgpd]
) -> None:
    gobgp = start_gobgpd(topology.nodes[0].netns).client
    assert gobgp is not None
    assert gobgp.running_global() is None  # no instance before StartBgp
    gobgp.start_global(INSTANCE)
    running = gobgp.running_global()
    assert running is not None and not global_differs(running, INSTANCE)  # as the speaker asks
    two_hops = [
        Route("203.0.113.10/32", "198.51.100.11", 1),
        Route("203.0.113.10/32", "198.51.100.12", 2),
    ]
    v6 = Route("2001:db8:f::10/128", "2001:db8::11", 0)
    gobgp.add_route(two_hops[0])  # unary AddPath
    assert gobgp.add_routes([two_hops[1], v6]) == 2  # a few: unary AddPath calls
    assert gobgp.local_routes() == [*two_hops, v6]
    assert gobgp.rib_routes() == two_hops  # IPv4 by default; nothing received

    gobgp.withdraw_routes([two_hops[1]])  # only the path named (prefix + identifier)
    gobgp.delete_route(v6)
    assert gobgp.local_routes() == [two_hops[0]]

    # Many paths go in one AddPathStream call, in chunks of `batch`; so do their withdrawals.
    many = [Route(f"203.0.113.{100 + i}/32", "198.51.100.11", 0) for i in range(30)]
    assert gobgp.add_routes(many, batch=7) == 30
    assert gobgp.local_routes() == sorted([two_hops[0], *many], key=lambda r: (r.prefix,))
    assert gobgp.withdraw_routes(many[:20], batch=7) == 20
    assert gobgp.local_routes() == sorted([two_hops[0], *many[20:]], key=lambda r: (r.prefix,))
    gobgp.withdraw_routes(many[20:])
    assert gobgp.local_routes() == [two_hops[0]]

    # A pool's attributes ride along and read back as given (nothing added by gobgpd).
    tagged = Route(
        "203.0.113.20/32", "198.51.100.11", 0, BgpAttributes((4259840100,), ((65000, 1, 2),), 200)
    )
    gobgp.add_routes([tagged])
    assert tagged in gobgp.local_routes()
    gobgp.withdraw_routes([tagged])

    many = [Route(f"10.0.{i // 256}.{i % 256}/32", "198.51.100.11", 0) for i in range(2000)]
    assert gobgp.add_routes(many) == 2000
    assert len(gobgp.routes()) == 2001
    gobgp.withdraw_routes(many)
    assert gobgp.routes() == [two_hops[0]]


def test_peer_configuration_reads_back_as_given(
    topology: Topology, start_gobgpd: Callable[[str], Gobgpd]
) -> None:
    gobgp = start_gobgpd(topology.nodes[0].netns).client
    assert gobgp is not None
    gobgp.start_global(INSTANCE)
    # As gobgpd reports them back: a local ASN of 0 becomes the instance's, and graceful
    # restart is given in full (bgp_config.GracefulRestart).
    wanted = PeerConfig(
        neighbor_address=topology.router_address,
        peer_asn=65000,
        local_asn=INSTANCE.asn,
        hold_time=9,
        keepalive=3,
        connect_retry=1,
        families=(4,),
        add_paths_send_max=8,
        graceful_restart=GracefulRestart(True, 120, 360),
    )
    gobgp.add_peer_config(wanted, restarting=True)
    assert gobgp.peer_configs() == {wanted.neighbor_address: wanted}
    (status,) = gobgp.peers()
    assert (status.neighbor_address, status.peer_asn) == (wanted.neighbor_address, 65000)
    assert status.session_state in {"idle", "connect", "active"}  # no router runs here

    longer = PeerConfig(**{**wanted.__dict__, "hold_time": 15, "keepalive": 5})
    gobgp.update_peer(longer)
    assert gobgp.peer_configs() == {wanted.neighbor_address: longer}
    gobgp.delete_peer(wanted.neighbor_address)
    assert gobgp.peers() == []


def test_every_applied_peer_field_reads_back_as_given(
    topology: Topology, start_gobgpd: Callable[[str], Gobgpd]
) -> None:
    """The fields porter-lb applies from a BgpPeer come back from ListPeer as they were given
    (else the speaker would call UpdatePeer, and reset the session, at every reconcile); an
    admin-down peer stays Idle."""
    node = topology.nodes[0]
    gobgp = start_gobgpd(node.netns).client
    assert gobgp is not None
    gobgp.start_global(INSTANCE)
    wanted = PeerConfig(
        neighbor_address=topology.router_address,
        peer_asn=65000,
        local_asn=INSTANCE.asn,
        port=1790,
        hold_time=9,
        keepalive=3,
        connect_retry=1,
        graceful_restart=GracefulRestart(
            True, 120, 360, helper_only=True, notification_enabled=True
        ),
        bfd=Bfd(True, 100, 50, 4),
        admin_down=True,
        description="rack 1 leaf",
        allow_own_asn=1,
        replace_peer_asn=True,
        remove_private=2,
        local_address=node.address,
        tcp_mss=1400,
    )
    gobgp.add_peer_config(wanted)
    assert gobgp.peer_configs() == {wanted.neighbor_address: wanted}
    (status,) = gobgp.peers()
    assert status.session_state == "idle"
    up = PeerConfig(**{**wanted.__dict__, "admin_down": False, "local_address": ""})
    gobgp.update_peer(up)
    assert gobgp.peer_configs() == {wanted.neighbor_address: up}


def test_stop_bgp_ends_the_server_until_gobgpd_restarts(
    topology: Topology, start_gobgpd: Callable[[str], Gobgpd]
) -> None:
    """GoBGP 4 (unlike 3.10) ends its server loop on StopBgp: the process keeps answering
    gRPC, but every call fails until it is restarted, StartBgp included."""
    speaker = start_gobgpd(topology.nodes[0].netns)
    gobgp = speaker.client
    assert gobgp is not None
    gobgp.start_global(INSTANCE)
    gobgp.stop_bgp()
    with pytest.raises(GoBGPError, match="server stopped"):
        gobgp.start_global(INSTANCE)
    assert speaker.daemon is not None and speaker.daemon.running()
    speaker.stop()
    gobgp = speaker.start()
    gobgp.start_global(INSTANCE)
    assert gobgp.running_asn() == INSTANCE.asn


def test_flow_control_and_reconnection_of_porter_lbs_grpc_client(
    topology: Topology, start_gobgpd: Callable[[str], Gobgpd], monkeypatch: pytest.MonkeyPatch
) -> None:
    """porter-lb's own gRPC client (routing/grpc_client.py) against gobgpd's Go server: a
    client stream and a server stream far larger than the windows both ways (ours shrunk to
    128 KiB here, so it is topped up many times), and a gobgpd restarted under a GoBGP object
    is reached by its next call, on a fresh connection, with no error in between."""
    monkeypatch.setattr(grpc_client, "WINDOW", 128 << 10)
    speaker = start_gobgpd(topology.nodes[0].netns)
    gobgp = GoBGP(speaker.target)  # opened under the small window
    gobgp.start_global(INSTANCE)
    many = [Route(f"10.{i // 250}.{i % 250}.1/32", "198.51.100.11", 0) for i in range(5000)]
    assert gobgp.add_routes(many, batch=500) == 5000  # ~400 KiB of requests
    assert gobgp.local_routes() == sorted(many, key=lambda r: r.prefix)  # ~500 KiB of replies
    assert gobgp.withdraw_routes(many) == 5000
    assert gobgp.local_routes() == []

    speaker.stop()
    with pytest.raises(GoBGPError, match="UNAVAILABLE"):
        gobgp.running_asn()
    speaker.start()
    assert gobgp.running_asn() == 0  # the fresh gobgpd, no instance yet
    gobgp.close()
