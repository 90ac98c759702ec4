"""porter.lb.frr_bgp through ansible-playbook, against a real FRR (zebra + bgpd) in a network
namespace, with a gobgpd on a node as the cluster's side of the session."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from porter_lab.ansible_run import run_task
from porter_lab.paths import REPO
from porter_lab.routers import Frr, RouterSpec
from porter_lab.speakers import Gobgpd
from porter_lab.topology import EIP_POOL, NODE_ASN, ROUTER_ASN, Topology, run_id
from porter_lab.waiting import wait_for
from porter_lb.routing.bgp_config import Bfd, PeerConfig


def play(
    tmp_path: Path, args: dict[str, Any], *, check: bool = False, diff: bool = False
) -> tuple[dict[str, Any], str]:
    """Run porter.lb.frr_bgp from the checkout as one task; its registered result and stdout."""
    result, done = run_task("porter.lb.frr_bgp", args, tmp_path, check=check, diff=diff)
    return result, done.stdout


def test_rendered_and_parsed_need_no_daemon(tmp_path: Path) -> None:
    config = {"asn": 65000, "ebgp_requires_policy": False, "maximum_paths": 4}
    config["neighbors"] = [{"address": "198.51.100.11", "remote_as": "65001"}]
    rendered, _ = play(tmp_path, {"state": "rendered", "config": config})
    assert rendered["rendered"] == (
        "router bgp 65000\n no bgp ebgp-requires-policy\n"
        " neighbor 198.51.100.11 remote-as 65001\n !\n address-family ipv4 unicast\n"
        "  maximum-paths 4\n exit-address-family\nexit\n!\n"
    )
    parsed, _ = play(tmp_path, {"state": "parsed", "running_config": rendered["rendered"]})
    assert parsed["parsed"]["maximum_paths"] == 4
    assert parsed["parsed"]["neighbors"][0]["remote_as"] == "65001"
    bad, _ = play(tmp_path, {"state": "rendered", "config": {**config, "router_id": "node"}})
    assert bad["failed"] and bad["msg"] == "config.router_id 'node': must be an IPv4 address"


FIXTURES = REPO / "ansible_collections/porter/lb/tests/unit/plugins/fixtures/frr"


def test_rendered_is_the_golden_text_and_parsed_reads_a_running_config(tmp_path: Path) -> None:
    """The golden files of the unit tests, through ansible-playbook: the password is hidden,
    and FRR's own show running-config (with lines not ours) parses to the returned shape."""
    nodes = json.loads((FIXTURES / "nodes.json").read_text())
    rendered, stdout = play(tmp_path, {"state": "rendered", "config": nodes})
    assert "s3cret" not in stdout
    golden = (FIXTURES / "rendered_nodes.cfg").read_text()
    assert rendered["rendered"].replace("s3cret", "********") == golden
    running = (FIXTURES / "running_nodes.cfg").read_text()
    parsed, _ = play(tmp_path, {"state": "parsed", "running_config": running})
    assert parsed["parsed"] == json.loads((FIXTURES / "parsed_nodes.json").read_text())


@pytest.fixture
def frr(bed_prerequisites: None, session_run: str) -> Iterator[tuple[Topology, Frr]]:
    """One node, and an FRR router with no `router bgp` at all: the module writes it."""
    topology = Topology(f"{session_run}{run_id()[:2]}", node_count=1).create()
    spec = RouterSpec(ROUTER_ASN, topology.router_address, neighbors=(), pools=())
    router = Frr(topology.router_ns, spec, bgpd_config="frr defaults traditional\n!\n")
    try:
        router.start()
        yield topology, router
    finally:
        router.stop()
        topology.destroy()


