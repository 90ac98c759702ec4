"""`porter-lb controller`: the process that runs the allocation controller (and, in central
mode, the cluster's one BGP speaker).

Every replica lists and watches the cluster from the start, so a standby's caches are warm;
only the holder of the Lease allocates. A replica that loses the Lease exits (status 1) and
is restarted as a standby, as client-go's leader election advises: its in-memory allocations
may be stale. SIGTERM releases the Lease at once, so a rolling update hands over in about one
retry period instead of a whole lease duration.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import threading
import time
from typing import Any

from porter_lb import metrics
from porter_lb.controller import KINDS, AllocationController
from porter_lb.events import EventRecorder
from porter_lb.informers import Informers
from porter_lb.kubeapi import KubeAPI, load_api_client
from porter_lb.leader_election import LeaderElector
from porter_lb.process import setup_logging, stop_event_on_signals

log = logging.getLogger("porter_lb.controller")


def add_command(commands: Any) -> None:
    from porter_lb.cli import add_cluster_watch_options, add_common_options

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
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    setup_logging(args.log_level, args.log_format)
    stop = stop_event_on_signals()
    try:
        api = KubeAPI(load_api_client(args.kubeconfig))
    except Exception as error:  # noqa: BLE001 - a clear message, not a traceback
        log.error("cannot load cluster credentials: %s", error)
        return 2
    metrics.serve(args.metrics_address)
    kinds: list[str] = list(KINDS)
    if args.speaker == "central":
        from porter_lb.speaker import SPEAKER_KINDS

        kinds += [kind for kind in SPEAKER_KINDS if kind not in kinds]
    informers = Informers(
        api, kinds, secret_namespace=args.namespace, watch_timeout=args.watch_timeout
    )
    recorder = EventRecorder(api, host=args.identity)
    controller = AllocationController(api, informers, recorder, class_name=args.load_balancer_class)
    controller.register()
    speaker_threads: list[threading.Thread] = []
    informers.start()
    log.info("waiting for caches to sync", extra={"kinds": kinds})
    while not informers.wait_synced(1.0):
        if stop.is_set():
            informers.stop()
            return 0
    log.info("caches synced")

    lost = threading.Event()
    if not args.leader_elect:
        log.warning("leader election is off: run one replica only")
        metrics.LEADER.set(1)
        if args.speaker == "central":
            speaker_threads.append(_start_central_speaker(api, informers, args, stop))
        controller.run(stop)
    else:
        elector = LeaderElector(
            api,
            args.namespace,
            args.lease_name,
            args.identity,
            lease_duration=args.lease_duration,
            renew_deadline=args.renew_deadline,
            retry_period=args.retry_period,
        )
        worker: list[threading.Thread] = []

        def started() -> None:
            log.info("became leader", extra={"lease": args.lease_name})
            metrics.LEADER.set(1)

            def lead() -> None:
                # One central speaker in the cluster: the leader's (its status key is shared).
                # Never block the elector's thread: it must keep renewing the Lease.
                if args.speaker == "central":
                    speaker_threads.append(_start_central_speaker(api, informers, args, stop))
                controller.run(stop)

            thread = threading.Thread(target=lead, name="allocator")
            thread.start()
            worker.append(thread)

        def stopped() -> None:
            metrics.LEADER.set(0)
            if not stop.is_set():
                log.error("lost the leader Lease; exiting so a fresh standby takes over")
                lost.set()
                stop.set()

        election = threading.Thread(
            target=elector.run, args=(started, stopped), name="leader-election", daemon=True
        )
        election.start()
        stop.wait()
        controller.stop()
        for thread in worker:
            thread.join(30)
        elector.stop()
        election.join(args.retry_period + 5)  # run() releases the Lease as it returns
    controller.stop()
    informers.stop()
    for thread in speaker_threads:
        thread.join(10)
    log.info("stopped")
    return 1 if lost.is_set() else 0


def _start_central_speaker(
    api: KubeAPI, informers: Informers, args: argparse.Namespace, stop: threading.Event
) -> threading.Thread:
    """Start the central speaker; return once it has announced what the cluster holds.

    A restarting controller brings the routes back first and only then runs its allocation
    pass (which changes nothing after a restart): both are CPU-bound in one process, and the
    routes are what traffic waits for. The wait is bounded: a speaker that cannot reach
    gobgpd must not hold allocation up.
    """
    from porter_lb import agent
    from porter_lb.gobgp import GoBGP

    gobgp = GoBGP(args.gobgp)
    speaker = agent.central_speaker(
        api=api,
        informers=informers,
        gobgp=gobgp,
        identity=args.identity,
        namespace=args.namespace,
        router_id=args.router_id,
        recorder=EventRecorder(api, host=args.identity),
    )

    def run() -> None:
        try:
            speaker.run(stop)
        finally:
            gobgp.close()

    thread = threading.Thread(target=run, name="central-speaker", daemon=True)
    thread.start()
    deadline = time.monotonic() + CENTRAL_FIRST_SYNC_WAIT
    while speaker.reconciles < 1 and time.monotonic() < deadline and not stop.is_set():
        stop.wait(0.05)
    return thread


CENTRAL_FIRST_SYNC_WAIT = 30.0
"""Seconds the allocation pass waits at most for the central speaker's first announcement."""
