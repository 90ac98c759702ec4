"""`porter-lab up | status | down`: the local lab of real components, kept running between
commands. Its state (pids, logs, kubeconfig) lives in $PORTER_LB_LAB_DIR (/var/tmp/porter-lab);
its namespaces are plb<run>-router, plb<run>-client and plb<run>-node1..N, with <run> from
$PORTER_LB_LAB_RUN (default `lab`), so a second lab (a test's) can run beside the first.

`porter-lab demo` is the one-command demo (porter_lab.demo): a lab whose router is configured by
playbooks/site.yml, a Service, and what the client sees."""

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

from porter_lab import netns
from porter_lab.controlplane import ControlPlane
from porter_lab.kube import apply_crds
from porter_lab.paths import CRD_DIR, lab_state_dir
from porter_lab.processes import stop_pid
from porter_lab.routers import FRR_RUN_ROOT, Bird, Frr, Neighbor, Router, RouterSpec, established
from porter_lab.speakers import Gobgpd
from porter_lab.topology import EIP_POOL, NODE_ASN, ROUTER_ASN, Topology
from porter_lb.gobgp import GoBGP, GoBGPError


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


def _load_state() -> dict[str, Any] | None:
    try:
        return dict(json.loads(_state_file().read_text()))
    except FileNotFoundError:
        return None


def up(args: argparse.Namespace) -> int:
    if _load_state() is not None:
        say("The lab is already up (porter-lab down removes it). Its health:")
        return status(args)
    state_dir = lab_state_dir()
    state_dir.mkdir(parents=True, exist_ok=True)
    bare = bool(getattr(args, "bare_router", False))
    state: dict[str, Any] = {
        "router_kind": PLAYBOOK_ROUTER if bare else args.router,
        "run": lab_run(),
        "pids": {},
        "speakers": {},
    }
    started = time.monotonic()
    try:
        say("[1/4] Kubernetes control plane (etcd, kube-apiserver) ...")
        plane = ControlPlane(state_dir / "controlplane").start()
        assert plane.etcd is not None and plane.apiserver is not None
        state["pids"].update(etcd=plane.etcd.pid, apiserver=plane.apiserver.pid)
        state["kubeconfig"] = str(plane.kubeconfig)
        state["apiserver"] = plane.url
        _save(state)
        from kubernetes import config

        crds = apply_crds(
            config.new_client_from_config(str(plane.kubeconfig)), sorted(CRD_DIR.glob("*.yaml"))
        )
        say(f"      API server {plane.url}; CRDs established: {', '.join(crds)}")

        say(f"[2/4] Network namespaces: router, client, {args.nodes} nodes ...")
        topo = Topology(lab_run(), node_count=args.nodes)
        state["namespaces"] = [topo.router_ns, topo.client_ns, *(n.netns for n in topo.nodes)]
        _save(state)  # before creating them: a failure half-way is cleaned up by down()
        topo.create()
        if getattr(args, "register_nodes", False):
            _register_nodes(plane.kubeconfig, topo)
            names = ", ".join(n.name for n in topo.nodes)
            say(f"      registered Nodes {names} (as a kubelet would)")

        if bare:
            say(f"[3/4] Router: {topo.router_ns} is left bare for playbooks/site.yml to configure")
        else:
            say(f"[3/4] Router ({args.router}) in {topo.router_ns} ...")
            spec = RouterSpec(
                asn=ROUTER_ASN,
                router_id=topo.router_address,
                pools=(EIP_POOL,),
                neighbors=tuple(Neighbor(n.address, NODE_ASN, n.name) for n in topo.nodes),
            )
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

        if bare:
            say("[4/4] gobgpd on each node, for the agents to configure from BgpConf/BgpPeer ...")
        else:
            say(f"[4/4] gobgpd on each node, peering with the router (AS {ROUTER_ASN}) ...")
        for node in topo.nodes:
            speaker = Gobgpd(node.netns, state_dir / f"gobgpd-{node.name}")
            bgp = speaker.start()
            assert speaker.daemon is not None
            state["pids"][f"gobgpd-{node.name}"] = speaker.daemon.pid
            state["speakers"][node.name] = {
                "netns": node.netns,
                "target": speaker.target,
                "address": node.address,
            }
            if not bare:
                bgp.start(asn=NODE_ASN, router_id=node.address, listen_port=179)
                bgp.add_peer(topo.router_address, ROUTER_ASN)
            bgp.close()
        _save(state)
        if not bare:
            established(router, timeout=30)
    except Exception as error:  # noqa: BLE001 - any failure: report it, then clean up
        say(f"error: the lab did not come up: {error}")
        say("Removing what was started ...")
        down(args)
        return 1
    say(f"The lab is up ({time.monotonic() - started:.1f}s).")
    return status(args)


