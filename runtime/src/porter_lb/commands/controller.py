"""`porter-lb controller`: the process that runs the allocation controller (and, in central
mode, the cluster's one BGP speaker).

Every replica lists and watches the cluster from the start, so a standby's caches are warm;
only the holder of the Lease allocates. A replica that cannot renew the Lease (the API server
is down, or unreachable from it) stops allocating and campaigns again in the same process;
elected again, it rebuilds its allocations from its caches, so no state of the lost term is
trusted (see `_lead_while_elected`). Staying up rather than exiting is what lets it resync
within seconds of the API server's return, instead of after a container restart's back-off.
SIGTERM releases the Lease at once, so a rolling update hands over in about one retry period
instead of a whole lease duration.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import threading
from typing import TYPE_CHECKING, Any

from porter_lb.allocation.controller import KINDS, AllocationController
from porter_lb.commands.process import setup_logging, stop_event_on_signals
from porter_lb.kube.api import KubeAPI
from porter_lb.kube.events import EventRecorder
from porter_lb.kube.informers import Informers
from porter_lb.kube.leader_election import LeaderElector
from porter_lb.telemetry import metrics
from porter_lb.telemetry.health import HEALTH, thread_alive

if TYPE_CHECKING:
    from porter_lb.routing.central import CentralSpeaker
    from porter_lb.webhook.tls import CertificateKeeper

log = logging.getLogger("porter_lb.controller")


def add_command(commands: Any) -> None:
    from porter_lb.commands.startup import add_cluster_watch_options, add_common_options

    parser: argparse.ArgumentParser = commands.add_parser(
        "controller", help="run the controller: IP allocation (and the central BGP speaker)"
    )
    add_common_options(parser)
    add_cluster_watch_options(parser, "leader Lease, BGP password Secrets")
    parser.add_argument(
        "--identity",
        default=os.environ.get("POD_NAME") or socket.gethostname(),
        help="this replica's name in the leader Lease (default: host name)",
    )
    parser.add_argument(
        "--leader-elect",
        default=True,
        action=argparse.BooleanOptionalAction,
        help="hold a Lease so only one replica allocates (default: on)",
    )
    parser.add_argument("--lease-name", default="porter-lb-controller")
    parser.add_argument("--lease-duration", type=float, default=15.0, help="seconds")
    parser.add_argument("--renew-deadline", type=float, default=10.0, help="seconds")
    parser.add_argument("--retry-period", type=float, default=2.0, help="seconds")
    parser.add_argument(
        "--speaker",
        choices=["none", "central"],
        default="none",
        help="central: also drive the cluster's one gobgpd (see --gobgp); none: agents announce",
    )
    parser.add_argument(
        "--gobgp",
        default="unix:///run/porter-lb/gobgp.sock",
        help="gRPC target of the central gobgpd (default: %(default)s)",
    )
    parser.add_argument(
        "--router-id",
        default=os.environ.get("POD_IP", ""),
        help="central speaker's BGP router id when the BgpConf sets none (default: $POD_IP)",
    )
    webhook = parser.add_argument_group(
        "webhook certificate",
        "the leader keeps the webhook's serving certificate in a Secret of --namespace and the "
        "ValidatingWebhookConfiguration's caBundle matching it (porter_lb.webhook.tls)",
    )
    webhook.add_argument(
        "--webhook-secret",
        default="",
        metavar="NAME",
        help="the Secret to keep the certificate in (default: none, the certificate is "
        "someone else's, e.g. cert-manager's)",
    )
    webhook.add_argument("--webhook-configuration", default="porter-lb", metavar="NAME")
    webhook.add_argument("--webhook-service", default="porter-lb-webhook", metavar="NAME")
    webhook.add_argument(
        "--webhook-certificate-days", type=int, default=3650, help="validity of a new one"
    )
    webhook.add_argument(
        "--webhook-certificate-renew-days",
        type=int,
        default=30,
        help="replace it this many days before it expires",
    )
    webhook.add_argument(
        "--webhook-ca-overlap-minutes",
        type=int,
        default=15,
        help="after a new certificate, trust the previous CA too for this long",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from porter_lb.commands.startup import kube_api, serve_metrics

    setup_logging(args.log_level, args.log_format)
    api = kube_api(args.kubeconfig)
    stop = stop_event_on_signals()
    serve_metrics(args.metrics_address)
    kinds: list[str] = list(KINDS)
    if args.speaker == "central":
        from porter_lb.routing.speaker import SPEAKER_KINDS

        kinds += [kind for kind in SPEAKER_KINDS if kind not in kinds]
    informers = Informers(
        api, kinds, secret_namespace=args.namespace, watch_timeout=args.watch_timeout
    )
    recorder = EventRecorder(api, host=args.identity)
    controller = AllocationController(api, informers, recorder, class_name=args.load_balancer_class)
    controller.register()
    # Imported only when used: the central speaker brings grpcio (~20 MB resident), the
    # certificate keeper `cryptography` (~8 MB).
    if args.speaker == "central":
        from porter_lb.routing.central import CentralSpeaker
    if args.webhook_secret:
        from porter_lb.webhook.tls import CertificateKeeper
    central = (
        CentralSpeaker(
            api,
            informers,
            gobgp_target=args.gobgp,
            identity=args.identity,
            namespace=args.namespace,
            router_id=args.router_id,
            class_name=args.load_balancer_class,
        )
        if args.speaker == "central"
        else None
    )
    keeper = (
        CertificateKeeper(
            api,
            args.namespace,
            args.webhook_secret,
            args.webhook_configuration,
            args.webhook_service,
            days=args.webhook_certificate_days,
            renew_days=args.webhook_certificate_renew_days,
            overlap_minutes=args.webhook_ca_overlap_minutes,
        )
        if args.webhook_secret
        else None
    )
    _health_checks(informers, controller, central)
    informers.start()
    log.info("waiting for caches to sync", extra={"kinds": kinds})
    while not informers.wait_synced(1.0):
        if stop.is_set():
            informers.stop()
            if central is not None:
                central.close()
            return 0
    log.info("caches synced")

    if not args.leader_elect:
        log.warning("leader election is off: run one replica only")
        metrics.LEADER.set(1)
        LEADING.set()
        if keeper is not None:
            _start_keeper(keeper, stop)
        if central is not None:
            central.start_term(stop)
        controller.run(stop)
    else:
        _lead_while_elected(api, args, controller, central=central, keeper=keeper, stop=stop)
    controller.stop()
    informers.stop()
    if central is not None:
        central.close()
    log.info("stopped")
    return 0


LEADING = threading.Event()
"""Set while this replica holds the leader Lease (or runs without leader election)."""


def _health_checks(
    informers: Informers, controller: AllocationController, central: CentralSpeaker | None
) -> None:
    """Readiness: the caches are synced; leading, the allocator has caught up; central, the
    leader's gobgpd answers. A standby is ready (it can take over at once). Liveness: the
    allocator's loop, and the central speaker's, come round while they run."""
    HEALTH.readiness(
        "caches", lambda: None if informers.synced else "the watch caches are still listing"
    )
    HEALTH.readiness(
        "allocator",
        lambda: (
            "leading, but the first allocation pass has not finished"
            if LEADING.is_set() and not controller.caught_up.is_set()
            else None
        ),
    )
    controller.heartbeat = HEALTH.heartbeat("allocator-loop", LOOP_MAX_AGE)
    if central is not None:
        speaker = central.speaker
        HEALTH.readiness("gobgpd", lambda: speaker.problem if LEADING.is_set() else None)
        speaker.heartbeat = HEALTH.heartbeat("speaker-loop", LOOP_MAX_AGE)


LOOP_MAX_AGE = 60.0
"""Seconds a work loop may take to come round before the process counts as hung (liveness)."""


def _start_keeper(keeper: CertificateKeeper, term: threading.Event) -> threading.Thread:
    thread = threading.Thread(
        target=keeper.run, args=(term,), name="webhook-certificate", daemon=True
    )
    thread.start()
    return thread


def _lead_while_elected(
    api: KubeAPI,
    args: argparse.Namespace,
    controller: AllocationController,
    *,
    central: CentralSpeaker | None,
    keeper: CertificateKeeper | None,
    stop: threading.Event,
) -> None:
    """Campaign for the Lease and allocate (and speak) while holding it, until `stop`.

    A term ends when the Lease cannot be renewed for `--renew-deadline` (the API server is
    unreachable, or this replica is partitioned from it): the allocator and the central
    speaker stop, gobgpd keeps what it announces, and the replica campaigns again. Elected
    again, it rebuilds the allocations from its caches and re-reads gobgpd's RIB, exactly as a
    freshly started process would, but without a restart's delay: when the API server comes
    back, the same replica usually renews at its first attempt. A replica that sees another
    one take the Lease withdraws what its own gobgpd still announces (central mode), so a
    stale standby never keeps routes the leader no longer wants.
    """
    elector = LeaderElector(
        api,
        args.namespace,
        args.lease_name,
        args.identity,
        lease_duration=args.lease_duration,
        renew_deadline=args.renew_deadline,
        retry_period=args.retry_period,
        on_new_leader=central.another_leads if central is not None else None,
    )
    term = threading.Event()
    worker: list[threading.Thread] = []

    def started() -> None:
        if stop.is_set():
            return  # elected as the process stops: the Lease is released on the way out
        log.info("became leader", extra={"lease": args.lease_name})
        metrics.LEADER.set(1)
        LEADING.set()
        if keeper is not None:
            _start_keeper(keeper, term)

        def lead() -> None:
            # Never block the elector's thread: it must keep renewing the Lease.
            if central is not None:
                central.start_term(term)
            controller.run(term)

        thread = threading.Thread(target=lead, name="allocator")
        thread.start()
        worker.append(thread)

    def stopped() -> None:
        metrics.LEADER.set(0)
        LEADING.clear()
        term.set()

    def campaign() -> None:
        nonlocal term
        while not stop.is_set():
            elector.run(started, stopped)
            term.set()
            for thread in worker:
                thread.join()
            worker.clear()
            if central is not None:
                central.end_term()
            if not stop.is_set():
                log.error(
                    "lost the leader Lease: stopped allocating; campaigning again",
                    extra={"lease": args.lease_name},
                )
                term = threading.Event()

    election = threading.Thread(target=campaign, name="leader-election", daemon=True)
    election.start()
    HEALTH.liveness("leader-election", thread_alive(lambda: election, "the leader election"))
    stop.wait()
    term.set()  # the batch in hand finishes; nothing is written after the Lease is released
    for thread in list(worker):
        thread.join(30)
    elector.stop()  # run() releases the Lease as it returns
    election.join(args.retry_period + 35)
