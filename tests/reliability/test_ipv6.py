"""IPv6 over BGP with node speakers (a gobgpd and a `porter-lb agent` on every node), against
BIRD and FRR: the bed is dual-stack (porter_lab.topology's `ipv6`), an IPv6 Eip stands beside
the IPv4 one, and LoadBalancer Services ask for IPv6 alone or for both families
(externalTrafficPolicy Local). The router learns IPv6 one of two ways:

* "mp-bgp": over the IPv4 sessions, the BgpPeer's `afiSafis` naming AFI_IP and AFI_IP6 (the
  router: an ipv6 channel / `address-family ipv6 unicast` on each IPv4 neighbour);
* "v6-session": over IPv6 sessions of their own, a second BgpPeer at the router's IPv6
  address (the router: a neighbour at each node's IPv6 address).

Rules:
- a SingleStack IPv6 Service gets exactly one IP, an IPv6 one of the IPv6 pool; the
  RequireDualStack one, and the PreferDualStack one (which the dual-stack API server makes
  dual), get exactly two, one of each pool;
- the router's kernel FIB holds exactly: each IPv6 EIP as a /128 whose ECMP next hops are the
  IPv6 addresses of the nodes with an endpoint of its Service, each IPv4 EIP as a /32 via those
  nodes' IPv4 addresses, and nothing else of either pool;
- TCP from the client to an EIP is answered, and only by nodes with an endpoint of its Service;
- after the endpoints move, the FIB holds the new nodes' addresses, by the same rule;
- `porter-lb audit` on the router, scoped to the IPv6 pool, finds it in sync: one desired
  route per IPv6 EIP, none missing, stale or with other next hops.

Over MP-BGP the node's speaker must give its IPv6 routes the node's IPv6 address as next hop:
with next hop self gobgpd sends the session's IPv4 address, BIRD drops the routes ("Invalid
NEXT_HOP attribute - mismatched address family (198.51.100.13 for ipv6)") and FRR keeps them
uninstalled (RIB-failure, via ::ffff:c633:640d).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from porter_lab import objects
from porter_lab.fib import FibLog
from porter_lab.processes import Daemon
from porter_lab.reliability import gobgpd_crash as crash
from porter_lab.reliability.bed import IPv6Sessions, Mode, RouterKind
from porter_lab.routers import Bird, Frr, established
from porter_lab.traffic import count_answers, serve_node_name, wait_answered
from porter_lab.waiting import Timeout, wait_for

POOL6 = "2001:db8:203::/120"  # routed only inside the bed's namespaces
EIP6_NAME = "bed-v6"
# Service -> (its IP families, the nodes with an endpoint); MOVED: where the endpoints go.
SERVICES = {
    "v6-a": (("IPv6",), ["node1", "node2"]),
    "v6-b": (("IPv6",), ["node2", "node3"]),
    "v6-c": (("IPv6",), ["node3"]),
    "dual": (("IPv4", "IPv6"), ["node1", "node3"]),
    # PreferDualStack and no ipFamilies: the dual-stack API server gives it both
    "prefer": (("IPv4", "IPv6"), ["node2"]),
}
PREFER = {"prefer"}
MOVED = {"v6-a": ["node3"], "v6-c": ["node1", "node2"], "dual": ["node2"]}
FIRST_CONVERGENCE_S = 60  # sessions, allocation and every route, from the speakers' start
CONVERGENCE_S = 30


def slice_name(service: str, family: str) -> str:
    return f"{service}-{family.lower()}"


def add_service(
    bed: crash.CrashBed, name: str, families: tuple[str, ...], nodes: list[str]
) -> None:
    """The Service and, as the EndpointSlice controller makes them, one slice per family."""
    for family in families:
        bed.api.create(
            objects.endpoint_slices(bed.namespace),
            objects.endpoint_slice(
                slice_name(name, family), bed.namespace, name, nodes, address_type=family
            ),
        )
    bed.api.create(
        objects.services(bed.namespace),
        objects.load_balancer_service(
            name,
            bed.namespace,
            policy="Local",
            node_ports=False,
            ip_families=() if name in PREFER else families,
            ip_family_policy="PreferDualStack" if name in PREFER else "",
        ),
    )
    bed.services[name] = nodes


def move_endpoints(bed: crash.CrashBed, name: str, nodes: list[str]) -> None:
    for family in SERVICES[name][0]:
        body = objects.endpoint_slice(
            slice_name(name, family), bed.namespace, name, nodes, address_type=family
        )
        bed.api.merge_patch(
            f"{objects.endpoint_slices(bed.namespace)}/{slice_name(name, family)}",
            {"endpoints": body["endpoints"]},
        )
    bed.services[name] = nodes


def ingress(bed: crash.CrashBed) -> dict[str, list[str]]:
    """Service -> the IPs in its status.loadBalancer.ingress, from one list."""
    items, _ = bed.api.list(objects.services(bed.namespace))
    return {
        s["metadata"]["name"]: [
            str(i["ip"])
            for i in (s.get("status") or {}).get("loadBalancer", {}).get("ingress") or []
        ]
        for s in items
    }


def desired_fib(bed: crash.CrashBed, ips: dict[str, list[str]]) -> dict[str, frozenset[str]]:
    """The rule: each EIP as a host route via the addresses, of the EIP's family, of the
    nodes with an endpoint of its Service."""
    node = {n.name: n for n in bed.topology.nodes}
    fib = {}
    for name, nodes in bed.services.items():
        for ip in ips.get(name, []):
            v6 = ipaddress.ip_address(ip).version == 6
            fib[f"{ip}/{128 if v6 else 32}"] = frozenset(
                node[n].address6 if v6 else node[n].address for n in nodes
            )
    return fib


def router_view(bed: crash.CrashBed) -> str:
    """What the router holds of IPv6 and says of its sessions: for a failed FIB wait."""
    router = bed.router
    if isinstance(router, Bird):
        log = (router.workdir / "bird.log").read_text(errors="replace").splitlines()
        return "\n".join(
            [
                router.birdc("show route table master6 all"),
                router.birdc("show protocols"),
                *[line for line in log if "NEXT_HOP" in line or "rror" in line][-10:],
            ]
        )
    assert isinstance(router, Frr)
    log = (router.workdir / "bgpd.log").read_text(errors="replace").splitlines()
    return "\n".join(
        [
            router.vtysh("show bgp ipv6 unicast"),
            router.vtysh("show ipv6 route bgp"),
            *[line for line in log if "nexthop" in line.lower() or "rror" in line][-10:],
        ]
    )


def converged(bed: crash.CrashBed, fib: FibLog, timeout: float) -> dict[str, list[str]]:
    """Wait until every Service has its IPs and the FIB is exactly `desired_fib`; on timeout,
    fail with the difference and the router's view."""

    def done() -> dict[str, list[str]] | None:
        bed.check_running()
        ips = ingress(bed)
        allocated = all(len(ips.get(n, [])) == len(SERVICES[n][0]) for n in bed.services)
        return ips if allocated and fib.snapshot() == desired_fib(bed, ips) else None

    try:
        return wait_for(done, timeout, "every Service allocated and exactly routed", 0.2)
    except Timeout:
        ips = ingress(bed)
        assert fib.snapshot() == desired_fib(bed, ips), router_view(bed)
        raise


