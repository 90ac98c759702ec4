"""The BGP speaker driver: Kubernetes objects in, one gobgpd's peers and RIB out.

A `Speaker` follows the informers' caches (Service, EndpointSlice, Node, Eip, BgpConf,
BgpPeer, Secret) and keeps one gobgpd in step with them, level-triggered:

* **what to announce** comes from `porter_lb.routing.routes`: for each Service porter-lb implements,
  the IPs in `status.loadBalancer.ingress` (written by the controller; the speaker never
  allocates) that lie in an Eip announced over BGP (`protocol: bgp`, not being deleted), and
  the nodes eligible for it (externalTrafficPolicy, ready endpoints, Ready and not excluded
  nodes, the BgpPeers' node selectors);
* **mode `node`** (MetalLB's model, the default): one speaker per node announces, with next
  hop self, the prefixes its node is eligible for, to the BgpPeers whose nodeSelector matches
  the node; the router spreads traffic over the nodes by ECMP;
* **mode `central`** (Porter's model): one speaker announces one path per (prefix, eligible
  node) with the node's InternalIP as third-party next hop and `routes.path_identifier` as
  ADD-PATH path identifier, so the router learns every next hop from one session.

Recomputing is incremental: an EndpointSlice or Service change recomputes that Service only
(`RouteTable.set_service`), and only its prefixes are diffed against what gobgpd holds; a Node,
Eip, BgpConf or BgpPeer change recomputes everything. Either way the change reaching gobgpd
is a diff of the desired RIB against the held one (`rib_delta`), pushed with AddPathStream;
a route that stays is never withdrawn and re-added. The held RIB is read from gobgpd
(ListPath) at start, after gobgpd restarts and at every resync, so it cannot drift.

The decisions are pure and table-tested: the routes in `porter_lb.routing.routes`, the BGP
instance and peers in `porter_lb.routing.bgp_config`. This module is the loop around them; its
side effects go only through the GoBGP adapter (`porter_lb.routing.gobgp`) and the Kubernetes
adapter (`KubeAPI`, `EventRecorder`). See docs/speaker.md for the design, the status fields and
the metrics.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence

from porter_lb.kube.api import KubeClient
from porter_lb.kube.events import API_VERSIONS, EventRecorder, Warnings
from porter_lb.kube.informers import Caches
from porter_lb.kube.watch_cache import object_key
from porter_lb.model.addresses import AddressPool
from porter_lb.model.fields import unapplied_fields, unapplied_message
from porter_lb.model.resources import (
    LOAD_BALANCER_CLASS,
    BgpAttributes,
    ModelError,
    Node,
    Obj,
    node_from_object,
    node_or_none,
    object_name,
    selects_porter,
    slice_service_key,
    slice_service_keys,
)
from porter_lb.routing.bgp_config import (
    GlobalConfig,
    GobgpdClient,
    Mode,
    PeerConfig,
    PeerExport,
    PeerSpec,
    choose_bgpconf,
    export_filters,
    families_without_next_hop,
    global_config_from_bgpconf,
    global_differs,
    peer_delta,
    peer_fingerprint,
    plain_text_password_message,
    plain_text_password_peers,
    usable_peer_specs,
)
from porter_lb.routing.gobgp import GoBGPError
from porter_lb.routing.peer_status import PeerStatusReporter
from porter_lb.routing.routes import (
    Route,
    RouteTable,
    bgp_pools,
    central_rib,
    node_next_hops,
    node_rib,
    nodes_without_next_hop,
    pool_attributes,
    rib_delta,
    service_share,
    with_attributes,
)
from porter_lb.telemetry import metrics
from porter_lb.telemetry.health import Heartbeat

log = logging.getLogger(__name__)

__all__ = [
    "CENTRAL_STATUS_KEY",
    "GOBGP_RETRY_MAX",
    "OTHER_RETRY_MAX",
    "SPEAKER_KINDS",
    "Speaker",
    "retry_delay",
]

SPEAKER_KINDS = ("Service", "EndpointSlice", "Node", "Eip", "BgpConf", "BgpPeer", "Secret")
"""The kinds a Speaker needs its Informers to watch."""


CENTRAL_STATUS_KEY = "central"
"""The key of a central speaker's entry in BgpPeer `status.nodesPeerStatus`."""

