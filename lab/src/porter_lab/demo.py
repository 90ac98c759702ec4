"""`porter-lab demo`: the one-command demo (scripts/demo.sh), on real pods.

1. the lab (`porter-lab up --bare-router`): a real three-node cluster (kubelets, containerd,
   kube-proxy) in network namespaces, the porter-lb images loaded into every node, a bare
   router namespace;
2. `playbooks/site.yml` with `inventories/lab`: BIRD in the router namespace, porter-lb's
   controller (Deployment, 2 replicas) and agents (DaemonSet) as pods, the Eip pool and the
   nodes' BGP, a route audit;
3. the test app (2 replicas, one per node) behind a LoadBalancer Service with
   externalTrafficPolicy Local, and the EIP it gets;
4. the router's ECMP route to the EIP over the two nodes with a Ready pod;
5. 100 HTTP requests from the client namespace, counted by the pod and node that answered;
6. the app scaled to 3: the third node's next hop appears, 100 requests again;
7. `playbooks/verify.yml` (route audit) once more.

Everything is idempotent: run again while the lab is up, it reuses what runs (and scales the
app back to 2 first). The summary is also written to `<lab dir>/demo-summary.json`.
`porter-lab down` removes it all.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from porter_lab import cli, netns, testapp, traffic
from porter_lab.paths import REPO, lab_state_dir
from porter_lab.topology import CLIENT_NET, Topology
from porter_lab.waiting import wait_for
from porter_lb.kube.api import KubeAPI, KubeError

NAMESPACE, APP, POOL = "demo", "web", "lab-pool"
POOL_RANGE = "203.0.113.100-203.0.113.199"  # inventories/lab/group_vars/porter_lb_cluster.yml
REQUESTS = 100
STEPS = 7
BIN = Path(sys.executable).parent


class Progress:
    def __init__(self) -> None:
        self.started = time.monotonic()
        self.step_started = self.started

    def step(self, number: int, text: str) -> None:
        self.step_started = time.monotonic()
        cli.say(f"[{number}/{STEPS}] {text}")

    def done(self, text: str = "") -> None:
        took = time.monotonic() - self.step_started
        cli.say(f"      {text + ' ' if text else ''}({took:.1f}s)")


def main(args: argparse.Namespace) -> int:
    progress = Progress()
    state_dir = lab_state_dir()
    progress.step(1, "Lab: a real 3-node cluster (kubelet, containerd), images, bare router")
    state = cli.load_state()
    if state is None:
        code = cli.up(argparse.Namespace(router="bird", nodes=3, bare_router=True))
        state = cli.load_state()
        if code != 0 or state is None:
            cli.say("error: the lab did not come up")
            return 1
    elif state.get("router_kind") != cli.PLAYBOOK_ROUTER:
        cli.say(
            "error: a lab with its own router is up (scripts/lab.sh up); the demo needs one whose"
            " router site.yml configures: scripts/lab.sh down first"
        )
        return 1
    else:
        cli.say(f"      the demo's lab is up already ({state_dir}); reusing it")
    progress.done()

    progress.step(2, "ansible-playbook -i inventories/lab playbooks/site.yml (porter-lb as pods)")
    recap = playbook("site.yml", state_dir / "site.log")
    api = kube_api(Path(state["kubeconfig"]))
    porter_pods = running_pods(api, "porter-lb-system")
    progress.done(f"PLAY RECAP {recap}; porter-lb pods Running: {len(porter_pods)}")

    topo = Topology(state["run"], node_count=int(state.get("nodes", 3)))
    addresses = {n.name: n.address for n in topo.nodes}
    progress.step(3, f"Test app {NAMESPACE}/{APP}: 2 replicas, Service externalTrafficPolicy Local")
    deploy_app(api, state["images"]["test-app"], replicas=2)
    ip = str(wait_for(lambda: testapp.service_ip(api, NAMESPACE, APP), 60, "the Service's EIP"))
    progress.done(f"EIP {ip}")

    progress.step(4, "The router's ECMP route to the EIP: the nodes with a Ready pod")
    route, hops = wait_route(api, topo, ip, addresses, replicas=2)
    progress.done(f"next hops {', '.join(sorted(hops))}")

    progress.step(5, f"{REQUESTS} HTTP requests from the client, counted by pod and node")
    traffic.wait_answered(topo, ip)  # kube-proxy may still be writing the new EIP's rules
    answers = requests(topo, ip)
    progress.done()

    progress.step(6, "Scale the app to 3: the third node's next hop appears")
    scale(api, 3)
    route3, hops3 = wait_route(api, topo, ip, addresses, replicas=3)
    answers3 = requests(topo, ip)
    progress.done(f"next hops {', '.join(sorted(hops3))}")

    progress.step(7, "Route audit (playbooks/verify.yml)")
    report = state_dir / "audit.json"
    report.unlink(missing_ok=True)
    playbook("verify.yml", state_dir / "verify.log", f"porter_lb_audit_report={report}")
    audits = json.loads(report.read_text())
    progress.done()

    summary: dict[str, Any] = {
        "eip": ip,
        "pool": POOL_RANGE,
        "porter_lb_pods": porter_pods,
        "route": route,
        "next_hops": sorted(hops),
        "requests": dict(sorted(answers.items())),
        "route_after_scale": route3,
        "next_hops_after_scale": sorted(hops3),
        "requests_after_scale": dict(sorted(answers3.items())),
        "audit": {
            host: {
                "in_sync": audit.get("in_sync"),
                "missing": audit.get("missing"),
                "stale": audit.get("stale"),
                "wrong_next_hops": audit.get("wrong_next_hops"),
            }
            for host, audit in audits.items()
        },
        "site_recap": recap,
        "seconds": round(time.monotonic() - progress.started, 1),
    }
    (state_dir / "demo-summary.json").write_text(json.dumps(summary, indent=2))
    print_summary(summary, topo)
    in_sync = all(a["in_sync"] for a in summary["audit"].values())
    errors = sum(n for a, n in (answers + answers3).items() if a.startswith("error"))
    return 0 if in_sync and not errors and len(hops) == 2 and len(hops3) == 3 else 1


def playbook(name: str, log: Path, *extra_vars: str) -> dict[str, int]:
    """Run playbooks/NAME on inventories/lab from the checkout; print each play as it starts;
    the whole output goes to `log`. Its PLAY RECAP, summed over hosts."""
    argv = [str(BIN / "ansible-playbook"), "-i", "inventories/lab", f"playbooks/{name}"]
    for variable in extra_vars:
        argv += ["-e", variable]
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("ANSIBLE_COLLECTIONS_PATH", "ANSIBLE_CONFIG", "K8S_AUTH_KUBECONFIG")
    }
    env |= {
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "PATH": f"{BIN}:{env.get('PATH', '')}",
        "PORTER_LB_LAB_DIR": str(lab_state_dir()),
        "PORTER_LB_LAB_RUN": cli.lab_run(),
    }
    recap: Counter[str] = Counter()
    with log.open("w") as out:
        process = subprocess.Popen(
            argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        assert process.stdout is not None
        in_recap = False
        for line in process.stdout:
            out.write(line)
            if line.startswith("PLAY [") and not line.startswith("PLAY RECAP"):
                cli.say("      " + line.strip(" *\n"))
            in_recap |= line.startswith("PLAY RECAP")
            if in_recap and (match := re.match(r"^\S+\s+:\s+(.*)$", line)):
                recap.update({k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", match[1])})
        code = process.wait(timeout=60)
    if code != 0:
        tail = "".join(log.read_text().splitlines(keepends=True)[-30:])
        raise SystemExit(f"error: playbooks/{name} failed (exit {code}); see {log}:\n{tail}")
    return {k: recap[k] for k in ("ok", "changed", "failed", "unreachable") if k in recap}


def kube_api(kubeconfig: Path) -> KubeAPI:
    from kubernetes import config

    return KubeAPI(config.new_client_from_config(str(kubeconfig)))


def running_pods(api: KubeAPI, namespace: str) -> list[str]:
    found = api.list(f"/api/v1/namespaces/{namespace}/pods")[0]
    return sorted(
        p["metadata"]["name"] for p in found if (p.get("status") or {}).get("phase") == "Running"
    )


def deploy_app(api: KubeAPI, image: str, replicas: int) -> None:
    """The namespace, the app (scaled back to `replicas` when it exists) and its Service."""
    for path, body in (
        ("/api/v1/namespaces", {"metadata": {"name": NAMESPACE}}),
        (
            f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments",
            testapp.deployment(APP, NAMESPACE, image, replicas),
        ),
        (
            f"/api/v1/namespaces/{NAMESPACE}/services",
            testapp.service(APP, NAMESPACE, pool=POOL),
        ),
    ):
        try:
            api.create(path, body)
        except KubeError as error:
            if error.status != 409:
                raise
    scale(api, replicas)


def scale(api: KubeAPI, replicas: int) -> None:
    api.merge_patch(
        f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/{APP}/scale",
        {"spec": {"replicas": replicas}},
    )


def wait_route(
    api: KubeAPI, topo: Topology, ip: str, addresses: dict[str, str], replicas: int
) -> tuple[str, set[str]]:
    """Wait until `replicas` pods are Ready and the router's next hops for the EIP are exactly
    their nodes (externalTrafficPolicy Local); return the route and the next hops."""

    def settled() -> set[str] | None:
        pods = testapp.pods(api, NAMESPACE, APP)  # terminating ones too: wait them out
        nodes = {p["spec"].get("nodeName") for p in pods if testapp.is_ready(p)}
        wanted = {addresses[n] for n in nodes if n}
        hops = netns.next_hops(topo.router_ns, f"{ip}/32")
        # One Ready pod per node (the spread constraint), none other, and exactly their nodes.
        return hops if len(pods) == len(wanted) == replicas and hops == wanted else None

    hops = wait_for(settled, 120, f"{replicas} Ready pods, the router's next hops their nodes")
    return netns.ip("route", "show", f"{ip}/32", netns=topo.router_ns).rstrip(), hops


def requests(topo: Topology, ip: str) -> Counter[str]:
    """REQUESTS connections from the client namespace, each from its own source port (a fresh
    random block each run, so no port is still in TIME_WAIT from the last)."""
    first = random.randrange(20000, 60000 - REQUESTS)
    return traffic.count_answers(topo, ip, first, REQUESTS, budget=30, timeout=45)


def print_summary(summary: dict[str, Any], topo: Topology) -> None:
    say = cli.say
    say("\n== porter-lb demo " + "=" * 60)
    say(f"porter-lb pods     {len(summary['porter_lb_pods'])} Running in porter-lb-system")
    say(f"Service {NAMESPACE}/{APP} (externalTrafficPolicy Local)")
    say(f"  EIP              {summary['eip']}   (pool {POOL}: {summary['pool']})")
    for title, route, answers in (
        ("2 replicas", summary["route"], summary["requests"]),
        ("scaled to 3", summary["route_after_scale"], summary["requests_after_scale"]),
    ):
        say(f"  {title}: router ECMP   ip -n {topo.router_ns} route show {summary['eip']}/32")
        for line in route.splitlines():
            say(f"                     {line}")
        say(f"    {REQUESTS} requests from the client ({CLIENT_NET}.10), by the pod that answered:")
        for answer, count in sorted(answers.items()):
            say(f"                     {answer:<34} {count:>4}  {'#' * (count // 2)}")
    for host, audit in summary["audit"].items():
        verdict = "in sync" if audit["in_sync"] else f"DRIFT {audit}"
        say(f"  route_audit      {host}: {verdict}")
    say(f"  site.yml         PLAY RECAP {summary['site_recap']}")
    say(f"  took             {summary['seconds']}s")
    say(f"  tear down        scripts/demo.sh down   (logs: {lab_state_dir()})")