@contextlib.contextmanager
def ipv6_bed(
    mode: Mode, router_kind: RouterKind, ipv6: IPv6Sessions, workdir: Path
) -> Iterator[crash.CrashBed]:
    """The bed with its IPv6 pool, the BgpPeers `ipv6` asks for and the Services; per node,
    the nodes accept their EIPs and answer TCP with their names."""
    servers: list[Daemon] = []

    def before_start(made: crash.CrashBed) -> None:
        made.api.create(objects.EIPS, objects.eip(EIP6_NAME, POOL6, default=True))
        ipv4_and_ipv6 = [
            {"config": {"family": {"afi": afi, "safi": "SAFI_UNICAST"}, "enabled": True}}
            for afi in ("AFI_IP", "AFI_IP6")
        ]
        if ipv6 == "mp-bgp":
            made.api.merge_patch(f"{objects.BGP_PEERS}/tor", {"spec": {"afiSafis": ipv4_and_ipv6}})
        else:
            made.api.create(
                objects.BGP_PEERS, objects.bgp_peer("tor-v6", made.topology.router_address6)
            )
        if mode == "node":
            for node in made.topology.nodes:
                servers.append(serve_node_name(node.netns, node.name, workdir, dual_stack=True))

    try:
        with crash.crash_bed(
            mode,
            router_kind,
            workdir=workdir,
            # the nodes accept the EIPs they announce (a central speaker gives them no rules)
            agent_args=("--host-rules", "local") if mode == "node" else (),
            before_start=before_start,
            ipv6=ipv6,
            ipv6_pool=POOL6,
        ) as made:
            for name, (families, nodes) in SERVICES.items():
                add_service(made, name, families, list(nodes))
            yield made
    finally:
        for server in servers:
            server.stop()


