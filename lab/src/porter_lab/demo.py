"""`porter-lab demo`: the one-command demo (scripts/demo.sh).

1. a lab whose router namespace is bare (`porter-lab up --bare-router --register-nodes`);
2. `playbooks/site.yml` with `inventories/lab`: BIRD in the router namespace, porter-lb's
   manifests, the controller and one agent per node as host processes, the Eip pool and the
   BGP objects, a route audit;
3. a Local Service `demo/web` with ready endpoints on node1 and node2, and an HTTP server in
   every node namespace answering with the node's name;
4. the EIP the Service got, and the router's ECMP route to it over node1 and node2;
5. 100 HTTP requests from the client namespace, each from its own source port, counted by the
   node that answered; `playbooks/verify.yml` (route audit) once more.

Everything is idempotent: run again while the lab is up, it reuses what runs. The summary is
also written to `<lab dir>/demo-summary.json`. `porter-lab down` removes it all.
"""

from __future__ import annotations

import argparse
import functools
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

from porter_lab import cli, netns, objects, traffic
from porter_lab.paths import REPO, lab_state_dir
from porter_lab.topology import CLIENT_NET, Topology
from porter_lab.waiting import wait_for

NAMESPACE, SERVICE, POOL = "demo", "web", "lab-pool"
POOL_RANGE = "203.0.113.100-203.0.113.199"  # inventories/lab/group_vars/porter_lb_cluster.yml
ENDPOINT_NODES = ["node1", "node2"]
REQUESTS = 100
STEPS = 5
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
    progress.step(1, "Lab: API server, namespaces, gobgpd per node, Nodes; router left bare")
    state = cli._load_state()
    if state is None:
        code = cli.up(
            argparse.Namespace(router="bird", nodes=3, bare_router=True, register_nodes=True)
        )
        state = cli._load_state()
        if state is None:
            cli.say("error: the lab did not come up")
            return 1
        del code  # the health printed is informative: no BGP session exists before site.yml
    elif state.get("router_kind") != cli.PLAYBOOK_ROUTER:
        cli.say(
            "error: a lab with its own router is up (scripts/lab.sh up); the demo needs one whose"
            " router site.yml configures: scripts/lab.sh down first"
        )
        return 1
    else:
        cli.say(f"      the demo's lab is up already ({state_dir}); reusing it")
    progress.done()

    progress.step(2, "ansible-playbook -i inventories/lab playbooks/site.yml")
    recap = playbook("site.yml", state_dir / "site.log")
    progress.done(f"PLAY RECAP {recap}")

    progress.step(3, f"Service {NAMESPACE}/{SERVICE}: endpoints on {' and '.join(ENDPOINT_NODES)}")
    kubeconfig = Path(state["kubeconfig"])
    api = kube_api(kubeconfig)
    topo = Topology(state["run"], node_count=len(state["speakers"]))
    serve_node_names(topo, state)
    ensure_service(api)
    ip = str(wait_for(lambda: service_ip(api), 30, f"an IP for Service {NAMESPACE}/{SERVICE}"))
    progress.done(f"EIP {ip}")

    progress.step(4, "The router's ECMP route to the EIP")
    addresses = {n.name: n.address for n in topo.nodes}
    wanted = {addresses[n] for n in ENDPOINT_NODES}
    wait_for(
        lambda: netns.next_hops(topo.router_ns, f"{ip}/32") == wanted,
        30,
        f"{ip}/32 via {sorted(wanted)} in the router's FIB",
    )
    route = netns.ip("route", "show", f"{ip}/32", netns=topo.router_ns).rstrip()
    progress.done()

    progress.step(
        5, f"{REQUESTS} HTTP requests from the client; route audit (playbooks/verify.yml)"
    )
    answers = requests(topo, ip)
    report = state_dir / "audit.json"
    report.unlink(missing_ok=True)
    playbook("verify.yml", state_dir / "verify.log", f"porter_lb_audit_report={report}")
    audits = json.loads(report.read_text())
    progress.done()

    summary: dict[str, Any] = {
        "eip": ip,
        "pool": POOL_RANGE,
        "route": route,
        "next_hops": sorted(netns.next_hops(topo.router_ns, f"{ip}/32")),
        "requests": dict(sorted(answers.items())),
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
    errors = sum(n for a, n in answers.items() if a.startswith("error"))
    return 0 if in_sync and not errors and len(summary["next_hops"]) == 2 else 1


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


def kube_api(kubeconfig: Path) -> Any:
    from kubernetes import config

    from porter_lb.kubeapi import KubeAPI

    return KubeAPI(config.new_client_from_config(str(kubeconfig)))


def serve_node_names(topo: Topology, state: dict[str, Any]) -> None:
    """An HTTP server in each node namespace naming the node, unless one listens already."""
    for node in topo.nodes:
        if netns.run(["ss", "-Htln", "sport", "= :80"], netns=node.netns).strip():
            continue
        daemon = traffic.serve_node_name(node.netns, node.name, lab_state_dir())
        state["pids"][daemon.name] = daemon.pid
        cli._save(state)
    for node in topo.nodes:
        wait_for(
            functools.partial(netns.run, ["ss", "-Htln", "sport", "= :80"], netns=node.netns),
            10,
            f"HTTP listening in {node.netns}",
        )


def ensure_service(api: Any) -> None:
    """The Local Service and its EndpointSlice; an existing one gets these endpoints again."""
    from porter_lb.kubeapi import KubeError

    objects.ensure_namespace(api, NAMESPACE)
    slice_body = objects.endpoint_slice(f"{SERVICE}-1", NAMESPACE, SERVICE, ENDPOINT_NODES, port=80)
    service = objects.load_balancer_service(SERVICE, NAMESPACE, policy="Local")
    service["metadata"]["annotations"] = {"eip.porter.kubesphere.io/v1alpha2": POOL}
    for collection, body in (
        (objects.endpoint_slices(NAMESPACE), slice_body),
        (objects.services(NAMESPACE), service),
    ):
        try:
            api.create(collection, body)
        except KubeError as error:
            if error.status != 409:
                raise
    api.merge_patch(
        f"{objects.endpoint_slices(NAMESPACE)}/{SERVICE}-1", {"endpoints": slice_body["endpoints"]}
    )


def service_ip(api: Any) -> str:
    service = api.get(f"{objects.services(NAMESPACE)}/{SERVICE}")
    ingress = (service.get("status") or {}).get("loadBalancer", {}).get("ingress") or []
    return str(ingress[0]["ip"]) if ingress else ""


def requests(topo: Topology, ip: str) -> Counter[str]:
    """REQUESTS connections from the client namespace, each from its own source port (a fresh
    random block each run, so no port is still in TIME_WAIT from the last)."""
    first = random.randrange(20000, 60000 - REQUESTS)
    return traffic.count_answers(topo, ip, first, REQUESTS, budget=30, timeout=45)


def print_summary(summary: dict[str, Any], topo: Topology) -> None:
    say = cli.say
    say("\n== porter-lb demo " + "=" * 60)
    say(
        f"Service {NAMESPACE}/{SERVICE} (externalTrafficPolicy Local, endpoints on "
        f"{' and '.join(ENDPOINT_NODES)})"
    )
    say(f"  EIP              {summary['eip']}   (pool {POOL}: {summary['pool']})")
    say(f"  router ECMP      ip -n {topo.router_ns} route show {summary['eip']}/32")
    for line in summary["route"].splitlines():
        say(f"                     {line}")
    say(f"  {REQUESTS} requests from the client ({CLIENT_NET}.10), distinct source ports:")
    names = {n.address: n.name for n in topo.nodes}
    for node in topo.nodes:
        count = summary["requests"].get(node.name, 0)
        say(f"                     {node.name} ({node.address}) {count:>4}  {'#' * (count // 2)}")
    for answer, count in summary["requests"].items():
        if answer not in names.values():
            say(f"                     {answer}: {count}")
    for host, audit in summary["audit"].items():
        verdict = "in sync" if audit["in_sync"] else f"DRIFT {audit}"
        say(f"  route_audit      {host}: {verdict}")
    say(f"  site.yml         PLAY RECAP {summary['site_recap']}")
    say(f"  took             {summary['seconds']}s")
    say(f"  tear down        scripts/demo.sh down   (logs: {lab_state_dir()})")
