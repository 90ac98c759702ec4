"""The one-command demo, end to end, from a clean state: `porter-lab demo` (what
scripts/demo.sh runs after scripts/setup.sh) on a lab of its own (its own state directory and
namespace prefix, so it never meets `scripts/lab.sh`'s lab or another test's), then
`playbooks/site.yml` a second time, then `porter-lab down`.

- the summary: the Service's EIP lies in the lab pool, the router's route to it has two next
  hops (node1, node2), node1 and node2 each served >= 20 of the 100 requests and node3 none,
  no request failed, the route audit is in sync;
- the second site.yml changes nothing (PLAY RECAP changed=0 on every host);
- after `down`: no namespace of the lab, no process naming its state directory.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from porter_lab import netns
from porter_lab.ansible_run import recaps
from porter_lab.topology import PREFIX_ROOT, run_id
from porter_lab.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
POOL_FIRST, POOL_LAST = "203.0.113.100", "203.0.113.199"
NODE1, NODE2 = "198.51.100.11", "198.51.100.12"


def lab_processes(state_dir: Path) -> list[str]:
    """Command lines of the running processes that name the lab's state directory."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(state_dir) in cmdline:
            found.append(f"{proc.name}: {cmdline}")
    return found


@pytest.fixture
def demo_lab(tmp_path: Path, bed_prerequisites: None) -> Iterator[dict[str, str]]:
    run = "d" + run_id()
    env = {
        **os.environ,
        "PORTER_LB_LAB_DIR": str(tmp_path / "lab"),
        "PORTER_LB_LAB_RUN": run,
        "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
    }
    for key in ("ANSIBLE_COLLECTIONS_PATH", "ANSIBLE_CONFIG", "K8S_AUTH_KUBECONFIG"):
        env.pop(key, None)
    try:
        yield env
    finally:
        subprocess.run(
            [str(BIN / "porter-lab"), "down"], env=env, timeout=300, check=False,
            capture_output=True,
        )  # fmt: skip
        netns.remove_all(f"{PREFIX_ROOT}{run}-")


def test_demo_end_to_end_then_site_again_changes_nothing(demo_lab: dict[str, str]) -> None:
    env = demo_lab
    state_dir = Path(env["PORTER_LB_LAB_DIR"])
    demo = subprocess.run(
        [str(BIN / "porter-lab"), "demo"],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    print(demo.stdout)
    assert demo.returncode == 0, f"porter-lab demo failed:\n{demo.stdout}\n{demo.stderr}"
    for step in range(1, 6):
        assert f"[{step}/5]" in demo.stdout, demo.stdout

    summary = json.loads((state_dir / "demo-summary.json").read_text())
    eip = ipaddress.ip_address(summary["eip"])
    assert ipaddress.ip_address(POOL_FIRST) <= eip <= ipaddress.ip_address(POOL_LAST), summary
    assert summary["next_hops"] == [NODE1, NODE2], summary
    assert summary["route"].count("nexthop via") == 2, summary["route"]
    requests = summary["requests"]
    assert sum(requests.values()) == 100, requests
    assert requests.get("node1", 0) >= 20 and requests.get("node2", 0) >= 20, requests
    assert "node3" not in requests, requests
    assert [a for a in requests if a.startswith("error")] == [], requests
    assert summary["audit"] and all(a["in_sync"] for a in summary["audit"].values()), summary

    second = subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", "inventories/lab", "playbooks/site.yml"],
        env={**env, "ANSIBLE_NOCOLOR": "1"},
        cwd=REPO, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert second.returncode == 0, f"site.yml again:\n{second.stdout}\n{second.stderr}"
    counters = recaps(second.stdout)
    assert counters, second.stdout
    changed = {host: n["changed"] for host, n in counters.items()}
    assert set(changed) == {"lab-router", "localhost"}, counters
    assert all(n == 0 for n in changed.values()), (
        f"site.yml changed something the second time: {changed}\n"
        + "\n".join(
            line for line in second.stdout.splitlines() if line.startswith(("TASK", "changed"))
        )
    )

    down = subprocess.run(
        [str(BIN / "porter-lab"), "down"],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert down.returncode == 0, down.stdout + down.stderr
    prefix = f"{PREFIX_ROOT}{env['PORTER_LB_LAB_RUN']}-"
    assert [n for n in netns.existing() if n.startswith(prefix)] == []
    wait_for(lambda: not lab_processes(state_dir), 10, f"no process naming {state_dir}")
