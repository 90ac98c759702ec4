"""porter.lb.bird_bgp against a real BIRD in a network namespace, peering with a real gobgpd.

Each test runs `ansible-playbook` (the JSON callback) on one task of the module, from the
checkout, and checks what the daemon and the owned file show afterwards.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from porter_lab.ansible_run import run_task
from porter_lab.bird_include import IncludingBird
from porter_lab.paths import REPO
from porter_lab.speakers import Gobgpd
from porter_lab.topology import EIP_POOL, NODE_ASN, ROUTER_ASN, Topology, run_id
from porter_lab.waiting import wait_for
from porter_lb.routing.bgp_config import Bfd, PeerConfig


def play(
    task: dict[str, Any], *, check: bool = False, diff: bool = False
) -> tuple[int, dict[str, Any]]:
    """Run one porter.lb.bird_bgp task; return 1 if it failed (else 0) and its result."""
    workdir = Path(tempfile.mkdtemp(prefix="bird_bgp_play_"))
    try:
        result, _ = run_task(
            "porter.lb.bird_bgp",
            task,
            workdir,
            check=check,
            diff=diff,
            cwd=REPO,
        )
    finally:
        shutil.rmtree(workdir)
    return (1 if result.get("failed") else 0), result


@pytest.fixture
def lab(bed_prerequisites: None, session_run: str, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """One router namespace running BIRD (main file includes the module's file), one node
    namespace running gobgpd that peers with it."""
    topo = Topology(f"{session_run}{run_id()[:2]}", node_count=1).create()
    bird = IncludingBird(topo.router_ns, tmp_path / "bird")
    speaker = Gobgpd(topo.nodes[0].netns, tmp_path / "gobgpd")
    try:
        bird.start()
        gobgp = speaker.start()
        node = topo.nodes[0]
        gobgp.start(asn=NODE_ASN, router_id=node.address, listen_port=179)
        gobgp.add_peer(topo.router_address, ROUTER_ASN)
        files = {
            "path": str(bird.included),
            "bird_config": str(bird.main_config),
            "socket": str(bird.socket),
        }
        config = {
            "local_as": ROUTER_ASN,
            "router_id": topo.router_address,
            "neighbors": [{"name": node.name, "address": node.address, "as": NODE_ASN}],
            "pools": [EIP_POOL],
        }
        yield {"bird": bird, "files": files, "config": config, "topology": topo}
    finally:
        speaker.stop()
        bird.stop()
        topo.destroy()


def bgp_state(bird: IncludingBird, name: str) -> str:
    for line in bird.birdc("show protocols").splitlines():
        fields = line.split()
        if fields and fields[0] == name and len(fields) >= 6:
            return fields[5]
    return ""


def test_apply_is_idempotent_checked_diffed_and_the_session_comes_up(
    lab: dict[str, Any],
) -> None:
    bird, files, config = lab["bird"], lab["files"], lab["config"]
    empty = Path(files["path"]).read_text()

    rc, checked = play({**files, "config": config}, check=True, diff=True)
    assert rc == 0 and checked["changed"] is True, checked
    assert "neighbor 198.51.100.11 as 65001" in checked["diff"]["after"]
    assert Path(files["path"]).read_text() == empty, "check mode changed the file"
    assert bgp_state(bird, "node1") == ""

    rc, first = play({**files, "config": config}, diff=True)
    assert rc == 0 and first["changed"] is True, first
    assert first["diff"]["before"] == empty
    assert "Reconfigured" in first["birdc"]
    rc, second = play({**files, "config": config})
    assert rc == 0 and second["changed"] is False, second

    wait_for(lambda: bgp_state(bird, "node1") == "Established", 30, "session with gobgpd")
    rc, gathered = play({**files, "state": "gathered"})
    assert rc == 0 and gathered["changed"] is False
    # gathered spells out the defaults: port 179, BFD off
    assert gathered["gathered"]["neighbors"] == [
        {
            "name": "node1",
            "address": "198.51.100.11",
            "as": 65001,
            "port": 179,
            "bfd": {"enabled": False},
        }
    ]
    (session,) = [s for s in gathered["sessions"] if s["name"] == "node1"]
    assert session["neighbor"] == "198.51.100.11"
    assert session["state"] == "Established"
    assert session["neighbor_as"] == NODE_ASN


def test_bad_input_fails_clearly_and_changes_nothing(lab: dict[str, Any]) -> None:
    files, config = lab["files"], lab["config"]
    before = Path(files["path"]).read_text()
    bad = {**config, "pools": ["203.0.113.1/24"]}
    rc, result = play({**files, "config": bad})
    assert rc != 0 and result["failed"] is True
    assert "pools" in result["msg"] and "203.0.113.1/24" in result["msg"], result["msg"]
    bad_as = {**config, "neighbors": [{"name": "node1", "address": "198.51.100.11", "as": 0}]}
    rc, result = play({**files, "config": bad_as})
    assert rc != 0 and "neighbors[0].as" in result["msg"], result["msg"]
    assert Path(files["path"]).read_text() == before


def test_a_config_bird_rejects_is_reported_and_not_applied(lab: dict[str, Any]) -> None:
    bird, files, config = lab["bird"], lab["files"], lab["config"]
    rc, _ = play({**files, "config": config})
    assert rc == 0
    applied = Path(files["path"]).read_text()
    # `lab_static` is a protocol of the main file: BIRD rejects a second protocol of that name.
    clash = {**config, "neighbors": [{"name": "lab_static", "address": "198.51.100.11", "as": 1}]}
    rc, result = play({**files, "config": clash, "state": "overridden"})
    assert rc != 0 and "BIRD rejected the configuration" in result["msg"], result
    assert "lab_static" in result["msg"]
    assert Path(files["path"]).read_text() == applied
    assert "lab_static" not in bird.birdc("show protocols").split("node1")[-1]


def test_a_failed_configure_is_rolled_back(lab: dict[str, Any], tmp_path: Path) -> None:
    files, config = lab["files"], lab["config"]
    before = Path(files["path"]).read_text()
    wrong_socket = {**files, "socket": str(tmp_path / "no-such.ctl")}
    rc, result = play({**wrong_socket, "config": config})
    assert rc != 0 and result["rolled_back"] is True, result
    assert "configure failed" in result["msg"] and "rolled back" in result["msg"]
    assert Path(files["path"]).read_text() == before


def test_deleted_removes_a_neighbour_and_the_whole_config(lab: dict[str, Any]) -> None:
    bird, files, config = lab["bird"], lab["files"], lab["config"]
    two = {
        **config,
        "neighbors": [*config["neighbors"], {"name": "spare", "address": "198.51.100.99", "as": 1}],
    }
    assert play({**files, "config": two})[1]["changed"] is True
    rc, result = play({**files, "config": {"neighbors": [{"name": "spare"}]}, "state": "deleted"})
    assert rc == 0 and result["changed"] is True
    assert [n["name"] for n in result["after"]["neighbors"]] == ["node1"]
    assert bgp_state(bird, "spare") == ""
    rc, result = play({**files, "state": "deleted"})
    assert rc == 0 and result["changed"] is True and result["after"] is None
    assert play({**files, "state": "deleted"})[1]["changed"] is False


def test_rendered_and_parsed_need_no_daemon(tmp_path: Path) -> None:
    config = {
        "local_as": 65000,
        "neighbors": [{"name": "node1", "address": "198.51.100.11", "as": 65001}],
        "neighbor_range": {"name": "nodes", "prefix": "198.51.100.0/24", "as": 65001},
        "pools": ["203.0.113.0/24"],
        "add_paths_rx": True,
        "password": "secret1",
    }
    missing = {"path": str(tmp_path / "x.conf"), "socket": str(tmp_path / "none.ctl")}
    rc, rendered = play({**missing, "config": config, "state": "rendered"})
    assert rc == 0 and rendered["changed"] is False
    assert "neighbor range 198.51.100.0/24 as 65001" in rendered["rendered"]
    assert "secret1" not in json.dumps(rendered)
    text = rendered["rendered"].replace("********", "secret1")
    rc, parsed = play({**missing, "running_config": text, "state": "parsed"})
    assert rc == 0
    assert parsed["parsed"]["neighbors"] == [
        {
            "name": "node1",
            "address": "198.51.100.11",
            "as": 65001,
            "port": 179,
            "bfd": {"enabled": False},
        }
    ]
    # A range has no port of its own; BFD off is written out as the default.
    assert parsed["parsed"]["neighbor_range"] == {
        **config["neighbor_range"],
        "bfd": {"enabled": False},
    }
    assert parsed["parsed"]["password"] == "********"
    assert not (tmp_path / "x.conf").exists()


FIXTURES = REPO / "ansible_collections/porter/lb/tests/unit/plugins/fixtures/bird"


def test_rendered_is_the_golden_text_and_parsed_reads_a_running_config(tmp_path: Path) -> None:
    """The golden files of the unit tests, through ansible-playbook (password hidden)."""
    missing = {"path": str(tmp_path / "x.conf"), "socket": str(tmp_path / "none.ctl")}
    nodes = json.loads((FIXTURES / "nodes.json").read_text())
    rc, rendered = play({**missing, "config": nodes, "state": "rendered"})
    assert rc == 0 and "s3cret" not in json.dumps(rendered)
    assert rendered["rendered"] == (FIXTURES / "rendered_nodes.conf").read_text()
    running = (FIXTURES / "running_nodes.conf").read_text()
    rc, parsed = play({**missing, "running_config": running, "state": "parsed"})
    assert rc == 0
    assert parsed["parsed"] == json.loads((FIXTURES / "parsed_nodes.json").read_text())


def test_neighbor_range_accepts_the_node(lab: dict[str, Any]) -> None:
    bird, files, config = lab["bird"], lab["files"], lab["config"]
    dynamic = {
        **{k: v for k, v in config.items() if k != "neighbors"},
        "neighbor_range": {"name": "nodes", "prefix": "198.51.100.0/24", "as": NODE_ASN},
    }
    rc, result = play({**files, "config": dynamic, "state": "overridden"})
    assert rc == 0 and result["changed"] is True, result
    # BIRD spawns one protocol per peer that connects from the range: nodes1, nodes2, ...
    wait_for(lambda: bgp_state(bird, "nodes1") == "Established", 30, "dynamic session")
    rc, gathered = play({**files, "state": "gathered"})
    assert rc == 0
    by_name = {s["name"]: s for s in gathered["sessions"]}
    assert by_name["nodes1"]["neighbor"] == "198.51.100.11"
    assert by_name["nodes1"]["state"] == "Established"


# --- a neighbour's port and BFD ----------------------------------------------------------------


def test_bird_parses_the_golden_port_and_bfd_file(tmp_path: Path) -> None:
    """The file the module writes for ports and BFD, through `bird -p -c` (parse only),
    included from a main file as bird_bgp's own check does; and rendered through
    ansible-playbook (the password hidden)."""
    options = json.loads((FIXTURES / "bfd_port.json").read_text())
    rc, rendered = play({"config": options, "state": "rendered"})
    assert rc == 0 and rendered["rendered"] == (FIXTURES / "rendered_bfd_port.conf").read_text()
    included = tmp_path / "porter-lb-bgp.conf"
    included.write_text((FIXTURES / "running_bfd_port.conf").read_text())
    main = tmp_path / "bird.conf"
    main.write_text(f'router id 198.51.100.1;\nprotocol device {{}}\ninclude "{included}";\n')
    checked = subprocess.run(
        ["bird", "-p", "-c", str(main)], check=False, capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stderr


def test_port_and_bfd_reach_a_speaker_on_1790_and_bird_runs_bfd_for_it(
    bed_prerequisites: None, session_run: str, tmp_path: Path
) -> None:
    """gobgpd listens on 1790 only and never connects itself (passive): the session can only
    come up if BIRD opens it to port 1790. gobgpd runs BFD with BIRD too (GoBGP 4's own), so
    BIRD's BFD session with the node comes Up only if the module rendered BFD for it."""
    topo = Topology(f"{session_run}{run_id()[:2]}", node_count=1).create()
    bird = IncludingBird(topo.router_ns, tmp_path / "bird")
    speaker = Gobgpd(topo.nodes[0].netns, tmp_path / "gobgpd")
    try:
        bird.start()
        gobgp = speaker.start()
        (node,) = topo.nodes
        gobgp.start(asn=NODE_ASN, router_id=node.address, listen_port=1790)
        gobgp.add_peer_config(
            PeerConfig(
                topo.router_address,
                ROUTER_ASN,
                hold_time=9,
                keepalive=3,
                connect_retry=1,
                passive=True,
                bfd=Bfd(True, 100, 100, 3),
            )
        )
        files = {
            "path": str(bird.included),
            "bird_config": str(bird.main_config),
            "socket": str(bird.socket),
        }
        fast = {"enabled": True, "transmit_interval": 100, "receive_interval": 200}
        neighbor = {"name": node.name, "address": node.address, "as": NODE_ASN, "port": 1790}
        config = {
            "local_as": ROUTER_ASN,
            "router_id": topo.router_address,
            "neighbors": [{**neighbor, "bfd": fast}],
            "pools": [EIP_POOL],
        }
        rc, first = play({**files, "config": config}, diff=True)
        assert rc == 0 and first["changed"] is True, first
        assert "protocol bfd porter_bfd {}" in first["diff"]["after"]
        assert f"neighbor {node.address} port 1790 as {NODE_ASN}; bfd {{" in first["diff"]["after"]
        rc, second = play({**files, "config": config})
        assert rc == 0 and second["changed"] is False, second
        assert second["after"]["neighbors"][0]["bfd"] == {**fast, "detect_multiplier": 3}

        wait_for(lambda: bgp_state(bird, node.name) == "Established", 30, "session to :1790")
        wait_for(lambda: bfd_state(bird, node.address) == "Up", 30, "BIRD's BFD session Up")
        assert "porter_bfd" in bird.birdc("show protocols")

        # BFD off on both sides: the session's BFD and the bfd protocol go; BGP carries on
        gobgp.update_peer(
            PeerConfig(
                topo.router_address,
                ROUTER_ASN,
                hold_time=9,
                keepalive=3,
                connect_retry=1,
                passive=True,
            )
        )
        rc, off = play({**files, "config": {**config, "neighbors": [neighbor]}})
        assert rc == 0 and off["changed"] is True, off
        assert "porter_bfd" not in Path(files["path"]).read_text()
        wait_for(lambda: "porter_bfd" not in bird.birdc("show protocols"), 30, "no bfd protocol")
        # gobgpd stops its BFD without an AdminDown, so BIRD may have ended the session once
        wait_for(lambda: bgp_state(bird, node.name) == "Established", 30, "session after BFD off")
    finally:
        speaker.stop()
        bird.stop()
        topo.destroy()


def bfd_state(bird: IncludingBird, address: str) -> str:
    """The state column of `show bfd sessions` for `address` ("" if BIRD has none)."""
    for line in bird.birdc("show bfd sessions").splitlines():
        fields = line.split()
        if fields and fields[0] == address and len(fields) >= 3:
            return fields[2]
    return ""
