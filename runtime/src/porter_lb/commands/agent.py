"""`porter-lb agent`: the per-node BGP speaker (mode `node`), and the central speaker's entry.

The agent runs on every node beside that node's gobgpd and drives it over gRPC (a unix
socket, never gobgpd's default :50051 on every address): it watches the cluster and keeps
gobgpd's peers and RIB equal to what `porter_lb.routing.speaker.Speaker` computes for this node.

    porter-lb agent --node NAME --gobgp unix:///run/porter-lb/gobgp.sock
                    [--kubeconfig FILE] [--namespace porter-lb-system]
                    [--metrics-address HOST:PORT] [--withdraw-on-exit]

**Shutdown.** SIGTERM/SIGINT stop the watches and the speaker; the agent exits 0 WITHOUT
withdrawing its routes. An agent restart (an upgrade, a crash loop of the agent alone) thus
moves no traffic: gobgpd keeps announcing, and the new agent reads gobgpd's RIB back and
applies only the delta. Routes go when gobgpd goes (its sessions close, the router withdraws
at once), which is what happens when the node is drained or its pod deleted. To take a node
out while gobgpd stays up, pass `--withdraw-on-exit`.

**In the bed** (porter_lab.agents; tests/bed) there is no kubelet: the agent is a process in
the HOST network namespace, because the API server listens on the host's loopback, and it
reaches the gobgpd inside the node's namespace through that gobgpd's unix socket, whose path
is the same from every namespace. The Node objects the tests create carry the node
namespaces' addresses.

**Central mode.** `run_central(...)` runs one central-mode Speaker in the calling thread,
against Informers the caller owns (the controller's): see its docstring.
"""

from __future__ import annotations

import argparse
import logging
import os
from typing import Any

from porter_lb.commands.process import setup_logging, stop_event_on_signals
from porter_lb.host.acceptance import HostRulesError, add_host_rule_options, host_rules_from_args
from porter_lb.kube.events import EventRecorder
from porter_lb.kube.informers import Informers
from porter_lb.layer2 import announcer as layer2
from porter_lb.routing.gobgp import GoBGP
from porter_lb.routing.speaker import SPEAKER_KINDS, Speaker
from porter_lb.telemetry.health import HEALTH

log = logging.getLogger("porter_lb.agent")

DEFAULT_GOBGP = "unix:///run/porter-lb/gobgp.sock"


def add_command(commands: Any) -> None:
    # cli imports this module: import late
    from porter_lb.commands.startup import add_cluster_watch_options, add_common_options

    parser: argparse.ArgumentParser = commands.add_parser(
        "agent", help="run the node agent: drive this node's gobgpd (per-node BGP speaker)"
    )
    add_common_options(parser)
    parser.add_argument(
        "--node",
        default=os.environ.get("NODE_NAME", ""),
        help="this node's name (default: $NODE_NAME)",
    )
    parser.add_argument(
        "--gobgp", default=DEFAULT_GOBGP, help="gRPC target of gobgpd (default: %(default)s)"
    )
    add_cluster_watch_options(parser, "BGP password Secrets")
    parser.add_argument(
        "--withdraw-on-exit",
        action="store_true",
        help="withdraw every announced route when stopping (default: leave them to gobgpd)",
    )
    add_host_rule_options(parser)
    parser.add_argument(
        "--poll-interval",
        type=float,
        default=1.0,
        help="seconds between BGP session checks (default: %(default)s)",
    )
    parser.add_argument(
        "--resync-interval",
        type=float,
        default=300.0,
        help="seconds between full re-reads of gobgpd's RIB (default: %(default)s)",
    )
    layer2.add_options(parser, lambda option: option in parser._option_string_actions)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from porter_lb.commands.startup import CommandError, kube_api, serve_metrics

    setup_logging(args.log_level, args.log_format)
    if not args.node:
        raise CommandError("--node (or $NODE_NAME) is required")
    api = kube_api(args.kubeconfig)
    try:
        host_rules = host_rules_from_args(args)
    except (ValueError, HostRulesError) as error:
        raise CommandError(f"host rules: {error}") from None
    stop = stop_event_on_signals()
    serve_metrics(args.metrics_address)
    informers = Informers(
        api, SPEAKER_KINDS, secret_namespace=args.namespace, watch_timeout=args.watch_timeout
    )
    gobgp = GoBGP(args.gobgp)
    recorder = EventRecorder(api, host=args.node)
    announcer = layer2.layer2_announcer(informers, api, recorder, args)
    speaker = Speaker(
        informers,
        gobgp,
        api,
        EventRecorder(api, host=args.node),
        mode="node",
        node_name=args.node,
        secret_namespace=args.namespace,
        poll_interval=args.poll_interval,
        resync_interval=args.resync_interval,
        withdraw_on_stop=args.withdraw_on_exit,
        class_name=args.load_balancer_class,
        accept_prefixes=host_rules.sync if host_rules is not None else None,
    )
    HEALTH.readiness(
        "caches", lambda: None if informers.synced else "the watch caches are still listing"
    )
    HEALTH.readiness("speaker", lambda: speaker.problem)
    speaker.heartbeat = HEALTH.heartbeat("speaker-loop", 60.0)
    informers.start()
    if announcer is not None:
        announcer.start(stop)
        HEALTH.liveness("layer2", announcer.problem)
    log.info("agent started", extra={"node": args.node, "gobgp": args.gobgp})
    try:
        speaker.run(stop)
    finally:
        stop.set()
        if announcer is not None:
            announcer.join()  # stops answering ARP/NDP, then releases the heartbeat Lease
        informers.stop()
        gobgp.close()
        if host_rules is not None:
            host_rules.close()  # the rules stay: gobgpd still announces the EIPs
    log.info("agent stopped")
    return 0
