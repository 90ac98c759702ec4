"""`porter-lb audit`: compare the routes the cluster wants announced with a router's BGP RIB,
print the report as JSON (docs/route_audit.md)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from porter_lb.model.resources import (
    LOAD_BALANCER_CLASS,
)
from porter_lb.routing.audit import AuditError, drift_summary
from porter_lb.routing.audit_sources import run_audit


def _run_command(args: argparse.Namespace) -> int:
    try:
        report = run_audit(
            router=args.router,
            socket=args.socket,
            vty_socket=args.vty_socket,
            gobgp=args.gobgp,
            netns=args.netns,
            kubeconfig=args.kubeconfig,
            context=args.context,
            mode=args.mode,
            namespace=args.namespace,
            class_name=args.load_balancer_class,
            bgp_peers=args.bgp_peer,
            pools=args.pool,
            timeout=args.timeout,
        )
    except AuditError as error:
        print(f"porter-lb audit: {error}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2))
    if args.fail_on_drift and not report["in_sync"]:
        print(f"porter-lb audit: {drift_summary(report)}", file=sys.stderr)
        return 1
    return 0


def add_command(commands: Any) -> None:
    """Register `porter-lb audit`."""
    parser = commands.add_parser(
        "audit",
        help="compare the routes the cluster wants announced with a router's BGP RIB",
        description="Print, as JSON, the prefixes of the BGP Eip pools that a router is "
        "missing, holds but should not (stale), or holds with the wrong next hops. Exit "
        "status: 0 in sync (or drift without --fail-on-drift), 1 drift with "
        "--fail-on-drift, 2 cluster or router unreadable.",
    )
    parser.add_argument("--router", required=True, choices=["bird", "frr", "gobgp"])
    parser.add_argument("--socket", default="", help="BIRD control socket (birdc -s)")
    parser.add_argument("--vty-socket", default="", help="FRR vty socket directory")
    parser.add_argument(
        "--gobgp", default="", help="gobgpd gRPC target (default unix:///run/porter-lb/gobgp.sock)"
    )
    parser.add_argument(
        "--netns", default="", help="run birdc/vtysh in this network namespace (ip netns exec)"
    )
    parser.add_argument("--kubeconfig", default=os.environ.get("K8S_AUTH_KUBECONFIG", ""))
    parser.add_argument("--context", default=os.environ.get("K8S_AUTH_CONTEXT", ""))
    parser.add_argument(
        "--mode",
        default="node",
        choices=["node", "central"],
        help="how the cluster announces: a speaker per node (next hop self) or one central "
        "speaker (third-party next hops); default %(default)s",
    )
    parser.add_argument(
        "--namespace",
        default=os.environ.get("POD_NAMESPACE", "porter-lb-system"),
        help="porter-lb's namespace, where BgpPeer password Secrets live (default %(default)s)",
    )
    parser.add_argument("--load-balancer-class", default=LOAD_BALANCER_CLASS)
    parser.add_argument(
        "--bgp-peer",
        action="append",
        default=[],
        metavar="NAME",
        help="only the nodes these BgpPeers select (the audited router's); repeatable",
    )
    parser.add_argument(
        "--pool",
        action="append",
        default=[],
        metavar="EIP",
        help="only the prefixes of these Eips; repeatable (default: every BGP Eip)",
    )
    parser.add_argument("--fail-on-drift", action="store_true")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per router query")
    parser.set_defaults(run=_run_command)
