"""gobgpd crashing (SIGKILL) and coming back, with and without BGP graceful restart.

The bed (`crash_bed`, on porter_lab.reliability.bed): its own etcd and kube-apiserver;
BIRD or FRR in a router namespace;
three node namespaces. Per-node mode: a gobgpd and a `porter-lb agent` on every node. Central
mode: one gobgpd on node1 driven by `porter-lb controller --speaker central`. The controller
allocates in both. N LoadBalancer Services (externalTrafficPolicy Local, endpoints on two of
the three nodes, so each /32 has its own pair of next hops) come from one pool.

A trial (`crash`): every Service announced and routed; SIGKILL one gobgpd (node1's); wait until
its speaker has noticed (its log: a failed gobgpd call); keep it down `down_s`, deleting one
Service meanwhile; start gobgpd again on the same socket (as kubelet restarts the container)
and time, from "gobgpd answers gRPC again":
- RIB back: gobgpd's ListPath equals the desired paths of that speaker;
- FIB back: the router's kernel FIB holds exactly the desired routes (every prefix with its
  full next-hop set, the deleted Service's prefix gone).
The router's FIB is read through netlink (porter_lab.fib.FibLog, every change logged), so
"next hops lost" is a count of events. Without graceful restart the router withdraws the
crashed speaker's next hops at once (expected: its session closed); with it (BgpPeer and
BgpConf `gracefulRestart.enabled`; BIRD and FRR are helpers by default) it keeps them,
stale, until the restarted speaker's End-of-RIB, and then drops only what was not refreshed
(FRR 8.4 with ADD-PATH keeps one stale path of a prefix the speaker no longer announces until
its stalepath-time, FRRouting/frr#17372: the bed sets it, see STALEPATH_TIME).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from porter_lab import objects
from porter_lab.controllers import start_controller
from porter_lab.fib import FibLog
from porter_lab.processes import Daemon
from porter_lab.reliability.bed import (
    SYSTEM_NAMESPACE,
    IPv6Sessions,
    Mode,
    RouterKind,
    ServiceBed,
    running_bed,
)
from porter_lab.routers import BfdTimers, Frr, established
from porter_lab.waiting import wait_for

POOL = "10.201.0.0/22"  # routed only inside the bed's namespaces
NAMESPACE = "crash"
GR_RESTART_TIME = 120  # what the BgpPeer asks helpers to wait for us
# FRR: stale paths are dropped this long after the session went down, whatever happens; and
# the ones End-of-RIB misses (FRRouting/frr#17372) go only then. It must exceed the outage
# plus gobgpd's first connection attempt (5-10 s after AddPeer; FRR as helper waits for it).
STALEPATH_TIME = 30


def _log_lines(path: Path) -> list[dict[str, Any]]:
    found = []
    with contextlib.suppress(FileNotFoundError):
        for line in path.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                found.append(json.loads(line))
    return found


def _wall(entry: dict[str, Any]) -> float:
    """A porter-lb JSON log line's time as seconds since the epoch."""
    stamp = datetime.datetime.strptime(str(entry["ts"]), "%Y-%m-%dT%H:%M:%S.%fZ")
    return stamp.replace(tzinfo=datetime.UTC).timestamp()


def gobgpd_failures(path: Path, since_wall: float) -> list[float]:
    """Times (epoch s) a speaker logged that gobgpd failed or lost its instance, since
    `since_wall`."""
    return [
        _wall(entry)
        for entry in _log_lines(path)
        if str(entry.get("msg", "")).startswith("gobgpd")
        and entry.get("level") in ("warning", "error")
        and _wall(entry) >= since_wall
    ]


