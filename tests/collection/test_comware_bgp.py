"""porter.lb.comware_bgp through ansible-playbook where no switch is needed (rendered, parsed,
bad input, a changing state without network_cli), and its docs through ansible-doc.

No Comware switch exists here: merged/replaced/overridden/deleted/gathered over
network_cli are covered only by the unit tests of the difference and of the cliconf
plugin (see docs/comware.md)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from porter_lab.ansible_run import BIN, environment, run_task
from porter_lab.paths import REPO

FIXTURES = REPO / "ansible_collections/porter/lb/tests/unit/plugins/fixtures/comware"


def play(tmp_path: Path, args: dict[str, Any]) -> dict[str, Any]:
    """Run porter.lb.comware_bgp from the checkout as one local task; its registered result."""
    result, done = run_task("porter.lb.comware_bgp", args, tmp_path)
    assert "s3cret" not in done.stdout
    return result


NODES = json.loads((FIXTURES / "nodes.json").read_text())


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
