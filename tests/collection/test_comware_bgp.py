"""porter.lb.comware_bgp through ansible-playbook where no switch is needed (rendered, parsed,
bad input, a changing state without network_cli), and its docs through ansible-doc.

No Comware switch exists here: merged/replaced/overridden/deleted/gathered over
network_cli are covered only by the unit tests of the difference and of the cliconf
plugin (see docs/comware.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
FIXTURES = REPO / "ansible_collections/porter/lb/tests/unit/plugins/fixtures/comware"


def environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    return env | {"ANSIBLE_COLLECTIONS_PATH": str(REPO), "ANSIBLE_NOCOLOR": "1"}


def play(tmp_path: Path, args: dict[str, Any]) -> dict[str, Any]:
    """Run porter.lb.comware_bgp from the checkout as one local task; its registered result."""
    out = tmp_path / "result.json"
    out.unlink(missing_ok=True)
    tasks = [
        {"porter.lb.comware_bgp": args, "register": "result", "ignore_errors": True},
        {"ansible.builtin.copy": {"content": "{{ result | to_json }}", "dest": str(out)}},
    ]
    playbook = tmp_path / "play.yml"
    playbook.write_text(json.dumps([{"hosts": "localhost", "gather_facts": False, "tasks": tasks}]))
    command = [
        str(BIN / "ansible-playbook"),
        "-i",
        "localhost,",
        "-c",
        "local",
        "-e",
        f"ansible_python_interpreter={sys.executable}",
        str(playbook),
    ]
    run = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=120,
        env=environment(),
        check=False,
        cwd=tmp_path,
    )
    assert run.returncode == 0, f"{run.stdout}\n{run.stderr}"
    assert "s3cret" not in run.stdout
    return json.loads(out.read_text())


NODES = {
    "asn": 65000,
    "router_id": "198.51.100.1",
    "keepalive": 3,
    "hold_time": 9,
    "graceful_restart": True,
    "maximum_paths": 8,
    "maximum_paths_for": "ebgp",
    "pools": ["203.0.113.0/24"],
    "neighbors": [
        {
            "address": "198.51.100.99",
            "remote_as": "65099",
            "description": "central speaker",
            "ebgp_max_hop": 2,
        },
        {
            "address": "NODES",
            "peer_group": True,
            "remote_as": "65001",
            "connect_interface": "Vlan-interface100",
            "password": "s3cret",
            "additional_paths_receive": True,
            "listen_ranges": ["198.51.100.0/24"],
        },
    ],
}


def test_rendered_is_the_golden_text_and_parsed_reads_a_running_config(tmp_path: Path) -> None:
    rendered = play(tmp_path, {"state": "rendered", "config": NODES})
    golden = (FIXTURES / "rendered_nodes.cfg").read_text()
    # rendered shows the password (it is what would be sent); the golden file has it masked
    assert rendered["rendered"].replace("simple s3cret", "simple ********") == golden
    running = (FIXTURES / "running_nodes.cfg").read_text()
    parsed = play(tmp_path, {"state": "parsed", "running_config": running})["parsed"]
    assert parsed["asn"] == 65000 and parsed["maximum_paths"] == 8
    assert [n["address"] for n in parsed["neighbors"]] == ["NODES", "192.0.2.254", "198.51.100.99"]
    assert parsed["neighbors"][0]["password"] == "********"
    assert parsed["neighbors"][0]["listen_ranges"] == ["198.51.100.0/24"]


def test_bad_input_names_the_field_and_the_rule(tmp_path: Path) -> None:
    bad = play(tmp_path, {"state": "rendered", "config": {**NODES, "maximum_paths": 64}})
    assert bad["failed"] and bad["msg"] == "config.maximum_paths 64: must be between 1 and 32"
    group = {**NODES["neighbors"][1], "remote_as": "external"}
    bad = play(tmp_path, {"state": "rendered", "config": {**NODES, "neighbors": [group]}})
    assert bad["msg"] == (
        "config.neighbors[0].remote_as 'external': dynamic peers take their AS from the group: "
        "give the group an AS number"
    )


def test_a_changing_state_without_network_cli_says_what_it_needs(tmp_path: Path) -> None:
    result = play(tmp_path, {"state": "merged", "config": {"asn": 65000}})
    assert result["failed"]
    assert result["msg"] == (
        "state=merged needs connection: ansible.netcommon.network_cli with "
        "ansible_network_os: porter.lb.comware"
    )


def test_module_and_plugins_are_documented(tmp_path: Path) -> None:
    for args in (
        ["porter.lb.comware_bgp"],
        ["-t", "cliconf", "porter.lb.comware"],
    ):  # ansible-doc has no terminal type; the terminal plugin is unit-tested
        run = subprocess.run(
            [str(BIN / "ansible-doc"), *args],
            capture_output=True,
            text=True,
            timeout=120,
            env=environment(),
            check=False,
            cwd=tmp_path,
        )
        assert run.returncode == 0, run.stderr
        assert "NOT RUN AGAINST A REAL SWITCH" in run.stdout or "not yet" in run.stdout
