"""`porter-lab up | status | down | demo`: the local lab, a real Kubernetes cluster on this machine,
kept running between commands.

    porter-lab up [--router bird|frr] [--nodes N] [--bare-router]

builds (or reuses) the images (porter_lab.images), then brings up the cluster
(porter_lab.cluster: a control plane and N kubelet nodes in network namespaces, containerd with
the images loaded), a client namespace and a router peering with every node (BIRD by default;
`--bare-router` leaves the router namespace empty for playbooks/site.yml to configure). porter-lb
itself is not installed: install it with Helm, `kubectl apply -f deploy/porter-lb.yaml` or
site.yml (README, "Install on your cluster"), or run `porter-lab demo`.

Its state (pids, logs, kubeconfig, image references) lives in $PORTER_LB_LAB_DIR
(/var/tmp/porter-lab); its namespaces are plb<run>-router, -client, -cp, -node1..N, with <run>
from $PORTER_LB_LAB_RUN (default `lab`), so a second lab (a test's) can run beside the first.
`down` stops every process, removes the namespaces, cgroups and state: nothing is left.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from porter_lab import images, netns
from porter_lab.cluster import CP_ADDRESS, Cluster, remove_leftovers, remove_mount_points
from porter_lab.controlplane import KUBECTL
from porter_lab.paths import lab_state_dir
from porter_lab.processes import kill_group
from porter_lab.routers import FRR_RUN_ROOT, Bird, Frr, Neighbor, Router, RouterSpec
from porter_lab.topology import EIP_POOL, NODE_ASN, ROUTER_ASN, Topology


def lab_run() -> str:
    """The lab's run id: namespaces plb<run>-router, plb<run>-client, plb<run>-node1..N."""
    run = os.environ.get("PORTER_LB_LAB_RUN", "lab")
    if not re.fullmatch(r"[a-z0-9]{1,8}", run):
        raise SystemExit(f"PORTER_LB_LAB_RUN {run!r}: want 1-8 lower-case letters or digits")
    return run


# The router's kind when playbooks/site.yml, not the lab, configures and starts it.
PLAYBOOK_ROUTER = "playbook"


def say(message: str) -> None:
    print(message, flush=True)


def _state_file() -> Path:
    return lab_state_dir() / "state.json"


def load_state() -> dict[str, Any] | None:
    try:
        return dict(json.loads(_state_file().read_text()))
    except FileNotFoundError:
        return None


def _save(state: dict[str, Any]) -> None:
    _state_file().write_text(json.dumps(state, indent=2))


def router_spec(topo: Topology) -> RouterSpec:
    return RouterSpec(
        asn=ROUTER_ASN,
        router_id=topo.router_address,
        pools=(EIP_POOL,),
        neighbors=tuple(Neighbor(n.address, NODE_ASN, n.name) for n in topo.nodes),
    )


def up(args: argparse.Namespace) -> int:
    if load_state() is not None:
        say("The lab is already up (porter-lab down removes it). Its health:")
        return status(args)
    state_dir = lab_state_dir()
    state_dir.mkdir(parents=True, exist_ok=True)
    bare = bool(getattr(args, "bare_router", False))
    run = lab_run()
    state: dict[str, Any] = {
        "router_kind": PLAYBOOK_ROUTER if bare else args.router,
        "run": run,
        "nodes": args.nodes,
        "pids": {},
    }
    _save(state)  # before anything starts: a failure half-way is cleaned up by down()
    started = time.monotonic()
    try:
        say("[1/3] Images (podman; rebuilt only when their sources change) ...")
        step = time.monotonic()
        built = images.current(log=lambda line: say("    " + line))
        state["images"] = built.refs
        _save(state)
        say(f"      ({time.monotonic() - step:.1f}s)")

        say(f"[2/3] Kubernetes: control plane and {args.nodes} nodes (kubelet, containerd) ...")
        topo = Topology(run, node_count=args.nodes)
        cluster = Cluster(topo, state_dir / "cluster", built)
        state["namespaces"] = [topo.router_ns, topo.client_ns, cluster.cp_netns]
        state["namespaces"] += [n.netns for n in topo.nodes]
        state["kubeconfig"] = str(cluster.kubeconfig)
        _save(state)
        try:
            cluster.start(log=say)
        finally:
            state["pids"].update({d.name: d.pid for d in cluster.daemons() if d.running()})
            state["mount_points"] = cluster.made_mount_points
            _save(state)
        state["apiserver"] = cluster.plane.url

        if bare:
            say(f"[3/3] Router: {topo.router_ns} is left bare for playbooks/site.yml")
        else:
            say(f"[3/3] Router ({args.router}, AS {ROUTER_ASN}) in {topo.router_ns} ...")
            spec = router_spec(topo)
            router: Router = (
                Bird(topo.router_ns, spec, state_dir / "bird")
                if args.router == "bird"
                else Frr(topo.router_ns, spec)
            )
            router.start()
            for daemon in router.processes():
                state["pids"][f"router-{daemon.name}"] = daemon.pid
            state["router_workdir"] = str(router.workdir)
        _save(state)
    except Exception as error:  # noqa: BLE001 - any failure: report it, then clean up
        say(f"error: the lab did not come up: {error}")
        say("Removing what was started ...")
        down(args)
        return 1
    say(f"The lab is up ({time.monotonic() - started:.1f}s).")
    return status(args)