def test_applies_idempotently_with_check_diff_rollback_and_a_live_session(
    frr: tuple[Topology, Frr], start_gobgpd: Callable[[str], Gobgpd], tmp_path: Path
) -> None:
    topology, router = frr
    (node,) = topology.nodes
    speaker = start_gobgpd(node.netns).client
    assert speaker is not None
    speaker.start(asn=NODE_ASN, router_id=node.address, listen_port=179)
    speaker.add_peer(topology.router_address, ROUTER_ASN)

    def running() -> str:
        text = router.vtysh("show running-config")
        return text[text.index("frr defaults") :]

    config = {
        "asn": ROUTER_ASN,
        "router_id": topology.router_address,
        "keepalive": 3,
        "hold_time": 9,
        "maximum_paths": 8,
        "pools": [EIP_POOL],
        "neighbors": [
            {"address": node.address, "remote_as": str(NODE_ASN), "connect_retry": 1},
            # never comes up: only here to carry a password
            {"address": "198.51.100.99", "remote_as": "65099", "password": "s3cret-pw"},
        ],
    }
    args = {"config": config, "state": "overridden", "vty_socket": str(router.workdir)}
    empty = running()

    checked, _ = play(tmp_path, args, check=True)
    assert checked["changed"] and checked["commands"]
    assert running() == empty

    applied, stdout = play(tmp_path, args, diff=True)
    assert applied["changed"], applied
    assert f"+ neighbor {node.address} remote-as {NODE_ASN}" in stdout  # the diff, shown
    assert "s3cret-pw" not in stdout and "s3cret-pw" not in json.dumps(applied)
    assert "neighbor 198.51.100.99 password s3cret-pw" in running()
    assert "bgp bestpath as-path multipath-relax" in running()  # two neighbour ASNs
    configured = running()
    # Round trip against FRR's own text: each block the module renders is there verbatim, and
    # parsing the running configuration gives back what was applied.
    rendered, _ = play(tmp_path, {"state": "rendered", "config": config})
    for block in rendered["rendered"].split("!\n"):  # Ansible censors the no_log password
        assert block in configured.replace("s3cret-pw", "********")
    parsed, _ = play(tmp_path, {"state": "parsed", "running_config": configured})
    assert parsed["parsed"] == applied["after"]

    again, _ = play(tmp_path, args, diff=True)
    assert not again["changed"] and again["commands"] == []
    assert running() == configured

    wait_for(lambda: router.sessions().get(node.address) == "Established", 30, "the session")
    gathered, _ = play(tmp_path, {"state": "gathered", "vty_socket": str(router.workdir)})
    assert gathered["gathered"]["sessions"][node.address] == "Established"
    assert gathered["gathered"]["maximum_paths"] == 8
    assert gathered["gathered"]["neighbors"][1]["password"] == "********"

    bad = {**args, "config": {**config, "maximum_paths": 65}}
    failed, _ = play(tmp_path, bad)
    assert failed["failed"]
    assert failed["msg"] == "config.maximum_paths 65: must be between 1 and 64"
    assert running() == configured

    # Valid for the module, rejected by bgpd half-way (one listen range, two peer groups):
    # the first group is already in when the second fails, and must be taken out again.
    groups = [
        {"address": name, "peer_group": True, "remote_as": "external", "listen_ranges": [net]}
        for name, net in (("GROUP-A", "10.9.0.0/24"), ("GROUP-B", "10.9.0.0/24"))
    ]
    rejected, _ = play(
        tmp_path, {**args, "state": "merged", "config": {**config, "neighbors": groups}}
    )
    assert rejected["failed"], rejected
    assert "previous configuration restored" in rejected["msg"], rejected["msg"]
    assert running() == configured

    # merged: only what is given changes; the rest (pools, the other neighbour) stays.
    part = {"asn": ROUTER_ASN, "neighbors": [{**config["neighbors"][0], "description": "node1"}]}
    merged, _ = play(tmp_path, {**args, "state": "merged", "config": part})
    assert merged["changed"]
    assert merged["commands"] == [
        f"router bgp {ROUTER_ASN}",
        f"neighbor {node.address} description node1",
        "exit",
    ]
    assert "neighbor 198.51.100.99 remote-as 65099" in running()

    one = {"asn": ROUTER_ASN, "neighbors": [{"address": "198.51.100.99"}]}
    removed, _ = play(tmp_path, {**args, "state": "deleted", "config": one})
    assert removed["commands"] == [f"router bgp {ROUTER_ASN}", "no neighbor 198.51.100.99", "exit"]
    assert "198.51.100.99" not in running() and f"neighbor {node.address}" in running()

    deleted, _ = play(
        tmp_path,
        {"state": "deleted", "vty_socket": str(router.workdir), "config": {"neighbors": []}},
    )
    assert deleted["changed"]
    assert "router bgp" not in running() and "PORTER-LB" not in running()


# --- a neighbour's port and BFD ----------------------------------------------------------------

FAST = {"enabled": True, "transmit_interval": 100, "receive_interval": 200, "detect_multiplier": 5}
FAST_PROFILE = "PORTER-LB-BFD-TX100-RX200-M5"


