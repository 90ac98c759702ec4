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
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from porter_lb.commands.process import setup_logging, stop_event_on_signals
from porter_lb.host.acceptance import (
    DEFAULT_PRIORITY,
    DEFAULT_PROTOCOL,
    DEFAULT_TABLE,
    MODES,
    HostRulesConfig,
    HostRulesError,
)
from porter_lb.kube.events import EventRecorder
from porter_lb.kube.informers import Informers
from porter_lb.layer2.heartbeat import DEFAULT_INTERVAL, DEFAULT_TIMEOUT
from porter_lb.telemetry.health import HEALTH

if TYPE_CHECKING:
    from porter_lb.host.netlink import HostRules
    from porter_lb.kube.api import KubeAPI
    from porter_lb.layer2.announcer import Layer2Announcer

# The gRPC client (grpcio, ~20 MB resident with the asyncio it pulls in), the speaker and the
# announcer are imported by `run`, not here: `porter-lb controller` and the other commands
# import this module to register their command line, and must not pay for them.

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
    add_layer2_options(parser, lambda option: option in parser._option_string_actions)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from porter_lb.commands.startup import CommandError, kube_api, serve_metrics
    from porter_lb.routing.gobgp import GoBGP
    from porter_lb.routing.gobgpd_process import GobgpdProcess
    from porter_lb.routing.speaker import SPEAKER_KINDS, Speaker

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
    announcer = layer2_announcer(informers, api, recorder, args, host_rules)
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
        restart_gobgpd=GobgpdProcess(gobgp.target).restart,
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


def add_host_rule_options(parser: argparse.ArgumentParser) -> None:
    """`porter-lb agent`'s host-rule options (see docs/agent.md)."""
    parser.add_argument(
        "--host-rules",
        choices=MODES,
        default=os.environ.get("PORTER_LB_HOST_RULES", "off"),
        help="how this node accepts the EIPs it announces: an ip rule per EIP to a table with"
        " a local default route (table), a local route per EIP (local), or not at all (off:"
        " kube-proxy accepts them) (default: $PORTER_LB_HOST_RULES or %(default)s)",
    )
    parser.add_argument(
        "--host-rules-table",
        type=int,
        default=DEFAULT_TABLE,
        help="routing table of mode table (default: %(default)s)",
    )
    parser.add_argument(
        "--host-rules-priority",
        type=int,
        default=DEFAULT_PRIORITY,
        help="priority of the ip rules of mode table (default: %(default)s)",
    )
    parser.add_argument(
        "--host-rules-protocol",
        type=int,
        default=DEFAULT_PROTOCOL,
        help="protocol number marking porter-lb's rules and routes (default: %(default)s)",
    )
    parser.add_argument(
        "--netns",
        default="",
        help="network namespace holding the node's interfaces, rules and routes: a name under"
        " /run/netns or an absolute path (default: the agent's own; the lab runs agents in the"
        " host's)",
    )


def host_rules_from_args(args: argparse.Namespace) -> HostRules | None:
    """The agent's HostRules (None with `--host-rules off`), its settings checked: each
    problem is logged as a warning naming the sysctl and the value wanted.

    Raises ValueError for bad numbers and HostRulesError when the namespace cannot be
    entered or read.
    """
    config = HostRulesConfig(
        args.host_rules, args.host_rules_table, args.host_rules_priority, args.host_rules_protocol
    )
    if config.mode == "off":
        return None
    from porter_lb.host.netlink import HostRules

    rules = HostRules(config, netns=args.netns, node=args.node)
    try:
        problems = rules.check_settings()
    except Exception:
        rules.close()
        raise
    for name, message in sorted(problems.items()):
        log.warning("host setting: %s", message, extra={"sysctl": name, "netns": args.netns})
    log.info(
        "host rules on",
        extra={
            "mode": config.mode,
            "table": config.table,
            "priority": config.priority,
            "protocol": config.protocol,
            "netns": args.netns,
        },
    )
    return rules


def layer2_announcer(
    informers: Informers,
    api: KubeAPI,
    recorder: EventRecorder | None,
    args: Any,
    host_rules: HostRules | None = None,
) -> Layer2Announcer | None:
    """The announcer as `porter-lb agent` configures it from its command line (None: off).
    With host rules on, the node accepts the IPs it answers for through them."""
    if not args.layer2:
        return None

    def accept_ips(ips: frozenset[str]) -> None:
        if host_rules is not None:
            host_rules.sync(ips, "layer2")

    from porter_lb.layer2.announcer import Layer2Announcer

    return Layer2Announcer(
        informers,
        api,
        recorder,
        node_name=args.node,
        namespace=args.namespace,
        netns=getattr(args, "netns", "") or "",
        heartbeat_interval=args.heartbeat_interval,
        heartbeat_timeout=args.heartbeat_timeout,
        class_name=args.load_balancer_class,
        accept_ips=accept_ips if host_rules is not None else None,
    )


def add_layer2_options(parser: Any, has_option: Callable[[str], bool]) -> None:
    """The agent's layer-2 options (`--netns` only if the agent does not define it already)."""
    parser.add_argument(
        "--layer2",
        action="store_true",
        help="answer ARP/NDP for the IPs of layer2 Eips this node wins, and renew this "
        "node's heartbeat Lease (default: off)",
    )
    if not has_option("--netns"):
        parser.add_argument(
            "--netns",
            default="",
            help="network namespace holding the node's interfaces: a name under /run/netns "
            "or an absolute path (default: the agent's own)",
        )
    parser.add_argument(
        "--heartbeat-interval",
        type=float,
        default=DEFAULT_INTERVAL,
        help="seconds between renewals of this node's heartbeat Lease (default: %(default)s)",
    )
    parser.add_argument(
        "--heartbeat-timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help="a node whose heartbeat has not changed for this many seconds is dead for "
        "layer-2 announcement (default: %(default)s)",
    )
