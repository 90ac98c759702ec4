"""Install path 3 and the demo: `scripts/demo.sh` (the README's command) from a clean state on
a lab of its own (its own state directory and namespace prefix, so it never meets
`scripts/lab.sh`'s lab or another test's), then `playbooks/site.yml` again, then
`scripts/demo.sh down`.

- the demo brings up a real cluster and installs porter-lb with the roles (site.yml): its
  pods Running; the Service's EIP lies in the lab pool; the router's next hops are exactly the
  nodes hosting a Ready pod of the app (externalTrafficPolicy Local): two, then three after
  the scale; the 100 requests are answered by those pods only, each node's pod >= 20 times
  with two, >= 15 with three, none failed; the route audit is in sync;
- the second site.yml changes nothing (PLAY RECAP changed=0 on every host) and restarts no
  pod;
- after `down`: no namespace, cgroup or mount of the lab, no process naming its state
  directory.
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
from porter_lab.cluster import cgroup_mounts
from porter_lab.controlplane import KUBECTL
from porter_lab.topology import PREFIX_ROOT, run_id
from porter_lab.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
POOL_FIRST, POOL_LAST = "203.0.113.100", "203.0.113.199"
NODES = {"node1": "198.51.100.11", "node2": "198.51.100.12", "node3": "198.51.100.13"}


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
            [str(REPO / "scripts/demo.sh"), "down"], env=env, timeout=300, check=False,
            capture_output=True,
        )  # fmt: skip
        netns.remove_all(f"{PREFIX_ROOT}{run}-")


def porter_pods(kubeconfig: Path) -> list[tuple[str, str, tuple[int, ...]]]:
    """(name, uid, restart counts) of porter-lb's pods."""
    out = subprocess.run(
        [str(KUBECTL.binary()), f"--kubeconfig={kubeconfig}", "get", "pods", "-n",
         "porter-lb-system", "-o", "json"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    return sorted(
        (
            p["metadata"]["name"],
            p["metadata"]["uid"],
            tuple(s["restartCount"] for s in p["status"].get("containerStatuses", [])),
        )
        for p in json.loads(out)["items"]
    )


def check_requests(answers: dict[str, int], hops: list[str], least: int) -> None:
    """Every answer from a pod on a next-hop node, each of those nodes >= `least` times."""
    assert [a for a in answers if a.startswith("error")] == [], answers
    assert sum(answers.values()) == 100, answers
    by_node: dict[str, int] = {}
    for answer, count in answers.items():
        node = answer.split()[1]
        by_node[NODES[node]] = by_node.get(NODES[node], 0) + count
    assert sorted(by_node) == hops, (answers, hops)
    assert min(by_node.values()) >= least, answers


def test_demo_on_real_pods_then_site_again_changes_nothing(demo_lab: dict[str, str]) -> None:
    env = demo_lab
    state_dir = Path(env["PORTER_LB_LAB_DIR"])
    demo = subprocess.run(
        [str(REPO / "scripts/demo.sh")],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=1200, check=False,
    )  # fmt: skip
    print(demo.stdout)
    assert demo.returncode == 0, f"scripts/demo.sh failed:\n{demo.stdout}\n{demo.stderr}"
    for step in range(1, 8):
        assert f"[{step}/7]" in demo.stdout, demo.stdout

    summary = json.loads((state_dir / "demo-summary.json").read_text())
    assert len(summary["porter_lb_pods"]) == 5, summary["porter_lb_pods"]  # 2 controllers, 3 agents
    eip = ipaddress.ip_address(summary["eip"])
    assert ipaddress.ip_address(POOL_FIRST) <= eip <= ipaddress.ip_address(POOL_LAST), summary
    assert len(summary["next_hops"]) == 2, summary
    assert summary["route"].count("nexthop via") == 2, summary["route"]
    check_requests(summary["requests"], summary["next_hops"], 20)
    assert summary["next_hops_after_scale"] == sorted(NODES.values()), summary
    check_requests(summary["requests_after_scale"], summary["next_hops_after_scale"], 15)
    assert summary["audit"] and all(a["in_sync"] for a in summary["audit"].values()), summary

    kubeconfig = state_dir / "cluster/controlplane/kubeconfig"
    pods = porter_pods(kubeconfig)
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
    assert porter_pods(kubeconfig) == pods, "site.yml again restarted or replaced a pod"

    down = subprocess.run(
        [str(REPO / "scripts/demo.sh"), "down"],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert down.returncode == 0, down.stdout + down.stderr
    prefix = f"{PREFIX_ROOT}{env['PORTER_LB_LAB_RUN']}-"
    assert [n for n in netns.existing() if n.startswith(prefix)] == []
    assert [p for h in cgroup_mounts() for p in h.iterdir() if p.name.startswith(prefix)] == []
    assert str(state_dir) not in Path("/proc/self/mounts").read_text()
    wait_for(lambda: not lab_processes(state_dir), 10, f"no process naming {state_dir}")
