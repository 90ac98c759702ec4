"""Layer-2 announcement on a node: answer ARP and NDP for the Service IPs this node won.

For Eips with `protocol: layer2`, exactly one node answers for each IP: the one
`porter_lb.layer2.election` picks among the eligible, alive nodes (heartbeats:
`porter_lb.layer2.heartbeat`). This module is the shell around that decision:

* `Responder`: one per interface; raw AF_PACKET sockets (ARP, and ICMPv6 neighbour
  solicitations through a socket filter) opened inside the node's network namespace; it answers
  with the interface's own MAC for the IPs it holds right now, and sends a gratuitous burst
  (ARP request + reply, unsolicited NA) when an IP is added. Removing an IP stops its answers at
  once — the next request is checked against the new set (OpenELB kept answering after losing).
* `Layer2Announcer`: the level-triggered loop. On any change of Services, EndpointSlices,
  Nodes, Eips or of who is alive, it recomputes the whole assignment, diffs it against what
  the responders hold and applies the delta. It also watches its links' carrier (every 0.1 s)
  and publishes the Eips it cannot answer for in its heartbeat, so a cut link hands over fast.

**Break before make.** A node that loses an IP drops it as soon as it sees the change; a node
that (re)joins — agent start, link back, its own heartbeats visible again — waits `join_delay`
(the heartbeat timeout) before it answers, so the node it takes over from has already stopped.
A node that takes over because the announcer died answers at once (that is the failover path).

**Stale view.** While this agent does not see its own heartbeats (API server unreachable), it
cannot tell dead peers from a broken watch: it keeps answering what it answered and takes over
nothing, rather than every node claiming every IP or all of them falling silent.

**Network namespace.** `netns` ("" for the agent's own; a name under /run/netns; or an absolute
path: `porter_lb.host.netns`) is where the node's interfaces are. Sockets are created inside it by a
thread that enters it with setns and comes back (the lab runs agents in the host namespace,
beside the API server).
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import logging
import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Counter, Gauge

from porter_lb.host.netlink import Link, Links
from porter_lb.host.netns import entered
from porter_lb.kube.api import KubeAPI
from porter_lb.kube.events import EventRecorder, Warnings
from porter_lb.kube.informers import Caches
from porter_lb.layer2 import packets
from porter_lb.layer2.election import (
    Assignment,
    InterfaceSpec,
    Layer2Pool,
    assignments,
    layer2_pools,
    node_assignments,
)
from porter_lb.layer2.heartbeat import (
    DEFAULT_INTERVAL,
    DEFAULT_TIMEOUT,
    NodeHeartbeat,
    NodeLiveness,
)
from porter_lb.model.resources import (
    LOAD_BALANCER_CLASS,
    Endpoint,
    ModelError,
    Node,
    Obj,
    ServiceTraffic,
    endpoints_from_slice,
    node_from_object,
    selects_porter,
    slice_service_key,
    traffic_from_service,
)
from porter_lb.telemetry import metrics

log = logging.getLogger(__name__)

LAYER2_KINDS = ("Service", "EndpointSlice", "Node", "Eip")

ANSWERS = Counter(
    "porter_lb_layer2_answers",
    "ARP requests and NDP neighbour solicitations answered",
    ["node", "interface", "protocol"],
    registry=metrics.REGISTRY,
)
GRATUITOUS = Counter(
    "porter_lb_layer2_gratuitous_packets",
    "Gratuitous ARP packets and unsolicited neighbour advertisements sent",
    ["node", "interface", "protocol"],
    registry=metrics.REGISTRY,
)
ANNOUNCED = Gauge(
    "porter_lb_layer2_announced",
    "1 for each IP this node answers ARP/NDP for",
    ["node", "ip", "pool", "interface"],
    registry=metrics.REGISTRY,
)
ALIVE_NODES = Gauge(
    "porter_lb_layer2_alive_nodes",
    "Nodes whose heartbeat this agent sees as fresh",
    ["node"],
    registry=metrics.REGISTRY,
)

GRATUITOUS_SCHEDULE = (0.0, 0.1, 0.5, 2.0)
"""Seconds after takeover at which each round of gratuitous packets goes out: the first at
once, the others in case one is lost (they cost one frame per IP and family)."""

CARRIER_POLL = 0.1

_SOL_PACKET = 263
_PACKET_ADD_MEMBERSHIP = 1
_PACKET_MR_ALLMULTI = 2
_PACKET_OUTGOING = 4
_SO_ATTACH_FILTER = 26

# Classic BPF, so the sockets wake only for what they answer.
_ARP_REQUESTS = ((0x28, 0, 0, 20), (0x15, 0, 1, 1), (0x06, 0, 0, 0x40000), (0x06, 0, 0, 0))
_NEIGHBOR_SOLICITATIONS = (
    (0x30, 0, 0, 20),  # IPv6 next header
    (0x15, 0, 3, 58),  # ICMPv6
    (0x30, 0, 0, 54),  # ICMPv6 type
    (0x15, 0, 1, 135),  # neighbour solicitation
    (0x06, 0, 0, 0x40000),
    (0x06, 0, 0, 0),
)


def _attach_filter(sock: socket.socket, program: tuple[tuple[int, int, int, int], ...]) -> None:
    code = b"".join(struct.pack("HBBI", *instruction) for instruction in program)
    buffer = ctypes.create_string_buffer(code)
    fprog = struct.pack("HL", len(program), ctypes.addressof(buffer))
    sock.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_FILTER, fprog)


class Responder:
    """Answers ARP/NDP on one interface for the IPs in `ips` (see the module docstring)."""

    def __init__(self, link: Link, netns: str, node: str) -> None:
        self.link = link
        self.node = node
        self._ips: frozenset[Any] = frozenset()
        self._bursts: list[tuple[float, int, Any]] = []  # (due, round, ip)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        with entered(netns):
            self._arp = socket.socket(
                socket.AF_PACKET, socket.SOCK_RAW, socket.htons(packets.ETH_P_ARP)
            )
            self._nd = socket.socket(
                socket.AF_PACKET, socket.SOCK_RAW, socket.htons(packets.ETH_P_IPV6)
            )
        try:
            _attach_filter(self._arp, _ARP_REQUESTS)
            _attach_filter(self._nd, _NEIGHBOR_SOLICITATIONS)
            self._arp.bind((link.name, packets.ETH_P_ARP))
            self._nd.bind((link.name, packets.ETH_P_IPV6))
            mreq = struct.pack("iHH8s", link.index, _PACKET_MR_ALLMULTI, 0, b"")
            self._nd.setsockopt(_SOL_PACKET, _PACKET_ADD_MEMBERSHIP, mreq)
        except OSError:
            self._arp.close()
            self._nd.close()
            raise
        self._answers = {p: ANSWERS.labels(node, link.name, p) for p in ("arp", "ndp")}
        self._gratuitous = {p: GRATUITOUS.labels(node, link.name, p) for p in ("arp", "ndp")}
        self._thread = threading.Thread(target=self._run, name=f"l2-{link.name}", daemon=True)
        self._thread.start()

    @property
    def ips(self) -> frozenset[str]:
        return frozenset(str(ip) for ip in self._ips)

    def set_ips(self, ips: frozenset[str]) -> set[str]:
        """Answer for exactly `ips` from now on; a gratuitous burst for each new one."""
        wanted = frozenset(ipaddress.ip_address(ip) for ip in ips)
        with self._lock:
            added = wanted - self._ips
            self._ips = wanted
            self._bursts = [b for b in self._bursts if b[2] in wanted]
            now = time.monotonic()
            self._bursts += [(now + GRATUITOUS_SCHEDULE[0], 0, ip) for ip in added]
        if added:
            self._announce_due()
        return {str(ip) for ip in added}

    def close(self) -> None:
        """Stop answering now; the thread closes the sockets on its way out (within 0.2 s)."""
        with self._lock:
            self._ips = frozenset()
            self._bursts = []
        self._stop.set()

    def _announce_due(self) -> None:
        now = time.monotonic()
        with self._lock:
            due = [b for b in self._bursts if b[0] <= now]
            self._bursts = [b for b in self._bursts if b[0] > now]
            for _, round_, ip in due:
                if round_ + 1 < len(GRATUITOUS_SCHEDULE):
                    delay = GRATUITOUS_SCHEDULE[round_ + 1] - GRATUITOUS_SCHEDULE[round_]
                    self._bursts.append((now + delay, round_ + 1, ip))
            current = self._ips
        for _, _, ip in due:
            if ip in current:
                self._send_gratuitous(ip)

    def _send_gratuitous(self, ip: Any) -> None:
        try:
            if ip.version == 4:
                for operation in (packets.ARP_REQUEST, packets.ARP_REPLY):
                    self._arp.send(packets.gratuitous_arp(self.link.mac, ip, operation))
                    self._gratuitous["arp"].inc()
            else:
                source = self.link.link_local or str(ip)
                self._nd.send(packets.neighbor_advertisement(self.link.mac, source, ip))
                self._gratuitous["ndp"].inc()
        except OSError as error:
            log.debug("gratuitous for %s on %s: %s", ip, self.link.name, error)

    def _run(self) -> None:
        try:
            self._serve()
        finally:
            self._arp.close()
            self._nd.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                next_due = min((b[0] for b in self._bursts), default=None)
            timeout = 0.2 if next_due is None else max(0.0, min(0.2, next_due - time.monotonic()))
            try:
                readable, _, _ = select.select([self._arp, self._nd], [], [], timeout)
            except (OSError, ValueError):
                return  # closed
            for sock in readable:
                try:
                    frame, address = sock.recvfrom(2048)
                except OSError:
                    continue
                if address[2] == _PACKET_OUTGOING:
                    continue
                if sock is self._arp:
                    self._on_arp(frame)
                else:
                    self._on_nd(frame)
            if next_due is not None:
                self._announce_due()

    def _on_arp(self, frame: bytes) -> None:
        request = packets.parse_arp(frame)
        if (
            request is None
            or request.operation != packets.ARP_REQUEST
            or request.gratuitous
            or request.sender_mac == self.link.mac
            or request.target_ip not in self._ips
        ):
            return
        with contextlib.suppress(OSError):
            self._arp.send(packets.arp_reply(self.link.mac, request))
            self._answers["arp"].inc()

    def _on_nd(self, frame: bytes) -> None:
        solicitation = packets.parse_nd(frame)
        if (
            solicitation is None
            or solicitation.icmp_type != packets.ICMPV6_NEIGHBOR_SOLICITATION
            or solicitation.eth_source == self.link.mac
            or solicitation.target not in self._ips
        ):
            return
        source = self.link.link_local or str(solicitation.target)
        frame_out = packets.neighbor_advertisement(
            self.link.mac, source, solicitation.target, solicitation=solicitation
        )
        with contextlib.suppress(OSError):
            self._nd.send(frame_out)
            self._answers["ndp"].inc()


@dataclass
class _State:
    """What the loop last applied, to decide whether anything needs recomputing."""

    alive: dict[str, frozenset[str]] = field(default_factory=dict)
    unavailable: frozenset[str] = frozenset()
    armed: frozenset[str] = frozenset()
    fresh: bool = False


class Layer2Announcer:
    """Keeps this node's responders equal to what the election gives it (see module doc)."""

    def __init__(
        self,
        informers: Caches,
        api: KubeAPI,
        recorder: EventRecorder | None,
        *,
        node_name: str,
        namespace: str,
        netns: str = "",
        heartbeat_interval: float = DEFAULT_INTERVAL,
        heartbeat_timeout: float = DEFAULT_TIMEOUT,
        class_name: str = LOAD_BALANCER_CLASS,
        join_delay: float | None = None,
        accept_ips: Callable[[frozenset[str]], None] | None = None,
    ) -> None:
        self.informers = informers
        self.accept_ips = accept_ips
        self.recorder = recorder
        self.node_name = node_name
        self.netns = netns
        self.class_name = class_name
        self.join_delay = heartbeat_timeout if join_delay is None else join_delay
        self._cond = threading.Condition()
        self._dirty = True
        self._unavailable: frozenset[str] = frozenset()
        self._has_layer2 = False
        self.liveness = NodeLiveness(
            api, namespace, timeout=heartbeat_timeout, on_change=self._wake
        )
        self.heartbeat = NodeHeartbeat(
            api,
            namespace,
            node_name,
            interval=heartbeat_interval,
            unavailable=lambda: self._unavailable,
            wanted=lambda: self._has_layer2,
        )
        self.responders: dict[str, Responder] = {}
        self.assignments: dict[str, Assignment] = {}  # the whole cluster's, last computed
        self._links: Links | None = None
        self._usable_since: dict[str, float] = {}  # pool -> when it last became usable here
        self._fresh_since: float | None = None
        self._state = _State()
        self._warnings = Warnings(recorder, log)
        self._sysctl_checked: set[str] = set()
        self._threads: list[threading.Thread] = []
        for kind in LAYER2_KINDS:
            informers.subscribe(kind, self._on_change)

    def _on_change(self, _key: str, _old: Obj | None, _new: Obj | None) -> None:
        with self._cond:
            self._dirty = True
            self._cond.notify()

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify()

    # Running.

    def start(self, stop: threading.Event) -> None:
        """Start the heartbeat, the Lease watch and the loop in background threads."""
        self.liveness.start()
        for name, target in (("l2-heartbeat", self.heartbeat.run), ("l2-announcer", self.run)):
            thread = threading.Thread(target=target, args=(stop,), name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def problem(self) -> str | None:
        """For the liveness check: which of its threads died, if one did."""
        dead = [thread.name for thread in self._threads if not thread.is_alive()]
        return f"layer-2 thread(s) {', '.join(dead)} stopped" if dead else None

    def join(self, timeout: float = 5.0) -> None:
        """After `stop` was set: wait for the loop (which stops answering first) and the
        heartbeat (which then releases the Lease)."""
        self._wake()
        self.heartbeat.poke()
        for thread in self._threads:
            thread.join(timeout)
        self.liveness.stop()

    def run(self, stop: threading.Event) -> None:
        while not self.informers.wait_synced(1.0):
            if stop.is_set():
                return
        self._links = Links(self.netns)
        try:
            while not stop.is_set():
                try:
                    wake_at = self.step()
                except Exception:
                    log.exception("layer2 reconcile failed")
                    with self._cond:
                        self._dirty = True  # recompute and apply again, not only on a change
                    wake_at = time.monotonic() + 1.0
                with self._cond:
                    if not self._dirty and not stop.is_set():
                        self._cond.wait(max(0.0, min(wake_at - time.monotonic(), CARRIER_POLL)))
        finally:
            for responder in self.responders.values():
                responder.close()  # stop answering before the heartbeat is released
            if self.accept_ips is not None:
                # Another node answers for these IPs now: with a local route left here, this
                # node's kernel could answer ARP for them too (arp_ignore=0).
                with contextlib.suppress(Exception):
                    self.accept_ips(frozenset())
            self.heartbeat.poke()
            self.responders.clear()
            ANNOUNCED.clear()
            self._links.close()

    # One step.

    def _pools(self) -> list[Layer2Pool]:
        pools, errors = layer2_pools(self.informers.items("Eip"))
        for eip, error in errors:
            self._warnings.warn(eip, "Eip", "InvalidEip", str(error))
        self._has_layer2 = bool(pools)
        return pools

    def _resolve(
        self, pools: list[Layer2Pool], links: Mapping[str, Link]
    ) -> dict[str, Link | None]:
        assert self._links is not None
        resolved: dict[str, Link | None] = {}
        cache: dict[InterfaceSpec, str | None] = {}
        for pool in pools:
            spec = pool.interface
            if spec not in cache:
                cache[spec] = spec.name or self._links.toward(spec.can_reach, links)
            name = cache[spec]
            link = links.get(name) if name else None
            resolved[pool.name] = link
            if link is not None and link.name not in self._sysctl_checked:
                self._sysctl_checked.add(link.name)
                self._check_sysctls(link.name)
        return resolved

    def _check_sysctls(self, interface: str) -> None:
        assert self._links is not None
        values = [
            self._links.sysctl(f"net.ipv4.conf.{scope}.arp_ignore") for scope in ("all", interface)
        ]
        if all(value in (None, "0") for value in values):
            log.warning(
                "net.ipv4.conf.%s.arp_ignore is 0: if Service IPs are local addresses on this "
                "node, the kernel answers ARP for them too, from every node; set arp_ignore=1",
                interface,
            )

    def _services(self) -> tuple[list[ServiceTraffic], dict[str, list[Endpoint]]]:
        traffic: list[ServiceTraffic] = []
        for service in self.informers.items("Service"):
            if not selects_porter(service, self.class_name):
                continue
            try:
                item = traffic_from_service(service)
            except ModelError:
                continue  # the speaker reports invalid Services
            if item.ips:
                traffic.append(item)
        endpoints: dict[str, list[Endpoint]] = {}
        for endpoint_slice in self.informers.items("EndpointSlice"):
            key = slice_service_key(endpoint_slice)
            if key:
                endpoints.setdefault(key, []).extend(endpoints_from_slice(endpoint_slice))
        return traffic, endpoints

    def _nodes(self) -> dict[str, Node]:
        nodes = {}
        for obj in self.informers.items("Node"):
            with contextlib.suppress(ModelError):
                node = node_from_object(obj)
                nodes[node.name] = node
        return nodes

    def _local(
        self, now: float, pools: list[Layer2Pool]
    ) -> tuple[dict[str, Link], dict[str, Link | None], frozenset[str]]:
        """This node's links, each pool's link, and the pools it cannot answer for now."""
        assert self._links is not None
        links = self._links.all()
        resolved = self._resolve(pools, links)
        unavailable = frozenset(
            name for name, link in resolved.items() if link is None or not link.running
        )
        for pool in pools:
            if pool.name in unavailable:
                self._usable_since.pop(pool.name, None)
            else:
                self._usable_since.setdefault(pool.name, now)
        if unavailable != self._unavailable:
            self._unavailable = unavailable
            self.heartbeat.poke()
        return links, resolved, unavailable

    def _armed(self, now: float, pools: list[Layer2Pool]) -> tuple[frozenset[str], float]:
        """The pools this node may answer for (joined long enough), and when the next arms."""
        armed = set()
        wake_at = now + CARRIER_POLL
        for pool in pools:
            if pool.name not in self._usable_since or self._fresh_since is None:
                continue
            since = max(self._usable_since[pool.name], self._fresh_since)
            if now - since >= self.join_delay:
                armed.add(pool.name)
            else:
                wake_at = min(wake_at, since + self.join_delay)
        return frozenset(armed), wake_at

    def step(self) -> float:
        """Recompute if anything changed and apply; returns when to look again at the latest."""
        now = time.monotonic()
        with self._cond:
            dirty, self._dirty = self._dirty, False
        pools = self._pools()
        links, resolved, unavailable = self._local(now, pools)
        alive = self.liveness.alive()
        fresh = self.node_name in alive
        if not fresh:
            self._fresh_since = None
        elif self._fresh_since is None:
            self._fresh_since = now
        ALIVE_NODES.labels(self.node_name).set(len(alive))
        armed, wake_at = self._armed(now, pools)
        expiry = self.liveness.next_expiry()
        if expiry is not None:
            wake_at = min(wake_at, expiry)

        state = _State(dict(alive), unavailable, armed, fresh)
        if not dirty and state == self._state:
            return wake_at
        self._state = state

        if not fresh:
            if self._has_layer2 and any(r.ips for r in self.responders.values()):
                log.warning(
                    "own heartbeat not seen for %.2fs: holding layer2 state", self.join_delay
                )
            held = {n: r.ips for n, r in self.responders.items() if n in links and links[n].running}
            self._apply(held, links, {})
            return wake_at

        traffic, endpoints = self._services()
        self.assignments = assignments(traffic, endpoints, self._nodes(), pools, alive)
        desired_ips: dict[str, set[str]] = {}
        placed: dict[str, tuple[Assignment, str]] = {}
        for ip, assignment in node_assignments(self.assignments, self.node_name).items():
            link = resolved.get(assignment.pool)
            if assignment.pool in armed and link is not None:
                desired_ips.setdefault(link.name, set()).add(ip)
                placed[ip] = (assignment, link.name)
        self._apply({k: frozenset(v) for k, v in desired_ips.items()}, links, placed)
        return wake_at

    def _apply(
        self,
        desired: Mapping[str, frozenset[str]],
        links: Mapping[str, Link],
        placed: Mapping[str, tuple[Assignment, str]],
    ) -> None:
        # The node accepts an IP before it answers for it, and stops accepting it only after
        # it stopped answering (the host rules' order, as for BGP).
        # (HostRules.sync returns at once when the set is what it holds.)
        wanted = frozenset().union(*desired.values()) if desired else frozenset()
        if self.accept_ips is not None:
            self.accept_ips(wanted | frozenset(self.announced()))
        for name in list(self.responders):
            responder = self.responders[name]
            link = links.get(name)
            if name not in desired or link is None or link.index != responder.link.index:
                responder.close()
                del self.responders[name]
                log.info("layer2: stopped answering on %s", name, extra={"node": self.node_name})
        for name, ips in desired.items():
            if name not in self.responders:
                try:
                    self.responders[name] = Responder(links[name], self.netns, self.node_name)
                except OSError as error:
                    log.warning("layer2: cannot open %s: %s", name, error)
                    continue
            responder = self.responders[name]
            before = responder.ips
            added = responder.set_ips(ips)
            for ip in sorted(before - ips):
                log.info("layer2: stopped answering for %s on %s", ip, name)
            for ip in sorted(added):
                log.info("layer2: answering for %s on %s", ip, name, extra={"ip": ip})
                if ip in placed:
                    self._record_takeover(placed[ip][0], name)
        if self.accept_ips is not None:
            self.accept_ips(wanted)
        ANNOUNCED.clear()
        for ip, (assignment, name) in placed.items():
            if name in self.responders and ip in self.responders[name].ips:
                ANNOUNCED.labels(self.node_name, ip, assignment.pool, name).set(1)

    def _record_takeover(self, assignment: Assignment, interface: str) -> None:
        if self.recorder is None:
            return
        for key in assignment.services:
            service = self.informers.get("Service", key)
            if service is not None:
                self.recorder.normal(
                    {**service, "kind": "Service", "apiVersion": "v1"},
                    "AnnouncingLayer2",
                    f"node {self.node_name} answers ARP/NDP for {assignment.ip} on {interface}",
                )

    def announced(self) -> dict[str, str]:
        """IP -> interface this node answers for right now."""
        return {ip: name for name, r in list(self.responders.items()) for ip in r.ips}
