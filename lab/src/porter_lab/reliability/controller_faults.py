"""Faults of the control side: the controller restarting, the leader dying, the API server gone.

The bed (`fault_bed`, on porter_lab.reliability.bed): its own etcd and kube-apiserver;
BIRD in a router namespace; three
node namespaces, each with gobgpd and a `porter-lb agent` (per-node mode), or (central
mode, `--speaker central`) a gobgpd on node1 and one on node2, each the sidecar of one
controller replica; `porter-lb controller` processes.
Every porter-lb process reaches the API server through an `APIProxy`, which a scenario cuts
to make the API server unreachable for porter-lb while the scenario itself still changes the
cluster. N LoadBalancer Services (externalTrafficPolicy Local, endpoints on two of the three
nodes, so each /32 has its own pair of next hops) come from one pool.

What is watched, and how:
- the router's kernel FIB through netlink (`FibLog`): every change to a pool prefix, with its
  time, so "no route withdrawn, no next hop lost" is a count of events, not a sample;
- BIRD's BGP counters (`birdc show protocols all`): updates and withdraws received from the
  speakers, the BGP-level view of the same question;
- the Services' IPs through the API server; the controller's log ("caught up": its first
  allocation pass after start has drained its queue).

Each scenario returns a dataclass of figures; tests assert the invariants, bench/ the targets.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from porter_lab import objects
from porter_lab.apiproxy import APIProxy
from porter_lab.controllers import start_controller
from porter_lab.fib import FibLog
from porter_lab.kube import api_writes
from porter_lab.processes import Daemon
from porter_lab.reliability.bed import EIP_NAME, SYSTEM_NAMESPACE, Mode, ServiceBed, running_bed
from porter_lab.routers import Bird, Router, established
from porter_lab.waiting import wait_for
from porter_lb.kube.api import KubeError

POOL = "10.200.0.0/21"  # 2,048 addresses, routed only inside the bed's namespaces
NAMESPACE = "faults"
LEASE = f"/apis/coordination.k8s.io/v1/namespaces/{SYSTEM_NAMESPACE}/leases/porter-lb-controller"

# What porter-lb's processes write, Leases apart (leader election renews one every retry
# period, agents their heartbeats): the API server's own writes (its Endpoints) are not theirs.
PORTER_LB_WRITES = frozenset(
    {"services", "services/status", "eips", "eips/status", "bgppeers/status", "events"}
)
CENTRAL_REPLICAS = 2  # central mode: a gobgpd on node1 and one on node2, as two pods' sidecars


@dataclass(frozen=True)
class LeaseTiming:
    duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def args(self) -> tuple[str, ...]:
        return (
            "--lease-duration",
            str(self.duration),
            "--renew-deadline",
            str(self.renew_deadline),
            "--retry-period",
            str(self.retry_period),
        )


DEFAULT_TIMING = LeaseTiming()  # the controller's own defaults
FAST_TIMING = LeaseTiming(4.0, 3.0, 0.5)  # tests: the same behaviour, sooner


@dataclass
class Controller:
    """One `porter-lb controller` process (json logs, so its lines can be read back)."""

    identity: str
    daemon: Daemon

    def lines(self) -> list[dict[str, Any]]:
        found = []
        with contextlib.suppress(FileNotFoundError):
            for line in self.daemon.log.read_text(errors="replace").splitlines():
                with contextlib.suppress(ValueError):
                    found.append(json.loads(line))
        return found

    def logged(self, message: str) -> int:
        return sum(1 for line in self.lines() if line.get("msg") == message)

    def errors(self) -> list[str]:
        """Log lines at ERROR level or with a traceback, except the expected Lease loss."""
        return [
            json.dumps(line)
            for line in self.lines()
            if (line.get("level") in ("error", "critical") or "error" in line)
            and not str(line.get("msg", "")).startswith("lost the leader Lease")
            and "could not renew" not in str(line.get("msg", ""))
        ]


@dataclass
class FaultBed(ServiceBed):
    """The shared bed with porter-lb reaching the API server through `proxy`, and the
    controller replicas the scenario starts."""

    controllers: list[Controller] = field(default_factory=list)

    def lease_holder(self) -> str:
        try:
            return str(self.api.get(LEASE)["spec"].get("holderIdentity") or "")
        except KubeError:
            return ""

    def api_writes(self) -> dict[str, float]:
        """Writes the API server has served, by resource ("services/status"), all verbs."""
        totals: dict[str, float] = {}
        for key, count in api_writes(self.api.api_client).items():
            resource = key.split(" ", 1)[1]
            totals[resource] = totals.get(resource, 0.0) + count
        return totals

    def quiet(self, timeout: float = 120) -> None:
        """Wait until porter-lb has written nothing for a second (PORTER_LB_WRITES: the Events
        of a first allocation of N Services go out through a rate-limited queue)."""
        last: list[dict[str, float]] = []

        def still() -> bool:
            now = {k: v for k, v in self.api_writes().items() if k in PORTER_LB_WRITES}
            same = bool(last) and last[-1] == now
            last.append(now)
            return same

        wait_for(still, timeout, "the API server to see no more writes", 1.0)

    # -- porter-lb processes --------------------------------------------------------------

    def start_controller(self, identity: str, timing: LeaseTiming, replica: int = 0) -> Controller:
        """`replica` picks the central gobgpd (a pod's sidecar): 0 on node1, 1 on node2."""
        extra: tuple[str, ...] = ()
        if self.mode == "central":
            extra = (
                "--speaker",
                "central",
                "--gobgp",
                self.speakers[replica].target,
                "--router-id",
                self.topology.nodes[replica].address,
            )
        daemon = start_controller(
            self.kubeconfig,
            self.workdir / f"controller-{identity}-{len(self.controllers) + 1}.log",
            "--log-level",
            "info",
            *timing.args(),
            *extra,
            identity=identity,
            namespace=SYSTEM_NAMESPACE,
            name=f"controller-{identity}",
        )
        controller = Controller(identity, daemon)
        self.controllers.append(controller)
        return controller

    def established(self) -> None:
        """Wait for the BGP sessions of every agent's gobgpd, or (central) of replica 0's: a
        standby's gobgpd runs no BGP instance."""
        if self.mode == "node":
            established(self.router)
            return
        address = self.topology.nodes[0].address
        wait_for(
            lambda: self.router.sessions().get(address) == "Established",
            30,
            f"the BGP session with {address} on the router",
        )

    def check_running(self) -> None:
        super().check_running()
        for speaker in self.speakers:
            assert speaker.daemon is not None
            speaker.daemon.check_running()

    def stop(self) -> None:
        for controller in self.controllers:
            controller.daemon.stop(20)
        super().stop()

    @property
    def cut_proxy(self) -> APIProxy:
        assert self.proxy is not None
        return self.proxy


def bird_counters(router: Router) -> dict[str, int]:
    """BGP updates and withdraws BIRD received from all its neighbours (import counters)."""
    assert isinstance(router, Bird), "the controller-fault bed runs BIRD"
    totals = {"updates": 0, "withdraws": 0}
    for line in router.birdc("show protocols all").splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[0] == "Import" and fields[1] in ("updates:", "withdraws:"):
            totals[fields[1].removesuffix(":")] += int(fields[2])
    return totals


@contextlib.contextmanager
def fault_bed(mode: Mode, *, workdir: Path | None = None) -> Iterator[FaultBed]:
    """A running bed (see the module docstring); everything is stopped and removed after."""
    with running_bed(
        FaultBed,
        mode,
        pool=POOL,
        namespace=NAMESPACE,
        central_speakers=CENTRAL_REPLICAS,
        proxy=True,
        workdir=workdir,
    ) as bed:
        # No router ID in the BgpConf: each central replica takes its own (--router-id).
        bed.base_objects()
        bed.start_speakers(CENTRAL_REPLICAS, ("--log-level", "warning"))
        yield bed


# -- scenarios ---------------------------------------------------------------------------------


@dataclass
class RestartResult:
    services: int
    mode: Mode
    ips_changed: int
    fib_changes: int  # any change to a pool prefix in the router's FIB while restarting
    next_hops_lost: int  # prefixes that lost a next hop at some point
    bgp_updates: int  # BGP updates BIRD received while restarting
    bgp_withdraws: int
    api_writes: dict[str, float]  # porter-lb's writes meanwhile, by resource (PORTER_LB_WRITES)
    caught_up_s: float  # process start -> its first allocation pass has drained the queue
    new_service_ip_s: float  # a Service created once caught up -> its IP
    down_s: float  # SIGTERM -> process exited


def restart(bed: FaultBed, services: int, timing: LeaseTiming = FAST_TIMING) -> RestartResult:
    """N Services allocated and announced; SIGTERM the controller, start it again; then one
    new Service, to show the restarted controller is live."""
    fib = FibLog(bed.topology.router_ns, POOL)
    try:
        first = bed.start_controller("first", timing)
        bed.established()
        bed.add_services(services)
        ips = bed.converged(fib, 600)
        wait_for(lambda: first.logged("caught up"), 60, "the first controller caught up")
        bed.quiet()
        counters, writes = bird_counters(bed.router), bed.api_writes()
        started = time.monotonic()
        first.daemon.stop(30)
        down = time.monotonic() - started
        assert first.daemon.process is not None and first.daemon.process.returncode == 0
        launched = time.monotonic()
        second = bed.start_controller("second", timing)
        wait_for(
            lambda: second.daemon.check_running() and second.logged("caught up"),
            300,
            "the restarted controller to catch up",
            0.02,
        )
        caught_up = time.monotonic() - launched
        after_counters, after_writes = bird_counters(bed.router), bed.api_writes()
        window_changes = fib.since(started)
        lost = fib.lost_next_hops(started)
        ips_after = bed.ips()
        probe = time.monotonic()
        bed.add_service("probe", bed.endpoint_nodes(0))
        wait_for(lambda: bed.ips().get("probe"), 60, "an IP for the probe Service", 0.02)
        new_ip = time.monotonic() - probe
        return RestartResult(
            services=services,
            mode=bed.mode,
            ips_changed=sum(1 for name, ip in ips.items() if ips_after.get(name) != ip),
            fib_changes=len(window_changes),
            next_hops_lost=len(lost),
            bgp_updates=after_counters["updates"] - counters["updates"],
            bgp_withdraws=after_counters["withdraws"] - counters["withdraws"],
            api_writes={
                k: v - writes.get(k, 0.0)
                for k, v in after_writes.items()
                if v != writes.get(k, 0.0) and k in PORTER_LB_WRITES
            },
            caught_up_s=caught_up,
            new_service_ip_s=new_ip,
            down_s=down,
        )
    finally:
        fib.close()


@dataclass
class FailoverResult:
    timing: LeaseTiming
    takeover_s: float  # leader SIGKILLed -> the standby holds the Lease
    new_service_ip_s: float  # leader SIGKILLed -> a Service created right then has its IP
    ips_changed: int
    duplicate_ips: int
    next_hops_lost: int
    stale_paths: int  # central: paths the crashed replica's gobgpd holds once it is a standby


def failover(bed: FaultBed, services: int, timing: LeaseTiming) -> FailoverResult:
    """Two replicas; SIGKILL the leader (no Lease release, as a crash or a lost node)."""
    fib = FibLog(bed.topology.router_ns, POOL)
    try:
        leader = bed.start_controller("a", timing)
        wait_for(lambda: bed.lease_holder() == "a", 60, "replica a to lead")
        standby = bed.start_controller("b", timing, replica=1)
        bed.established()
        bed.add_services(services)
        ips = bed.converged(fib, 600)
        wait_for(lambda: standby.logged("caches synced"), 60, "the standby's caches")
        killed = time.monotonic()
        leader.daemon.kill()
        bed.add_service("after-kill", bed.endpoint_nodes(1))
        wait_for(lambda: bed.lease_holder() == "b", timing.duration * 4, "b to take over", 0.02)
        takeover = time.monotonic() - killed
        wait_for(lambda: bed.ips().get("after-kill"), 60, "an IP from the new leader", 0.02)
        new_ip = time.monotonic() - killed
        bed.converged(fib, 60)
        lost = fib.lost_next_hops(killed)
        # The crashed replica comes back (its container restarted, its gobgpd still up with
        # the routes it had): a standby now, it must not keep announcing them.
        restarted = bed.start_controller("a", timing)
        wait_for(lambda: restarted.logged("caches synced"), 60, "a back as a standby")
        bed.delete_service(sorted(ips)[0])  # one the crashed replica's gobgpd announces
        bed.add_service("after-restart", bed.endpoint_nodes(2))
        ips_after = bed.converged(fib, 60)
        published = [ip for ip in ips_after.values() if ip]
        client = bed.speakers[0].client
        assert client is not None
        held = client.local_routes() if bed.mode == "central" else []
        return FailoverResult(
            stale_paths=len(held),
            timing=timing,
            takeover_s=takeover,
            new_service_ip_s=new_ip,
            ips_changed=sum(
                1 for name, ip in ips.items() if name in bed.services and ips_after[name] != ip
            ),
            duplicate_ips=len(published) - len(set(published)),
            next_hops_lost=len(lost),
        )
    finally:
        fib.close()


@dataclass
class OutageResult:
    how: str  # "cut" (porter-lb cut off, changes meanwhile) or "stop" (kube-apiserver stopped)
    outage_s: float
    fib_changes_during: int  # changes to pool prefixes at the router while the API was gone
    bgp_withdraws_during: int
    processes_alive: bool
    changes_made: int  # Services created, deleted and moved during the outage
    resync_s: float  # API back -> the FIB shows every change, every new Service has its IP
    # ("stop": the changes are made when it is back, so this includes making them)
    ips_changed: int  # Services untouched by the changes whose IP changed
    leaked_ips: int  # addresses still claimed in the Eip's status by deleted Services
    leader_terms: int  # terms the one replica led: 2 when it stepped down and led again
    lease_holder: str  # who holds the Lease at the end


def outage(
    bed: FaultBed,
    services: int,
    seconds: float,
    changes: int,
    timing: LeaseTiming,
    *,
    how: Literal["cut", "stop"] = "cut",
) -> OutageResult:
    """The API server gone for `seconds`, then `changes` Services created, `changes` deleted
    and `changes` moved to other nodes.

    how="cut": the relay drops porter-lb's connections and refuses new ones, and the changes
    are made meanwhile (straight to the API server), so porter-lb must catch up with them.
    how="stop": kube-apiserver itself is stopped and started again (a new process: watches
    resume or relist against it); the changes are made the moment it is back.
    """
    fib = FibLog(bed.topology.router_ns, POOL)
    try:
        controller = bed.start_controller("only", timing)
        bed.established()
        names = bed.add_services(services)
        ips = bed.converged(fib, 600)
        counters = bird_counters(bed.router)
        deleted = names[:changes]
        moved = names[changes : 2 * changes]
        created: list[str] = []

        def make_changes() -> None:
            for name in deleted:
                bed.delete_service(name)
            for index, name in enumerate(moved):
                bed.move_endpoints(name, bed.endpoint_nodes(index + 2))
            created.extend(bed.add_services(changes, prefix="new", start=services))

        cut = time.monotonic()
        if how == "cut":
            bed.cut_proxy.cut()
            make_changes()  # through the API server porter-lb cannot reach
        else:
            bed.plane.stop_apiserver()
        end = cut + seconds
        pause = threading.Event()
        alive = True
        while (remaining := end - time.monotonic()) > 0:
            try:
                bed.check_running()
                controller.daemon.check_running()
            except Exception:  # noqa: BLE001 - reported as a figure, asserted by the test
                alive = False
                break
            pause.wait(min(remaining, 1.0))
        during = fib.since(cut)
        withdraws = bird_counters(bed.router)["withdraws"] - counters["withdraws"]
        if how == "cut":
            back = time.monotonic()
            bed.cut_proxy.restore()
        else:
            bed.plane.start_apiserver()
            back = time.monotonic()
            make_changes()
        final = bed.converged(fib, 120)
        resync = time.monotonic() - back
        eip = bed.api.get(f"{objects.EIPS}/{EIP_NAME}")
        used = eip.get("status", {}).get("used") or {}
        gone = {f"{NAMESPACE}/{name}" for name in deleted}
        leaked = sum(1 for holders in used.values() if set(str(holders).split(";")) & gone)
        untouched = [n for n in names if n not in deleted]
        return OutageResult(
            how=how,
            outage_s=back - cut,
            fib_changes_during=len(during),
            bgp_withdraws_during=withdraws,
            processes_alive=alive,
            changes_made=len(deleted) + len(moved) + len(created),
            resync_s=resync,
            ips_changed=sum(1 for n in untouched if final.get(n) != ips[n]),
            leaked_ips=leaked,
            leader_terms=controller.logged("became leader"),
            lease_holder=bed.lease_holder(),
        )
    finally:
        fib.close()