def _register_nodes(kubeconfig: Path, topo: Topology) -> None:
    """Create a Ready Node with its InternalIP for each lab node: the kubelet's part."""
    from kubernetes import config

    from porter_lab import objects
    from porter_lb.kubeapi import KubeAPI

    api = KubeAPI(config.new_client_from_config(str(kubeconfig)))
    for node in topo.nodes:
        api.create(objects.NODES, objects.node(node.name))
        objects.set_node_status(api, node.name, address=node.address)


def _save(state: dict[str, Any]) -> None:
    _state_file().write_text(json.dumps(state, indent=2))


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def status(args: argparse.Namespace) -> int:
    state = _load_state()
    if state is None:
        say("The lab is not up: run scripts/lab.sh up")
        return 1
    healthy = True
    say("\nProcesses:")
    for name, pid in state["pids"].items():
        alive = _alive(pid)
        healthy &= alive
        say(f"  {name:<16} pid {pid:<8} {'running' if alive else 'NOT RUNNING'}")
    say("\nBGP sessions (as each node's gobgpd sees them):")
    for node, speaker in state["speakers"].items():
        try:
            with GoBGP(speaker["target"], timeout=2) as bgp:
                peers = bgp.peers()
            text = ", ".join(f"{p.neighbor_address} {p.session_state}" for p in peers)
            if not peers and state["router_kind"] == PLAYBOOK_ROUTER:
                text = "no peers yet (the agents add them once playbooks/site.yml has run)"
            else:
                healthy &= all(p.session_state == "established" for p in peers) and bool(peers)
        except GoBGPError as error:
            text, healthy = f"unreachable ({error})", False
        say(f"  {node} ({speaker['address']}): {text}")
    router_ns = f"plb{state.get('run', lab_run())}-router"
    workdir = state.get("router_workdir", str(lab_state_dir() / "bird"))
    say("\nWhere to look:")
    say(
        f"  kubeconfig        export KUBECONFIG={state.get('kubeconfig')}"
        f"   # {state.get('apiserver')}"
    )
    if state["router_kind"] in ("bird", PLAYBOOK_ROUTER):
        say(f"  router BGP        birdc -s {workdir}/bird.ctl show protocols")
        say(f"  router routes     birdc -s {workdir}/bird.ctl show route")
    else:
        say(f"  router BGP        vtysh --vty_socket {workdir} -c 'show bgp summary'")
        say(f"  router routes     vtysh --vty_socket {workdir} -c 'show ip route'")
    say(f"  router kernel FIB ip netns exec {router_ns} ip route")
    first = next(iter(state["speakers"].values()), None)
    if first:
        porter_lb = Path(sys.executable).parent / "porter-lb"
        say(f"  a node's speaker  {porter_lb} speaker-status --gobgp {first['target']}")
    say(f"  logs              {lab_state_dir()}/")
    say("  tear down         scripts/lab.sh down")
    say(f"\nHealth: {'OK' if healthy else 'DEGRADED'}")
    return 0 if healthy else 1


def _started_by_playbooks(state_dir: Path) -> dict[str, int]:
    """Processes that playbooks started with pid files under the state directory (the private
    router, porter.lb.host_runtime's controller and agents): those whose command line names
    the state directory, so a stale pid file never stops a stranger."""
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


def down(args: argparse.Namespace) -> int:
    state = _load_state() or {}
    run = state.get("run", lab_run())
    # Stopped last-started first: the playbooks' processes (agents, controller, router) before
    # the gobgpds and the API server they use.
    started = {**state.get("pids", {}), **_started_by_playbooks(lab_state_dir())}
    for name, pid in reversed(list(started.items())):
        if _alive(pid):
            say(f"  stopping {name} (pid {pid})")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)  # a daemon that is not its group's leader too
            stop_pid(pid)
    removed = netns.remove_all(f"plb{run}-")
    if removed:
        say(f"  removed namespaces: {', '.join(removed)}")
    shutil.rmtree(FRR_RUN_ROOT / f"plb{run}-router", ignore_errors=True)
    shutil.rmtree(lab_state_dir(), ignore_errors=True)
    say("The lab is down.")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from porter_lab import demo  # it uses this module's up/down

    return demo.main(args)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="porter-lab", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    up_parser = commands.add_parser("up", help="bring the lab up and print its health")
    up_parser.add_argument("--router", choices=["bird", "frr"], default="bird")
    up_parser.add_argument("--nodes", type=int, default=3, choices=range(1, 9), metavar="1-8")
    up_parser.add_argument(
        "--bare-router",
        action="store_true",
        help="leave the router namespace without a routing daemon and the gobgpds unconfigured:"
        " playbooks/site.yml (inventories/lab) configures the router and starts the agents",
    )
    up_parser.add_argument(
        "--register-nodes",
        action="store_true",
        help="create a Ready Node with its InternalIP for each lab node (the kubelet's part)",
    )
    up_parser.set_defaults(run=up)
    demo_parser = commands.add_parser(
        "demo",
        help="the one-command demo: a bare-router lab, playbooks/site.yml, a Service, and"
        " what the client sees (porter-lab down removes it)",
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
