"""A speaker's report of its BGP sessions: its entry in each BgpPeer's
`status.nodesPeerStatus` (written only when it changes) and the session gauges."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from porter_lb.kube.api import KubeClient, KubeError
from porter_lb.kube.informers import Caches
from porter_lb.model.resources import GROUP_PATH, as_mapping, being_deleted, object_name
from porter_lb.routing.bgp_config import PeerSpec, PeerStatus, peer_status_entry
from porter_lb.telemetry import metrics

log = logging.getLogger(__name__)


class PeerStatusReporter:
    """Writes one speaker's entry (`status_key`: its node, or "central") of the BgpPeers."""

    def __init__(self, api: KubeClient, informers: Caches, status_key: str) -> None:
        self.api = api
        self.informers = informers
        self.status_key = status_key

    def report(
        self, peers: Sequence[PeerSpec], statuses: Mapping[str, PeerStatus], advertised: int
    ) -> None:
        """`peers` are the sessions this speaker has, `statuses` gobgpd's state of each by
        neighbour address, `advertised` how many prefixes it announces. Every other BgpPeer
        loses this speaker's entry and series."""
        mine = set()
        for spec in peers:
            mine.add(spec.name)
            status = statuses.get(spec.config.neighbor_address)
            labels = (spec.name, self.status_key)
            up = status is not None and status.session_state == "established"
            metrics.BGP_SESSION_UP.labels(*labels).set(1 if up else 0)
            metrics.ADVERTISED_PREFIXES.labels(*labels).set(advertised if up else 0)
            if spec.config.bfd.enabled:
                bfd_up = status is not None and status.bfd_state == "up"
                metrics.BFD_SESSION_UP.labels(*labels).set(1 if bfd_up else 0)
            else:
                with contextlib.suppress(KeyError):
                    metrics.BFD_SESSION_UP.remove(*labels)
            self._write(spec.name, peer_status_entry(status, spec.config))
        for obj in self.informers.items("BgpPeer"):
            name = object_name(obj)
            if name in mine:
                continue
            for gauge in (
                metrics.BGP_SESSION_UP,
                metrics.ADVERTISED_PREFIXES,
                metrics.BFD_SESSION_UP,
            ):
                with contextlib.suppress(KeyError):
                    gauge.remove(name, self.status_key)
            self._write(name, None)

    def _write(self, name: str, entry: dict[str, Any] | None) -> None:
        """Merge-patch this speaker's entry of `status.nodesPeerStatus`, only if it changed."""
        obj = self.informers.get("BgpPeer", name)
        if obj is None or being_deleted(obj):
            return
        current = as_mapping(as_mapping(obj.get("status")).get("nodesPeerStatus")).get(
            self.status_key
        )
        if current == entry:
            return
        try:
            self.api.merge_patch(
                f"{GROUP_PATH}/bgppeers/{name}/status",
                {"status": {"nodesPeerStatus": {self.status_key: entry}}},
            )
        except KubeError as error:
            if error.status != 404:
                log.warning("could not write BgpPeer %s status: %s", name, error)