GOBGP_RETRY_MAX = 0.5
"""Longest wait (s) between attempts while gobgpd does not answer. gobgpd is local: a failed
call costs nothing, and a gobgpd back from a crash must be re-programmed at once (its whole
RIB within 2 s of it answering again), so its back-off stays short whatever the outage."""

OTHER_RETRY_MAX = 5.0
"""Longest wait (s) after any other reconcile failure (a bug, the node's host rules)."""


def retry_delay(previous: float, ceiling: float) -> float:
    """The next wait of an exponential back-off: 0.2 s first, then doubling, at most
    `ceiling` (GOBGP_RETRY_MAX while gobgpd fails, OTHER_RETRY_MAX otherwise)."""
    return min(max(previous * 2, 0.2), ceiling)


SLICES_BY_SERVICE = "service"
"""The EndpointSlice index of the Service each belongs to (`namespace/name`)."""


class Speaker:
    """Keeps one gobgpd in step with the cluster (see the module docstring).

    Create it before the informers start, or at least before `run`: it subscribes to them in
    `__init__`. `run(stop)` blocks until `stop` is set; it waits for the caches to sync, then
    reconciles on every change. It never stops or empties gobgpd on the way out, unless
    `withdraw_on_stop` is set: the routes stay announced until gobgpd itself goes away.

    `accept_prefixes` (node mode; the agent's host rules) is called with the prefixes the
    node must accept: before paths are added, with the ones announced and about to be; after
    paths are withdrawn, with the ones still announced. What it raises fails the reconcile,
    which is retried, so nothing is announced that the node does not accept.
    """

    def __init__(
        self,
        informers: Caches,
        gobgp: GobgpdClient,
        api: KubeClient,
        recorder: EventRecorder | None = None,
        *,
        mode: Mode = "node",
        node_name: str = "",
        status_key: str = "",
        default_router_id: str = "",
        secret_namespace: str = "porter-lb-system",
        poll_interval: float = 1.0,
        resync_interval: float = 300.0,
        withdraw_on_stop: bool = False,
        class_name: str = LOAD_BALANCER_CLASS,
        accept_prefixes: Callable[[frozenset[str]], None] | None = None,
        restart_gobgpd: Callable[[], str | None] | None = None,
    ) -> None:
        if mode == "node" and not node_name:
            raise ValueError("a node speaker needs its node's name")
        self.informers = informers
        self.gobgp = gobgp
        self.api = api
        self.recorder = recorder
        self.mode: Mode = mode
        self.node_name = node_name
        self.status_key = status_key or (node_name if mode == "node" else CENTRAL_STATUS_KEY)
        self.peer_status = PeerStatusReporter(api, informers, self.status_key)
        self.default_router_id = default_router_id
        self.secret_namespace = secret_namespace
        self.poll_interval = poll_interval
        self.resync_interval = resync_interval
        self.withdraw_on_stop = withdraw_on_stop
        self.class_name = class_name
        self.accept_prefixes = accept_prefixes
        # Asks gobgpd's process to exit so that its supervisor starts a fresh one (GoBGP 4
        # cannot start another instance after StopBgp): None once asked, else why it cannot.
        self.restart_gobgpd = restart_gobgpd

        self._cond = threading.Condition()
        self._full = True
        self._services: set[str] = set()
        self._event_at: float | None = None  # monotonic time of the oldest unhandled change

        # Worker state, rebuilt by every full reconcile.
        self._table = RouteTable()
        self._nodes: dict[str, Node] = {}
        # node mode: the next hop per IP version of this node's prefixes (routes.node_next_hops)
        self._next_hops: Mapping[int, str] = node_next_hops((), ())
        self._pools: list[AddressPool] = []
        self._attributes: list[tuple[AddressPool, BgpAttributes]] = []  # pools with any
        self._selected: frozenset[str] = frozenset()
        self._peers: list[PeerSpec] = []  # the valid BgpPeers that apply to this speaker
        # What this process last gave gobgpd per neighbour (bgp_config.peer_delta: ListPeer
        # reports a connected session's own source address, not the configured one).
        self._sent_peers: dict[str, PeerConfig] = {}
        self._global: GlobalConfig | None = None  # what this process started gobgpd with
        self._held: dict[str, set[Route]] | None = None  # None: read it from gobgpd first
        self._fresh_instance = False  # started by us, its peers not yet configured
        self._export: tuple[PeerExport, ...] | bool | None = False  # False: none set yet
        self._warnings = Warnings(recorder, log)
        self._unapplied = Warnings(recorder, log)  # fields set that porter-lb does not apply
        self._no_next_hop = Warnings(recorder, log)  # families a session cannot carry
        self._warned_no_next_hop: set[str] = set()  # Services warned of a node left out
        self._addressless_versions: frozenset[int] = frozenset()  # central, _rebuild_table
        self._plain_warned: set[str] = set()  # BgpPeers warned about a plain-text password
        self.reconciles = 0  # full + incremental, for tests and logs
        # For the process's health checks (porter_lb.telemetry.health): the loop beats each
        # time round; `problem` says why the last pass failed (None once one succeeded, and since).
        self.heartbeat: Heartbeat | None = None
        self.problem: str | None = "not reconciled yet"

        informers.add_index("EndpointSlice", SLICES_BY_SERVICE, slice_service_keys)
        for kind, handler in (
            ("Service", self._on_service),
            ("EndpointSlice", self._on_slice),
            ("Node", self._on_node),
            ("Eip", self._on_full),
            ("BgpConf", self._on_full),
            ("BgpPeer", self._on_bgppeer),
            ("Secret", self._on_full),
        ):
            informers.subscribe(kind, handler)

    # Handlers run on watch threads: look at the change, mark work, return.

    def _wake(self) -> None:
        self._cond.notify()

    def _on_full(self, _key: str, _old: Obj | None, _new: Obj | None) -> None:
        with self._cond:
            self._full = True
            self._wake()

    def _on_bgppeer(self, key: str, old: Obj | None, new: Obj | None) -> None:
        if peer_fingerprint(old) != peer_fingerprint(new):
            self._on_full(key, old, new)

    def _on_node(self, key: str, old: Obj | None, new: Obj | None) -> None:
        before, after = node_or_none(old), node_or_none(new)
        if (
            before is not None
            and after is not None
            and (before.ready, dict(before.labels), before.addresses)
            == (after.ready, dict(after.labels), after.addresses)
        ):
            return  # a heartbeat or a condition porter-lb does not read
        self._on_full(key, old, new)

    def _on_service(self, key: str, old: Obj | None, new: Obj | None) -> None:
        if not (old is not None and selects_porter(old, self.class_name)) and not (
            new is not None and selects_porter(new, self.class_name)
        ):
            return
        with self._cond:
            self._services.add(key)
            self._event_at = self._event_at or time.monotonic()
            self._wake()

    def _on_slice(self, key: str, old: Obj | None, new: Obj | None) -> None:
        services = {slice_service_key(obj) for obj in (old, new) if obj is not None} - {""}
        if not services:
            return
        with self._cond:
            self._services.update(services)
            self._event_at = self._event_at or time.monotonic()
            self._wake()

    # The worker.

    def run(self, stop: threading.Event) -> None:
        """Reconcile until `stop` is set (see the class docstring)."""
        while not self.informers.wait_synced(1.0):
            if stop.is_set():
                return
        log.info(
            "speaker started",
            extra={"mode": self.mode, "node": self.node_name, "gobgp": self.gobgp.target},
        )
        backoff = 0.0
        next_poll = 0.0
        next_resync = time.monotonic() + self.resync_interval
        while not stop.is_set():
            if self.heartbeat is not None:
                self.heartbeat.beat()
            with self._cond:
                if not (self._full or self._services):
                    self._cond.wait(max(0.0, min(next_poll - time.monotonic(), 1.0)))
                full, services, event_at = self._full, self._services, self._event_at
                self._full, self._services, self._event_at = False, set(), None
            try:
                if full:
                    self.reconcile_all()
                elif services:
                    self.reconcile_services(services, event_at)
                if time.monotonic() >= next_poll:
                    self.poll()
                    next_poll = time.monotonic() + self.poll_interval
                if time.monotonic() >= next_resync:
                    self.resync()
                    next_resync = time.monotonic() + self.resync_interval
                backoff = 0.0
                self.problem = None
            except GoBGPError as error:
                self.problem = f"gobgpd at {self.gobgp.target}: {error}"
                backoff = retry_delay(backoff, GOBGP_RETRY_MAX)
                log.warning("gobgpd: %s; retrying in %.1fs", error, backoff)
                with self._cond:
                    self._full = True
                self._held = None
                stop.wait(backoff)
            except Exception as error:
                self.problem = f"reconcile failed: {error}"
                backoff = retry_delay(backoff, OTHER_RETRY_MAX)
                log.exception("speaker reconcile failed; retrying in %.1fs", backoff)
                with self._cond:
                    self._full = True
                stop.wait(backoff)
        self._stopped()

    def _stopped(self) -> None:
        if self.heartbeat is not None:
            self.heartbeat.stop()
        if self.withdraw_on_stop:
            self.withdraw_all()
        log.info("speaker stopped")

    def resync(self) -> None:
        """Forget what gobgpd is believed to hold: the next reconcile reads it (ListPath)."""
        self._held = None
        with self._cond:
            self._full = True
            self._wake()

    def withdraw_all(self) -> None:
        """Withdraw every path porter-lb added (named, one by one in one stream)."""
        try:
            held = self.gobgp.local_routes()
            if held:
                self.gobgp.withdraw_routes(held)
            log.info("withdrew %d paths", len(held))
        except GoBGPError as error:
            log.warning("could not withdraw paths: %s", error)
            return
        if self.accept_prefixes is not None:
            self.accept_prefixes(frozenset())

    # Reconciling.

    def _read_nodes(self) -> dict[str, Node]:
        nodes = {}
        for obj in self.informers.items("Node"):
            try:
                node = node_from_object(obj)
            except ModelError as error:
                self._warnings.warn(obj, "Node", "InvalidNode", str(error))
                continue
            nodes[node.name] = node
        return nodes

    def _read_peers(self) -> list[PeerSpec]:
        """The valid BgpPeers (Warning Events for the others), one per neighbour address."""
        specs, rejected = usable_peer_specs(
            self.informers.items("BgpPeer"),
            {object_name(s): s for s in self.informers.items("Secret")},
            mode=self.mode,
            secret_namespace=self.secret_namespace,
            node=self._nodes.get(self.node_name) if self.mode == "node" else None,
        )
        for obj, reason, message in rejected:
            self._warnings.warn(obj, "BgpPeer", reason, message)
        for spec in specs:
            self._warnings.clear("BgpPeer", spec.name)
        for obj in self.informers.items("BgpPeer"):
            self._warn_unapplied("BgpPeer", obj)
        plain = set(plain_text_password_peers(self.informers.items("BgpPeer")))
        for name in sorted(plain - self._plain_warned):
            peer = self.informers.get("BgpPeer", name)
            if peer is not None and self.recorder is not None:
                message = plain_text_password_message(name, self.secret_namespace)
                log.warning("%s", message, extra={"kind": "BgpPeer"})
                self.recorder.warning(
                    {**peer, "kind": "BgpPeer", "apiVersion": API_VERSIONS["BgpPeer"]},
                    "PlainTextPassword",
                    message,
                )
        self._plain_warned = plain
        return specs

    def _applies(self, spec: PeerSpec, nodes: Mapping[str, Node]) -> bool:
        if self.mode == "central":
            return True
        node = nodes.get(self.node_name)
        return node is not None and spec.peer.node_selector.matches(node.labels)

    def _wanted_global(self, nodes: Mapping[str, Node]) -> GlobalConfig | None:
        conf = choose_bgpconf(self.informers.items("BgpConf"))
        if conf is None:
            return None
        node = nodes.get(self.node_name) if self.mode == "node" else None
        try:
            wanted = global_config_from_bgpconf(conf, node, self.default_router_id)
        except ModelError as error:
            self._warnings.warn(conf, "BgpConf", "InvalidBgpConf", str(error))
            raise
        self._warnings.clear("BgpConf", object_name(conf))
        self._warn_unapplied("BgpConf", conf)
        return wanted

    def _warn_unapplied(self, kind: str, obj: Obj) -> None:
        """One Warning naming each field `obj` sets that porter-lb does not apply."""
        fields = unapplied_fields(kind, obj)
        if fields:
            message = unapplied_message(kind, object_name(obj), fields)
            self._unapplied.warn(obj, kind, "UnappliedFields", message)
        else:
            self._unapplied.clear(kind, Warnings.key(obj))

    def _ensure_instance(self, wanted: GlobalConfig | None) -> bool:
        """Make gobgpd run the wanted instance; True when it does.

        No BgpConf: the instance is stopped (nothing is to be announced). A changed ASN,
        router ID, listen setting or graceful restart needs a new instance, and GoBGP 4 starts
        one only in a new process: the instance is stopped letting graceful-restart peers keep
        our routes, gobgpd is asked to exit (its supervisor restarts it), and GoBGPError sends
        the loop to retry until the new gobgpd answers; the caller then programs it as after
        any gobgpd restart (paths first, then peers as to a restarting speaker).
        """
        running = self.gobgp.running_global()
        if wanted is None:
            if running is not None:
                log.info("no BgpConf: stopping the BGP instance")
                self.gobgp.stop_bgp()
                self._ask_restart("the BgpConf is gone")
            self._global = None
            self._held = {}
            return False
        if running is not None and (
            global_differs(running, wanted) or (self._global is not None and self._global != wanted)
        ):
            log.info(
                "BGP instance changed: restarting gobgpd",
                extra={"asn": wanted.asn, "router_id": wanted.router_id},
            )
            self.gobgp.stop_bgp(allow_graceful_restart=True)
            self._global = None
            self._held = None
            why = self._ask_restart("the BGP instance changed")
            raise GoBGPError(
                "restarting gobgpd for the changed BGP instance"
                if why is None
                else f"gobgpd must be restarted to run the changed BGP instance: {why}"
            )
        if running is None:
            self.gobgp.start_global(wanted)
            log.info(
                "BGP instance started", extra={"asn": wanted.asn, "router_id": wanted.router_id}
            )
            self._held = {}
            self._fresh_instance = True
            self._export = False
        self._global = wanted
        if self._held is None:
            self._held = self._read_held()
        return True

    def _ask_restart(self, reason: str) -> str | None:
        """Ask for a new gobgpd process (see _ensure_instance); None once asked, else why not."""
        why = (
            self.restart_gobgpd()
            if self.restart_gobgpd is not None
            else "this speaker was given no way to restart it"
        )
        if why is not None:
            log.error(
                "%s: gobgpd needs a restart (GoBGP 4 runs one instance per process) and %s",
                reason,
                why,
            )
        return why

    def _read_held(self) -> dict[str, set[Route]]:
        held: dict[str, set[Route]] = {}
        for route in self.gobgp.local_routes():
            held.setdefault(route.prefix, set()).add(route)
        return held

    def _reconcile_peers(self, specs: Sequence[PeerSpec], *, restarting: bool = False) -> None:
        """Bring gobgpd's peers to the BgpPeers that apply here; `restarting`: peers are added
        as to a restarting speaker's (graceful restart, see GoBGP.add_peer_config)."""
        if self._global is None:
            return
        # gobgpd reports an unset local ASN as the instance's: compare (and send) it that way.
        asn = self._global.asn
        wanted = {
            s.config.neighbor_address: (
                s.config if s.config.local_asn else dataclasses.replace(s.config, local_asn=asn)
            )
            for s in specs
            if self._applies(s, self._nodes)
        }
        by_address = {s.config.neighbor_address: s for s in specs}
        if self.mode == "node":
            wanted = {
                a: self._families_with_a_next_hop(c, by_address[a]) for a, c in wanted.items()
            }
        running = self.gobgp.peer_configs()
        add, update, delete = peer_delta(wanted, running, self._sent_peers)
        for address in delete:
            log.info("deleting peer", extra={"neighbor": address})
            self.gobgp.delete_peer(address)
            self._sent_peers.pop(address, None)
        for config, adding in [(c, False) for c in update] + [(c, True) for c in add]:
            spec = by_address[config.neighbor_address]
            log.info(
                "adding peer" if adding else "updating peer",
                extra={"bgppeer": spec.name, "neighbor": config.neighbor_address},
            )
            try:
                if adding:
                    self.gobgp.add_peer_config(config, restarting=restarting)
                else:
                    self.gobgp.update_peer(config, running.get(config.neighbor_address))
                self._sent_peers[config.neighbor_address] = config
            except GoBGPError as error:
                # Rejected (or gobgpd went away: then the next call fails and says so).
                obj = self.informers.get("BgpPeer", spec.name) or {"metadata": {"name": spec.name}}
                self._warnings.warn(
                    obj, "BgpPeer", "PeerRejected", f"BgpPeer '{spec.name}': {error}"
                )
                wanted.pop(config.neighbor_address)
        self._peers = [s for s in specs if s.config.neighbor_address in wanted]

    def _families_with_a_next_hop(self, config: PeerConfig, spec: PeerSpec) -> PeerConfig:
        """`config` without the families it would carry across IP versions (MP-BGP) where this
        node has no address of that version to be their next hop, with a Warning naming it."""
        node = self._nodes.get(self.node_name)
        missing = families_without_next_hop(config, node.addresses if node else ())
        if not missing:
            self._no_next_hop.clear("BgpPeer", spec.name)
            return config
        session = ipaddress.ip_address(config.neighbor_address).version
        versions = " and ".join(f"IPv{v}" for v in missing)
        obj = self.informers.get("BgpPeer", spec.name) or {"metadata": {"name": spec.name}}
        self._no_next_hop.warn(
            obj,
            "BgpPeer",
            "NoNextHopAddress",
            f"BgpPeer '{spec.name}': spec.afiSafis asks for {versions} over the IPv{session} "
            f"session to {config.neighbor_address}, but node {self.node_name} has no {versions} "
            "address in its status.addresses to be those routes' next hop; the session "
            f"carries no {versions} from this node",
        )
        families = tuple(v for v in config.families if v not in missing)
        return dataclasses.replace(config, families=families)

    def _service_share(self, key: str) -> dict[str, frozenset[str]]:
        obj = self.informers.get("Service", key)
        if obj is None or not selects_porter(obj, self.class_name) or not self._selected:
            return {}

        def endpoint_slices() -> list[Obj]:
            return self.informers.by_index("EndpointSlice", SLICES_BY_SERVICE, key)

        try:
            return service_share(
                obj,
                endpoint_slices,
                nodes=self._nodes,
                pools=self._pools,
                selected=self._selected,
                class_name=self.class_name,
            )
        except ModelError as error:
            self._warnings.warn(obj, "Service", "InvalidService", str(error))
            return {}

    def _desired_rib(self, prefixes: Iterable[str]) -> dict[str, set[Route]]:
        if self.mode == "node":
            rib = node_rib(self._table, prefixes, self.node_name, self._next_hops)
        else:
            addresses = {name: node.addresses for name, node in self._nodes.items()}
            prefixes = list(prefixes)
            rib = central_rib(self._table, prefixes, addresses)
            self._warn_no_next_hop(prefixes, addresses)
        return with_attributes(rib, self._attributes)

    def _warn_no_next_hop(
        self, prefixes: Iterable[str], addresses: Mapping[str, Sequence[str]]
    ) -> None:
        """A Warning on each Service whose IP has eligible nodes without an address of its IP
        version (central: they are left out of its next hops); forgotten once it has none."""
        if not self._warned_no_next_hop:  # else some may be cleared: look at every prefix
            versions = self._addressless_versions
            prefixes = [p for p in prefixes if (6 if ":" in p else 4) in versions]
        desired = {p: self._table.nodes(p) for p in prefixes}
        missing = nodes_without_next_hop(desired, addresses)
        for prefix in desired:
            lacking = missing.get(prefix)
            for key in self._table.by_prefix.get(prefix, {}):
                if lacking is None:
                    if key in self._warned_no_next_hop:
                        self._no_next_hop.clear("Service", key)
                        self._warned_no_next_hop.discard(key)
                    continue
                self._warned_no_next_hop.add(key)
                obj = self.informers.get("Service", key)
                if obj is None:
                    continue
                version = 6 if ":" in prefix else 4
                self._no_next_hop.warn(
                    obj,
                    "Service",
                    "NoNextHopAddress",
                    f"Service {key}: {prefix.split('/')[0]} is not routed via node(s) "
                    f"{', '.join(sorted(lacking))}: no IPv{version} address in their "
                    "status.addresses to be its next hop",
                )

    def _apply(self, desired: Mapping[str, set[Route]], prefixes: Iterable[str] | None) -> None:
        assert self._held is not None
        add, withdraw = rib_delta(self._held, desired, prefixes)
        if add and self.accept_prefixes is not None:
            self.accept_prefixes(frozenset(self._held) | {route.prefix for route in add})
        if add:
            self.gobgp.add_routes(add)
        if withdraw:
            self.gobgp.withdraw_routes(withdraw)
        keys = set(self._held) | set(desired) if prefixes is None else set(prefixes)
        for prefix in keys:
            if desired.get(prefix):
                self._held[prefix] = set(desired[prefix])
            else:
                self._held.pop(prefix, None)
        if add or withdraw:
            log.debug("RIB updated", extra={"added": len(add), "withdrawn": len(withdraw)})
        if self.accept_prefixes is not None:
            self.accept_prefixes(frozenset(self._held))

    def _rebuild_table(self) -> None:
        """The nodes `self._peers` select, the EndpointSlice index and the whole RouteTable,
        from the caches."""
        nodes = self._nodes
        if self.mode == "node":
            node = nodes.get(self.node_name)
            self._next_hops = node_next_hops(
                node.addresses if node else (),
                [(s.config.neighbor_address, s.config.families) for s in self._peers],
            )
            self._selected = (
                frozenset({self.node_name})
                if self._peers and self.node_name in nodes
                else frozenset()
            )
        else:
            self._selected = frozenset(
                name
                for name, node in nodes.items()
                if any(s.peer.node_selector.matches(node.labels) for s in self._peers)
            )
            # The IP versions some selected node has no address of: only a prefix of one of
            # them can need a NoNextHopAddress Warning (_warn_no_next_hop). Asked once here,
            # not at every EndpointSlice change (an IPv4-only cluster: {6}, and no IPv6 IP).
            lacking = nodes_without_next_hop(
                {"0.0.0.0/0": self._selected, "::/0": self._selected},
                {name: node.addresses for name, node in nodes.items()},
            )
            self._addressless_versions = frozenset(6 if ":" in p else 4 for p in lacking)
        table = RouteTable()
        for obj in self.informers.items("Service"):
            if selects_porter(obj, self.class_name):
                key = object_key(obj)
                share = self._service_share(key)
                if share:
                    table.set_service(key, share)
        self._table = table

    def reconcile_all(self) -> None:
        """Recompute everything from the caches and bring gobgpd to it."""
        started = time.monotonic()
        nodes = self._read_nodes()
        self._nodes = nodes
        pools, errors = bgp_pools(self.informers.items("Eip"))
        for eip, error in errors:
            self._warnings.warn(eip, "Eip", "InvalidEip", str(error))
        self._pools = pools
        self._attributes = pool_attributes(self.informers.items("Eip"))
        try:
            wanted = self._wanted_global(nodes)
        except ModelError:
            return  # keep whatever runs; the Warning says why
        specs = self._read_peers()
        if not self._ensure_instance(wanted):
            self._peers = []
            self._table = RouteTable()
            if self.accept_prefixes is not None:
                self.accept_prefixes(frozenset())  # the stopped instance announces nothing
            return
        fresh = self._fresh_instance
        if self.mode == "central":
            # Per-peer export first: a session that comes up must get only its own paths.
            applying = [s for s in specs if self._applies(s, nodes)]
            wanted_export = export_filters(applying, nodes)
            if fresh or wanted_export != self._export:
                self.gobgp.set_export_filters(wanted_export)
                self._export = wanted_export
        if fresh:
            # A new instance (gobgpd restarted, or its first start) gets its paths before any
            # peer: a session's first UPDATEs, and the End-of-RIB after them, then carry the
            # whole RIB. A graceful-restart helper drops every stale route that End-of-RIB
            # did not refresh, so a partial first RIB would take next hops away.
            self._peers = [s for s in specs if self._applies(s, nodes)]
        else:
            self._reconcile_peers(specs)
        self._rebuild_table()
        self._apply(self._desired_rib(self._table.prefixes()), None)
        if fresh:
            intended = {s.name for s in self._peers}
            self._reconcile_peers(specs, restarting=True)
            self._fresh_instance = False
            if {s.name for s in self._peers} != intended:
                with self._cond:
                    self._full = True  # gobgpd refused a peer: recompute without it
        self.reconciles += 1
        metrics.RECONCILE_SECONDS.labels("speaker").observe(time.monotonic() - started)
        log.info(
            "full reconcile",
            extra={
                "prefixes": len(self._held or {}),
                "peers": len(self._peers),
                "seconds": round(time.monotonic() - started, 3),
            },
        )

    def reconcile_services(self, keys: Iterable[str], event_at: float | None = None) -> None:
        """Recompute the given Services only and apply the delta of their prefixes.

        `event_at`: the monotonic time the oldest of the changes arrived from the watch; the
        delay from it to the paths handed to gobgpd is a metric, and each step of it is
        logged at debug level (bench/timeline.py reads that line)."""
        if self._global is None or self._held is None:
            return
        started = time.monotonic()
        changed: set[str] = set()
        for key in keys:
            changed |= self._table.set_service(key, self._service_share(key))
        computed = time.monotonic()
        if changed:
            self._apply(self._desired_rib(changed), changed)
        done = time.monotonic()
        self.reconciles += 1
        metrics.RECONCILE_SECONDS.labels("speaker").observe(done - started)
        if event_at is not None and changed:
            metrics.EVENT_TO_GOBGP_SECONDS.observe(done - event_at)
            log.debug(
                "services reconciled",
                extra={
                    "services": sorted(keys),
                    "prefixes": sorted(changed),
                    "event_at": event_at,
                    "started_at": started,
                    "computed_at": computed,
                    "sent_at": done,
                },
            )

    def poll(self) -> None:
        """Notice a restarted gobgpd; report sessions in BgpPeer status and the gauges."""
        if self._global is not None and self.gobgp.running_asn() == 0:
            log.warning("gobgpd lost its BGP instance (restarted?): re-programming it")
            self.resync()
            return
        statuses = {p.neighbor_address: p for p in self.gobgp.peers()} if self._global else {}
        advertised = sum(len(routes) for routes in (self._held or {}).values())
        self.peer_status.report(self._peers, statuses, advertised)