@dataclass
class CrashBed(ServiceBed):
    """The shared bed with one controller (allocating; in central mode also the speaker)."""

    controller: Daemon | None = None
    agent_args: tuple[str, ...] = ()  # more `porter-lb agent` options (e.g. host rules)

    @property
    def router_kind(self) -> RouterKind:
        return "frr" if isinstance(self.router, Frr) else "bird"

    def set_graceful_restart(self, enabled: bool) -> None:
        """BgpConf and BgpPeer `gracefulRestart` on or off. A change resets the sessions
        (gobgpd re-opens them with the new capability): call it before a trial."""
        settings = {"enabled": enabled, "restartTime": GR_RESTART_TIME}
        for collection, name in ((objects.BGP_CONFS, "default"), (objects.BGP_PEERS, "tor")):
            self.api.merge_patch(f"{collection}/{name}", {"spec": {"gracefulRestart": settings}})

    def desired_rib(self, speaker: int, ips: dict[str, str]) -> dict[str, frozenset[str]]:
        """What speaker `speaker`'s gobgpd must hold: prefix -> next hops (node mode: next hop
        self, 0.0.0.0, for the prefixes its node serves; central: every node's address)."""
        if self.mode == "central":
            return self.desired_fib(ips)
        node = self.topology.nodes[speaker].name
        return {
            f"{ips[name]}/32": frozenset({"0.0.0.0"})
            for name, nodes in self.services.items()
            if ips.get(name) and node in nodes
        }

    def held_rib(self, speaker: int) -> dict[str, frozenset[str]]:
        client = self.speakers[speaker].client
        assert client is not None
        held: dict[str, set[str]] = {}
        for route in client.local_routes():
            held.setdefault(route.prefix, set()).add(route.next_hop)
        return {prefix: frozenset(hops) for prefix, hops in held.items()}

    # -- porter-lb processes --------------------------------------------------------------

    def speaker_log(self, speaker: int) -> Path:
        if self.mode == "central":
            assert self.controller is not None
            return self.controller.log
        return self.agents[speaker].log

    def start(self) -> None:
        self.start_speakers(1, ("--log-format", "json", "--log-level", "info", *self.agent_args))
        extra: tuple[str, ...] = ()
        if self.mode == "central":
            extra = ("--speaker", "central", "--gobgp", self.speakers[0].target)
        self.controller = start_controller(
            self.kubeconfig,
            self.workdir / "controller.log",
            "--retry-period",
            "0.5",
            "--log-level",
            "info",
            *extra,
            identity="crash",
            namespace=SYSTEM_NAMESPACE,
            name="controller",
        )

    def check_running(self) -> None:
        super().check_running()
        assert self.controller is not None
        self.controller.check_running()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop(20)
        super().stop()


@contextlib.contextmanager
def crash_bed(
    mode: Mode,
    router_kind: RouterKind,
    *,
    workdir: Path | None = None,
    stalepath_time: int = STALEPATH_TIME,
    router_bfd: BfdTimers | None = None,
    neighbor_port: int = 179,
    agent_args: tuple[str, ...] = (),
    before_start: Callable[[CrashBed], None] | None = None,
    ipv6: IPv6Sessions | None = None,
    ipv6_pool: str = "",
    node_asns: Mapping[str, int] | None = None,
) -> Iterator[CrashBed]:
    """A running bed (see the module docstring; `ipv6`, `ipv6_pool`, `node_asns`:
    bed.running_bed);
    everything is stopped and removed after."""
    with running_bed(
        CrashBed,
        mode,
        pool=POOL,
        namespace=NAMESPACE,
        router_kind=router_kind,
        stalepath_time=stalepath_time,
        router_bfd=router_bfd,
        neighbor_port=neighbor_port,
        workdir=workdir,
        ipv6=ipv6,
        ipv6_pool=ipv6_pool,
        node_asns=node_asns,
    ) as bed:
        bed.agent_args = agent_args
        bed.base_objects(bed.topology.nodes[0].address if mode == "central" else "")
        if before_start is not None:
            before_start(bed)  # e.g. objects or processes the speakers must find
        bed.start()
        yield bed


# -- the scenario ------------------------------------------------------------------------------


@dataclass
class CrashResult:
    mode: Mode
    router: RouterKind
    graceful_restart: bool
    services: int
    down_s: float  # SIGKILL -> gobgpd answering gRPC again
    detect_s: float  # SIGKILL -> the speaker logged a failed gobgpd call
    withdrawn_s: float | None  # SIGKILL -> the router dropped every next hop of the dead speaker
    rib_back_s: float  # gobgpd answering -> its RIB equals the desired paths
    fib_back_s: float  # gobgpd answering -> every wanted prefix has exactly its next hops
    stale_gone_s: float  # gobgpd answering -> the prefix deleted meanwhile is out of the FIB
    prefixes_that_lost_a_next_hop: int  # besides the Service deleted while gobgpd was down
    deleted_prefix_gone: bool  # the Service deleted while down is out of the FIB at the end
    fib_exact: bool  # the FIB equals the desired routes at the end
    ips_changed: int
    speaker_errors: list[str] = field(default_factory=list)


