"""The cluster's one central speaker (`porter-lb controller --speaker central`, Porter's model):
one gobgpd, driven by the controller's leader, announcing every eligible node as a third-party
next hop. Built here for the controller command and for the lab, which runs it in a thread."""

from __future__ import annotations

import logging
import threading
import time

from porter_lb.kube.api import KubeAPI
from porter_lb.kube.events import EventRecorder
from porter_lb.kube.informers import Informers
from porter_lb.model.resources import LOAD_BALANCER_CLASS
from porter_lb.routing.gobgp import GoBGP
from porter_lb.routing.gobgpd_process import GobgpdProcess
from porter_lb.routing.speaker import CENTRAL_STATUS_KEY, Speaker

log = logging.getLogger(__name__)


def central_speaker(
    *,
    api: KubeAPI,
    informers: Informers,
    gobgp: GoBGP,
    identity: str = "",
    namespace: str = "porter-lb-system",
    router_id: str = "",
    class_name: str = LOAD_BALANCER_CLASS,
    status_key: str = CENTRAL_STATUS_KEY,
    recorder: EventRecorder | None = None,
) -> Speaker:
    """A central-mode Speaker subscribed to `informers` (which must watch SPEAKER_KINDS).

    Build it before `informers.start()` when you can; `speaker.run(stop)` then blocks.
    """
    return Speaker(
        informers,
        gobgp,
        api,
        recorder or EventRecorder(api, host=identity),
        mode="central",
        status_key=status_key,
        default_router_id=router_id,
        secret_namespace=namespace,
        class_name=class_name,
        restart_gobgpd=GobgpdProcess(gobgp.target).restart,
    )


def run_central(
    *,
    api: KubeAPI,
    informers: Informers,
    gobgp_target: str,
    stop: threading.Event,
    identity: str = "",
    namespace: str = "porter-lb-system",
    router_id: str = "",
    class_name: str = LOAD_BALANCER_CLASS,
    status_key: str = CENTRAL_STATUS_KEY,
    recorder: EventRecorder | None = None,
) -> None:
    """Run the cluster's one central speaker in the calling thread until `stop` is set.

    `informers` are the caller's and must include SPEAKER_KINDS (Service, EndpointSlice,
    Node, Eip, BgpConf, BgpPeer, Secret); the caller starts and stops them. The speaker may
    subscribe after they started: it rebuilds everything from the caches once synced.
    `router_id` is used when the BgpConf has no `spec.routerId`. Sessions are reported in
    each BgpPeer's `status.nodesPeerStatus[status_key]` ("central" by default, so a restarted
    replica under another pod name overwrites rather than adds an entry).

    Run it in ONE process at a time (the leader): two central speakers would both announce,
    and both write the same status entry. On `stop` nothing is withdrawn (see the module
    docstring); gobgpd's own exit withdraws the routes.
    """
    gobgp = GoBGP(gobgp_target)
    speaker = central_speaker(
        api=api,
        informers=informers,
        gobgp=gobgp,
        identity=identity,
        namespace=namespace,
        router_id=router_id,
        class_name=class_name,
        status_key=status_key,
        recorder=recorder,
    )
    try:
        speaker.run(stop)
    finally:
        gobgp.close()


class CentralSpeaker:
    """The central speaker (`--speaker central`): built once, run for each leadership term.

    Only the leader drives gobgpd. Between terms nothing is withdrawn (the API server may just
    be unreachable: traffic keeps flowing on what gobgpd announces), until another replica is
    seen holding the Lease: then this replica's gobgpd is emptied, the new leader's announces.
    """

    def __init__(
        self,
        api: KubeAPI,
        informers: Informers,
        *,
        gobgp_target: str,
        identity: str,
        namespace: str,
        router_id: str,
        class_name: str,
    ) -> None:
        self.gobgp = GoBGP(gobgp_target)
        self.speaker = central_speaker(
            api=api,
            informers=informers,
            gobgp=self.gobgp,
            identity=identity,
            namespace=namespace,
            router_id=router_id,
            class_name=class_name,
            recorder=EventRecorder(api, host=identity),
        )
        self.thread: threading.Thread | None = None
        self.terms = 0

    def start_term(self, stop: threading.Event) -> None:
        """Run the speaker until `stop`; return once it has announced what the cluster holds.

        A restarting controller brings the routes back first and only then runs its
        allocation pass (which changes nothing after a restart): both are CPU-bound in one
        process, and the routes are what traffic waits for. The wait is bounded: a speaker
        that cannot reach gobgpd must not hold allocation up.
        """
        if self.terms:
            self.speaker.resync()  # gobgpd may have changed hands meanwhile: re-read its RIB
        self.terms += 1
        reconciles = self.speaker.reconciles
        self.thread = threading.Thread(
            target=self.speaker.run, args=(stop,), name="central-speaker", daemon=True
        )
        self.thread.start()
        deadline = time.monotonic() + CENTRAL_FIRST_SYNC_WAIT
        while (
            self.speaker.reconciles == reconciles
            and time.monotonic() < deadline
            and not stop.is_set()
        ):
            stop.wait(0.05)

    def end_term(self) -> None:
        if self.thread is not None:
            self.thread.join(10)
            self.thread = None

    def another_leads(self, holder: str) -> None:
        if self.thread is not None and self.thread.is_alive():
            return  # cannot happen while leading; never empty gobgpd under a running speaker
        log.warning(
            "%s holds the leader Lease: withdrawing what this replica's gobgpd announces",
            holder,
        )
        self.speaker.withdraw_all()

    def close(self) -> None:
        self.end_term()
        self.gobgp.close()


CENTRAL_FIRST_SYNC_WAIT = 30.0
"""Seconds the allocation pass waits at most for the central speaker's first announcement."""