def test_vtysh_dryrun_accepts_the_golden_port_and_bfd_config(tmp_path: Path) -> None:
    """vtysh's own parser (no daemon) on what the module renders for ports, BFD and
    profiles; and the rendered text through ansible-playbook is the golden file."""
    options = json.loads((FIXTURES / "bfd_port.json").read_text())
    rendered, _ = play(tmp_path, {"state": "rendered", "config": options})
    assert rendered["rendered"] == (FIXTURES / "rendered_bfd_port.cfg").read_text()
    config = tmp_path / "frr.conf"
    config.write_text(rendered["rendered"].replace("********", "s3cret"))
    checked = subprocess.run(
        ["vtysh", "--dryrun", "-f", str(config)], check=False, capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.fixture
def frr_bfdd(bed_prerequisites: None, session_run: str) -> Iterator[tuple[Topology, Frr]]:
    """One node, and an FRR router running bfdd too, with no `router bgp`."""
    topology = Topology(f"{session_run}{run_id()[:2]}", node_count=1).create()
    spec = RouterSpec(ROUTER_ASN, topology.router_address, neighbors=(), pools=())
    router = Frr(topology.router_ns, spec, bgpd_config="frr defaults traditional\n!\n", bfdd=True)
    try:
        router.start()
        yield topology, router
    finally:
        router.stop()
        topology.destroy()


def bfd_peers(router: Frr) -> dict[str, dict[str, Any]]:
    """bfdd's sessions by peer address (`show bfd peers json`)."""
    return {peer["peer"]: peer for peer in json.loads(router.vtysh("show bfd peers json") or "[]")}


def test_port_and_bfd_reach_a_speaker_on_1790_and_bfdd_holds_the_peer(
    frr_bfdd: tuple[Topology, Frr], start_gobgpd: Callable[[str], Gobgpd], tmp_path: Path
) -> None:
    """gobgpd listens on 1790 only and never connects itself (passive): the session comes up
    only if bgpd connects to port 1790. gobgpd runs BFD too (GoBGP 4's own): bfdd's session
    with the node comes up, with the profile's timers."""
    topology, router = frr_bfdd
    (node,) = topology.nodes
    speaker = start_gobgpd(node.netns).client
    assert speaker is not None
    speaker.start(asn=NODE_ASN, router_id=node.address, listen_port=1790)
    speaker.add_peer_config(
        PeerConfig(
            topology.router_address,
            ROUTER_ASN,
            hold_time=9,
            keepalive=3,
            connect_retry=1,
            passive=True,
            bfd=Bfd(True, 100, 100, 3),
        )
    )
    neighbor = {"address": node.address, "remote_as": str(NODE_ASN), "connect_retry": 1}
    config = {
        "asn": ROUTER_ASN,
        "router_id": topology.router_address,
        "pools": [EIP_POOL],
        "neighbors": [{**neighbor, "port": 1790, "bfd": FAST}],
    }
    args = {"config": config, "state": "overridden", "vty_socket": str(router.workdir)}

    applied, _ = play(tmp_path, args)
    assert applied["changed"], applied
    # the profile exists before any neighbour line names it
    commands = applied["commands"]
    start = commands.index("bfd")
    assert commands[start : start + 7] == [
        "bfd",
        f"profile {FAST_PROFILE}",
        "detect-multiplier 5",
        "transmit-interval 100",
        "receive-interval 200",
        "exit",
        "exit",
    ]
    assert start < commands.index(f"router bgp {ROUTER_ASN}")
    assert applied["after"]["neighbors"][0]["port"] == 1790
    assert applied["after"]["neighbors"][0]["bfd"] == FAST
    again, _ = play(tmp_path, args)
    assert not again["changed"] and again["commands"] == [], again

    wait_for(lambda: router.sessions().get(node.address) == "Established", 30, "session :1790")
    wait_for(lambda: bfd_peers(router).get(node.address, {}).get("status") == "up", 30, "BFD up")
    peer = bfd_peers(router)[node.address]
    assert (peer["detect-multiplier"], peer["transmit-interval"], peer["receive-interval"]) == (
        5,
        100,
        200,
    )

    # BFD off in gobgpd too
    speaker.update_peer(
        PeerConfig(
            topology.router_address,
            ROUTER_ASN,
            hold_time=9,
            keepalive=3,
            connect_retry=1,
            passive=True,
        )
    )
    # BFD off through merged: one `no neighbor ... bfd`, the profile goes
    off = {"asn": ROUTER_ASN, "neighbors": [{**neighbor, "bfd": {"enabled": False}}]}
    merged, _ = play(tmp_path, {**args, "state": "merged", "config": off})
    assert merged["commands"] == [
        f"router bgp {ROUTER_ASN}",
        f"no neighbor {node.address} bfd",
        "exit",
        "bfd",
        f"no profile {FAST_PROFILE}",
        "exit",
    ]
    wait_for(lambda: node.address not in bfd_peers(router), 30, "bfdd dropping the peer")
    assert FAST_PROFILE not in router.vtysh("show running-config")
    # gobgpd stops its BFD without an AdminDown, so bgpd may have ended the session once
    wait_for(
        lambda: router.sessions().get(node.address) == "Established", 30, "session after BFD off"
    )


@pytest.mark.parametrize("bfd", [FAST, {"enabled": True}], ids=["timers", "default timers"])
def test_bfd_without_bfdd_fails_before_anything_is_applied(
    frr: tuple[Topology, Frr], tmp_path: Path, bfd: dict[str, Any]
) -> None:
    """Any BFD line (a profile, or `neighbor X bfd` alone) needs bfdd: the module checks
    `show daemons` first and sends nothing."""
    topology, router = frr
    (node,) = topology.nodes
    before = router.vtysh("show running-config")
    neighbor = {"address": node.address, "remote_as": str(NODE_ASN), "bfd": bfd}
    config = {"asn": ROUTER_ASN, "ebgp_requires_policy": False, "neighbors": [neighbor]}
    args = {"config": config, "state": "overridden", "vty_socket": str(router.workdir)}
    failed, _ = play(tmp_path, args)
    assert failed["failed"], failed
    assert "bfdd does not run" in failed["msg"], failed["msg"]
    assert "nothing applied" in failed["msg"], failed["msg"]
    assert failed["changed"] is False, failed
    assert router.vtysh("show running-config") == before