def crash(
    bed: CrashBed,
    *,
    graceful_restart: bool,
    down_s: float = 2.0,
    speaker: int = 0,
    timeout: float = 60.0,
) -> CrashResult:
    """One trial (see the module docstring) on a bed whose Services are created already."""
    fib = FibLog(bed.topology.router_ns, POOL)
    try:
        bed.set_graceful_restart(graceful_restart)
        established(bed.router, 60)
        ips = bed.converged(fib, 300)
        # A graceful-restart change re-opens the sessions: wait for the routes to settle.
        wait_for(lambda: bed.held_rib(speaker) == bed.desired_rib(speaker, ips), 60, "RIB settled")
        victim = bed.speakers[speaker]
        node = bed.topology.nodes[speaker]
        # The Service deleted while gobgpd is down: one the dead speaker announces.
        doomed = next(name for name, nodes in sorted(bed.services.items()) if node.name in nodes)
        doomed_prefix = f"{ips[doomed]}/32"
        dead_hops = {
            prefix: hops & {node.address} if bed.mode == "node" else hops
            for prefix, hops in bed.desired_fib(ips).items()
        }

        killed_wall, killed = time.time(), time.monotonic()
        victim.kill()
        log = bed.speaker_log(speaker)
        detected = wait_for(
            lambda: gobgpd_failures(log, killed_wall - 0.002), 30, "the speaker to notice"
        )
        detect = min(detected) - killed_wall
        bed.delete_service(doomed)
        withdrawn: float | None = None
        if not graceful_restart:
            fib.wait_until(
                lambda routes: all(
                    not (routes.get(p, frozenset()) & hops) for p, hops in dead_hops.items()
                ),
                timeout,
            )
            # When the last of them went, from the change log (the wait may start late).
            withdrawn = (
                max(
                    when
                    for when, prefix, old, new in fib.since(killed)
                    if (old - new) & dead_hops.get(prefix, frozenset())
                )
                - killed
            )
        remaining = down_s - (time.monotonic() - killed)
        if remaining > 0:
            time.sleep(remaining)  # the outage itself, not a synchronisation
        if victim.client is not None:
            victim.client.close()
        victim.start()  # returns once gobgpd answers gRPC
        back = time.monotonic()
        desired_rib = bed.desired_rib(speaker, ips)  # without the deleted Service
        wait_for(lambda: bed.held_rib(speaker) == desired_rib, timeout, "gobgpd's RIB back", 0.01)
        rib_back = time.monotonic() - back
        desired_fib = bed.desired_fib(ips)
        fib_back = fib.wait_until(
            lambda routes: all(routes.get(p) == hops for p, hops in desired_fib.items()), timeout
        )
        stale_gone = fib.wait_until(lambda _routes: fib.snapshot() == desired_fib, timeout)
        lost = fib.lost_next_hops(killed)
        lost.pop(doomed_prefix, None)
        ips_after = bed.ips()
        final = fib.snapshot()
        return CrashResult(
            mode=bed.mode,
            router=bed.router_kind,
            graceful_restart=graceful_restart,
            services=len(bed.services) + 1,
            down_s=back - killed,
            detect_s=detect,
            withdrawn_s=withdrawn,
            rib_back_s=rib_back,
            fib_back_s=fib_back - back,
            stale_gone_s=stale_gone - back,
            prefixes_that_lost_a_next_hop=len(lost),
            deleted_prefix_gone=doomed_prefix not in final,
            fib_exact=final == desired_fib,
            ips_changed=sum(1 for name, ip in ips.items() if ips_after.get(name, ip) != ip),
            speaker_errors=[
                json.dumps(line)
                for line in _log_lines(log)
                if line.get("level") in ("error", "critical")
            ],
        )
    finally:
        fib.close()


def restore(bed: CrashBed, speaker: int = 0) -> None:
    """Make sure the speaker's gobgpd runs (after a trial that failed half-way)."""
    victim = bed.speakers[speaker]
    if victim.daemon is None or not victim.daemon.running():
        victim.start()