def kubectl_command(state: dict[str, Any]) -> str:
    return f"{KUBECTL.binary()} --kubeconfig {state.get('kubeconfig')}"


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def status(args: argparse.Namespace) -> int:
    state = load_state()
    if state is None:
        say("The lab is not up: run scripts/lab.sh up")
        return 1
    healthy = True
    say("\nProcesses:")
    for name, pid in state["pids"].items():
        alive = _alive(pid)
        healthy &= alive
        say(f"  {name:<28} pid {pid:<8} {'running' if alive else 'NOT RUNNING'}")
    say("\nNodes and porter-lb (kubectl):")
    kubectl = [str(KUBECTL.binary()), f"--kubeconfig={state.get('kubeconfig')}"]
    for what in (["get", "nodes", "-o", "wide"], ["get", "pods", "-A", "-o", "wide"]):
        with contextlib.suppress(OSError):
            result = _run([*kubectl, *what])
            healthy &= result[0] == 0
            say("  " + result[1].strip().replace("\n", "\n  "))
    run = state.get("run", lab_run())
    router_ns = f"plb{run}-router"
    workdir = state.get("router_workdir", str(lab_state_dir() / "bird"))
    say("\nWhere to look:")
    say(f"  kubectl           {kubectl_command(state)} get nodes")
    say(f"  API server        {state.get('apiserver')} (relayed to {CP_ADDRESS}:6443)")
    if state["router_kind"] in ("bird", PLAYBOOK_ROUTER):
        say(f"  router BGP        birdc -s {workdir}/bird.ctl show protocols")
    else:
        say(f"  router BGP        vtysh --vty_socket {workdir} -c 'show bgp summary'")
    say(f"  router kernel FIB ip -n {router_ns} route")
    say(f"  logs              {lab_state_dir()}/ (cluster/nodes/<node>/*.log for kubelets)")
    say("  tear down         scripts/lab.sh down")
    say(f"\nHealth: {'OK' if healthy else 'DEGRADED'}")
    return 0 if healthy else 1


def _run(argv: list[str]) -> tuple[int, str]:
    import subprocess

    result = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    return result.returncode, result.stdout + result.stderr


def _started_by_playbooks(state_dir: Path) -> dict[str, int]:
    """Processes that playbooks started with pid files under the state directory (the private
    router): those whose command line names the state directory, so a stale pid file never
    stops a stranger."""
    found = {}
    for pid_file in sorted(state_dir.rglob("*.pid")):
        try:
            pid = int(pid_file.read_text().split()[0])
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except (ValueError, IndexError, OSError):
            continue
        if str(state_dir) in cmdline:
            found[pid_file.stem] = pid
    return found


# Stopped in this order, each stage at once: whatever depends on the API server, then the API
# server and its controllers (before etcd: stopped after it, the API server hangs), then etcd
# and the relay.
DOWN_STAGES = (
    ("kube-apiserver", "kube-controller-manager", "kube-scheduler"),
    ("etcd", "apiserver-relay", "apiserver-relay-inner"),
)


def down(args: argparse.Namespace) -> int:
    state = load_state() or {}
    run = state.get("run", lab_run())
    started = {**state.get("pids", {}), **_started_by_playbooks(lab_state_dir())}
    last = {name for stage in DOWN_STAGES for name in stage}
    stages = [{n: p for n, p in started.items() if n not in last}]
    stages += [{n: p for n, p in started.items() if n in stage} for stage in DOWN_STAGES]
    for stage in stages:
        running = {name: pid for name, pid in stage.items() if _alive(pid)}
        if running:
            say(f"  stopping {', '.join(running)}")
        for pid in running.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)  # a daemon that is not its group's leader too
            kill_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in running.values()) and time.monotonic() < deadline:
            time.sleep(0.1)
        for pid in running.values():
            kill_group(pid, signal.SIGKILL)
    # Whatever is left in the lab's namespaces or cgroups: pods, shims, a crashed run's.
    removed = remove_leftovers(run)
    removed += netns.remove_all(f"plb{run}-")
    if removed:
        say(f"  removed namespaces: {', '.join(removed)}")
    remove_mount_points(state.get("mount_points", []))
    shutil.rmtree(FRR_RUN_ROOT / f"plb{run}-router", ignore_errors=True)
    shutil.rmtree(lab_state_dir(), ignore_errors=True)
    say("The lab is down.")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from porter_lab import demo  # it uses this module's up/down

    return demo.main(args)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="porter-lab", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    up_parser = commands.add_parser(
        "up", help="bring the lab (a real cluster and a router) up and print its health"
    )
    up_parser.add_argument("--router", choices=["bird", "frr"], default="bird")
    up_parser.add_argument("--nodes", type=int, default=3, choices=range(1, 7), metavar="1-6")
    up_parser.add_argument(
        "--bare-router",
        action="store_true",
        help="leave the router namespace without a routing daemon: playbooks/site.yml"
        " (inventories/lab) configures it",
    )
    up_parser.set_defaults(run=up)
    demo_parser = commands.add_parser(
        "demo",
        help="the one-command demo: the lab with a bare router, playbooks/site.yml (porter-lb"
        " as pods), a test app behind a LoadBalancer Service, and what the client sees",
    )
    demo_parser.set_defaults(run=_demo)
    commands.add_parser("status", help="print the lab's health").set_defaults(run=status)
    commands.add_parser("down", help="stop everything and remove the namespaces").set_defaults(
        run=down
    )
    args = parser.parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
