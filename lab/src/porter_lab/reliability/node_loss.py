"""A node lost without a TCP reset, with and without BFD: how long until the router's kernel FIB
stops sending to it.

The bed is gobgpd_crash's (`crash_bed`, node mode: a gobgpd and a `porter-lb agent` per node,
the controller allocating), its router optionally running BFD with every node
(`router_bfd`) and the BgpPeer asking the speakers for the same (`spec.bfd`). A trial
(`lose_node`): every Service announced and routed; the node's only link goes down on the
node's side (`ip link set eth0 down` in its namespace: the router's bridge port loses its
carrier, the router's own interface stays up, and no segment, RST or FIN reaches the router);
time until none of the router's kernel routes has the node as a next hop (porter_lab.fib,
from netlink events), and why the router says the session went down; then the link comes
back and the FIB is waited on until it is whole again.

Without BFD the router notices only when its hold timer expires (the bed's 9 s); with BFD
after `receive interval x multiplier` without a packet.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from porter_lab import netns, objects
from porter_lab.fib import FibLog
from porter_lab.reliability.gobgpd_crash import POOL, CrashBed
from porter_lab.routers import BfdTimers, established
from porter_lab.waiting import wait_for


@dataclass
class NodeLoss:
    router: str
    bfd: BfdTimers | None
    services: int
    gone_s: float  # link down -> no route of the router has the node as a next hop
    reason: str  # the router's own word for why the session went down
    back_s: float  # link up -> the FIB whole again


def set_bgppeer_bfd(bed: CrashBed, bfd: BfdTimers | None) -> None:
    """The BgpPeer's `spec.bfd`: the speakers run BFD with these timers, or none."""
    spec = (
        {
            "enabled": True,
            "transmitInterval": bfd.transmit_ms,
            "receiveInterval": bfd.receive_ms,
            "detectMultiplier": bfd.multiplier,
        }
        if bfd
        else None
    )
    bed.api.merge_patch(f"{objects.BGP_PEERS}/tor", {"spec": {"bfd": spec}})


def bfd_up(bed: CrashBed) -> bool:
    """Every node's BFD session is Up on the router."""
    states = bed.router.bfd_sessions()
    return all(states.get(n.address, "").lower() == "up" for n in bed.topology.nodes)


def bfd_any_up(bed: CrashBed) -> bool:
    """Some node's BFD session is Up on the router."""
    return any(state.lower() == "up" for state in bed.router.bfd_sessions().values())


def lose_node(bed: CrashBed, bfd: BfdTimers | None, node: int = 1, timeout: float = 60) -> NodeLoss:
    """One trial (see the module docstring) on a bed whose Services are created already."""
    victim = bed.topology.nodes[node]
    fib = FibLog(bed.topology.router_ns, POOL)
    try:
        if bfd is not None:
            wait_for(lambda: bfd_up(bed), 30, "BFD Up with every node on the router")
        else:
            # BFD just turned off: the router saw it go (AdminDown, and BIRD 2.0.12 and FRR
            # reset BGP for it); measure only once no node's BFD is Up on the router.
            wait_for(lambda: not bfd_any_up(bed), 30, "no BFD session Up on the router")
        established(bed.router, 60)
        ips = bed.converged(fib, 300)
        desired = bed.desired_fib(ips)
        served = [prefix for prefix, hops in desired.items() if victim.address in hops]
        assert served, f"{victim.name} serves no Service: nothing to measure"

        # Routes through the link (a default route) go with it and do not come back by
        # themselves: put them back after.
        routes = [
            line.split()
            for line in netns.run(["ip", "route", "show"], netns=victim.netns).splitlines()
            if "proto kernel" not in line
        ]
        cut = time.monotonic()
        netns.run(["ip", "link", "set", "eth0", "down"], netns=victim.netns)
        try:
            gone = fib.wait_until(
                lambda routes: all(victim.address not in routes.get(p, ()) for p in served),
                timeout,
            )
            reason = bed.router.last_down_reason(victim.address)
        finally:
            netns.run(["ip", "link", "set", "eth0", "up"], netns=victim.netns)
            for route in routes:
                netns.run(["ip", "route", "replace", *route], netns=victim.netns)
        restored = time.monotonic()
        established(bed.router, 60)
        back = fib.wait_until(lambda _routes: fib.snapshot() == desired, timeout)
        return NodeLoss(
            router=bed.router_kind,
            bfd=bfd,
            services=len(desired),
            gone_s=gone - cut,
            reason=reason,
            back_s=back - restored,
        )
    finally:
        fib.close()