@pytest.fixture(
    scope="module",
    params=[(r, s) for r in ("bird", "frr") for s in ("mp-bgp", "v6-session")],
    ids="-".join,
)
def bed(
    request: pytest.FixtureRequest,
    bed_prerequisites: None,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[crash.CrashBed]:
    router_kind, sessions = request.param
    workdir = tmp_path_factory.mktemp(f"ipv6-{router_kind}-{sessions}")
    with ipv6_bed("node", router_kind, sessions, workdir) as made:
        yield made


@pytest.fixture
def fib(bed: crash.CrashBed) -> Iterator[FibLog]:
    log = FibLog(bed.topology.router_ns, crash.POOL, POOL6)
    try:
        yield log
    finally:
        log.close()


def test_services_get_one_ip_of_each_family_they_ask_for(bed: crash.CrashBed) -> None:
    def allocated() -> dict[str, list[str]] | None:
        bed.check_running()
        ips = ingress(bed)
        return ips if all(len(ips.get(n, [])) == len(f) for n, (f, _) in SERVICES.items()) else None

    ips = wait_for(allocated, FIRST_CONVERGENCE_S, "every Service allocated", 0.2)
    pools = {"IPv4": ipaddress.ip_network(crash.POOL), "IPv6": ipaddress.ip_network(POOL6)}
    for name, (families, _) in SERVICES.items():
        got = [ipaddress.ip_address(ip) for ip in ips[name]]
        assert sorted(f"IPv{ip.version}" for ip in got) == sorted(families), (name, ips[name])
        assert all(ip in pools[f"IPv{ip.version}"] for ip in got), (name, ips[name])


def test_router_routes_each_eip_via_its_endpoint_nodes(bed: crash.CrashBed, fib: FibLog) -> None:
    established(bed.router, FIRST_CONVERGENCE_S)
    converged(bed, fib, FIRST_CONVERGENCE_S)
    print(sorted(fib.snapshot().items()))


def test_tcp_to_every_eip_reaches_only_endpoint_nodes(bed: crash.CrashBed, fib: FibLog) -> None:
    ips = converged(bed, fib, CONVERGENCE_S)
    topology = bed.topology
    port = 30000
    for name, serving in sorted(bed.services.items()):
        for ip in ips[name]:
            source = topology.client_address6 if ":" in ip else topology.client_address
            wait_answered(topology, ip, source=source)
            answers = count_answers(topology, ip, port, 20, budget=20, timeout=60, source=source)
            port += 20
            assert set(answers) <= set(serving), (name, ip, answers)
            assert sum(answers.values()) == 20, (name, ip, answers)


def test_fib_follows_moved_endpoints(bed: crash.CrashBed, fib: FibLog) -> None:
    before = converged(bed, fib, CONVERGENCE_S)
    for name, nodes in MOVED.items():
        move_endpoints(bed, name, nodes)
    after = converged(bed, fib, CONVERGENCE_S)
    assert after == before, "moving endpoints changed a Service's IPs"


def test_route_audit_finds_the_ipv6_routes_in_sync(bed: crash.CrashBed, fib: FibLog) -> None:
    ips = converged(bed, fib, CONVERGENCE_S)
    audit_in_sync(bed, ips)


def audit_in_sync(bed: crash.CrashBed, ips: dict[str, list[str]]) -> None:
    router = bed.router
    where = (
        ["--router", "bird", "--socket", str(router.socket)]
        if isinstance(router, Bird)
        else ["--router", "frr", "--vty-socket", str(router.workdir)]
    )
    audit = [sys.executable, "-m", "porter_lb", "audit", "--kubeconfig", str(bed.kubeconfig)]
    run = subprocess.run(
        [*audit, *where, "--mode", bed.mode, "--pool", EIP6_NAME, "--fail-on-drift"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0 and run.stdout, (run.returncode, run.stdout, run.stderr)
    report = json.loads(run.stdout)
    ipv6_eips = sum(1 for addresses in ips.values() for ip in addresses if ":" in ip)
    assert report["in_sync"] is True, report
    assert report["counts"]["desired"] == ipv6_eips, report


# One central speaker (in node1's namespace) announcing every node's paths, ADD-PATH: each
# router with one of the two ways of carrying IPv6 (TCP needs host rules, which only node
# speakers give their nodes: not tried here).
@pytest.mark.parametrize(
    ("router_kind", "sessions"), [("bird", "mp-bgp"), ("frr", "v6-session")], ids="-".join
)
def test_a_central_speaker_routes_ipv6_via_the_endpoint_nodes(
    bed_prerequisites: None,
    tmp_path: Path,
    router_kind: RouterKind,
    sessions: IPv6Sessions,
) -> None:
    with ipv6_bed("central", router_kind, sessions, tmp_path) as made:
        fib = FibLog(made.topology.router_ns, crash.POOL, POOL6)
        try:
            established(made.router, FIRST_CONVERGENCE_S)
            before = converged(made, fib, FIRST_CONVERGENCE_S)
            audit_in_sync(made, before)
            for name, nodes in MOVED.items():
                move_endpoints(made, name, nodes)
            assert converged(made, fib, CONVERGENCE_S) == before
        finally:
            fib.close()
