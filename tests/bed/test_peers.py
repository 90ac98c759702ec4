"""porter-lb and MetalLB side by side on one bed (porter_lab.peers), as bench/peers.py runs
them: MetalLB v0.15.2 built from its pinned module, its controller and native-mode speakers
as real processes against the same API server and BIRD router.

Rule, written here: each system's Service gets exactly one IP, from its own system's pool;
the router's kernel FIB routes each IP to exactly the addresses of the nodes with an endpoint
of its Service, and nothing else of either pool, through four moves of each Service (both
nodes, the other node, none, the first again) made alternately.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from porter_lab import netns
from porter_lab.peers import POOLS, SYSTEMS, peers_bed
from porter_lab.topology import EIP_POOL
from porter_lab.waiting import wait_for


def test_porter_lb_and_metallb_each_route_only_their_own_service(
    bed_prerequisites: None, tmp_path: Path
) -> None:
    with peers_bed(tmp_path) as bed:
        address = {n.name: n.address for n in bed.topology.nodes}
        first = {system: [bed.nodes(system)[0].name] for system in SYSTEMS}
        for system in SYSTEMS:
            bed.add_service(system, system, first[system])

        def both_ips() -> dict[str, list[str]] | None:
            found = bed.ingress()
            return found if all(found.get(s) for s in SYSTEMS) else None

        ips = wait_for(both_ips, 60, "an IP for each system's Service")
        for system in SYSTEMS:
            assert len(ips[system]) == 1, ips
            assert ipaddress.ip_address(ips[system][0]) in ipaddress.ip_network(POOLS[system])

        def fib() -> dict[str, frozenset[str]]:
            pool = ipaddress.ip_network(EIP_POOL)
            return {
                prefix: frozenset(hops)
                for prefix, hops in netns.host_routes(bed.topology.router_ns).items()
                if ipaddress.ip_network(prefix).subnet_of(pool)  # type: ignore[arg-type]
            }

        current = dict(first)

        def routed() -> bool:
            bed.check_running()
            want = {
                f"{ips[s][0]}/32": frozenset(address[n] for n in current[s])
                for s in SYSTEMS
                if current[s]
            }
            return fib() == want

        wait_for(routed, 60, "each Service routed to its endpoint nodes", 0.1)
        for step in range(4):
            for system in SYSTEMS if step % 2 == 0 else SYSTEMS[::-1]:
                a, b = (n.name for n in bed.nodes(system))
                current[system] = [[a, b], [b], [], [a]][step]
                bed.move(system, current[system])
            wait_for(routed, 30, f"step {step}: the FIB as the rule says", 0.05)
        assert bed.ingress() == ips, "an IP changed, or a system wrote the other's Service"
