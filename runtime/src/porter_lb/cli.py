"""`porter-lb` command line: one entry point for the controller, the agent and operator checks.

Each long-running command lives in its own module and registers itself here with
`add_command(commands)`; its `run(args)` returns the exit status.

A user never sees a traceback for a mistake of theirs: a bad flag, a missing file, a port that
cannot be bound or credentials that cannot be loaded end the command with one line naming what
is wrong (`CommandError`, exit status 2).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    from porter_lb.kube.api import KubeAPI

from porter_lb import __version__
from porter_lb.commands import agent, controller, uninstall
from porter_lb.model.resources import LOAD_BALANCER_CLASS
from porter_lb.routing import audit
from porter_lb.telemetry.metrics import metrics_address


class CommandError(Exception):
    """A mistake in how a command was called or set up: printed as one line, exit status 2."""


class Parser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line (`porter-lb agent: --node: ...`), no usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def kube_api(kubeconfig: str | None) -> KubeAPI:
    """The API client for --kubeconfig, or the in-cluster configuration; CommandError when
    neither can be loaded."""
    from porter_lb.kube.api import KubeAPI, load_api_client

    if kubeconfig and not os.path.isfile(kubeconfig):
        raise CommandError(f"--kubeconfig {kubeconfig}: no such file")
    try:
        return KubeAPI(load_api_client(kubeconfig))
    except Exception as error:  # noqa: BLE001 - the client raises many kinds: say which
        where = f"--kubeconfig {kubeconfig}" if kubeconfig else "the in-cluster configuration"
        hint = "" if kubeconfig else " (outside a pod, pass --kubeconfig)"
        raise CommandError(f"cannot load {where}: {error}{hint}") from None


def serve_metrics(address: str) -> None:
    """Serve /metrics, /healthz and /readyz; CommandError when the address cannot be bound."""
    from porter_lb.telemetry import metrics

    try:
        metrics.serve(address)
    except OSError as error:
        raise CommandError(f"--metrics-address {address}: cannot listen: {error}") from None


def _speaker_status(args: argparse.Namespace) -> int:
    from porter_lb.routing.gobgp import GoBGP, GoBGPError

    try:
        with GoBGP(args.gobgp, timeout=args.timeout) as speaker:
            speaker.wait_ready(args.timeout)
            peers = speaker.peers()
            routes = speaker.routes()
    except GoBGPError as error:
        print(f"porter-lb: {error}", file=sys.stderr)
        return 1
    print(
        json.dumps(
            {
                "peers": [vars(p) for p in peers],
                "routes": [vars(r) for r in routes],
            },
            indent=2,
        )
    )
    return 0


def add_common_options(parser: argparse.ArgumentParser) -> None:
    """Options every long-running command takes: cluster access, logs, metrics."""
    parser.add_argument(
        "--kubeconfig", default=None, help="kubeconfig file (default: in-cluster configuration)"
    )
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])
    parser.add_argument("--log-format", default="json", choices=["json", "text"])
    parser.add_argument(
        "--metrics-address",
        default="",
        type=metrics_address,
        help="host:port to serve Prometheus /metrics and the /healthz, /readyz probes on"
        " (default: off)",
    )


def add_cluster_watch_options(parser: argparse.ArgumentParser, namespace_holds: str) -> None:
    """Options of the commands that watch the cluster for porter-lb's Services: porter-lb's
    namespace (`namespace_holds` says what it holds for this command), the class, watches."""
    parser.add_argument(
        "--namespace",
        default=os.environ.get("POD_NAMESPACE", "porter-lb-system"),
        help=f"porter-lb's namespace: {namespace_holds} (default: %(default)s)",
    )
    parser.add_argument(
        "--load-balancer-class",
        default=LOAD_BALANCER_CLASS,
        help="spec.loadBalancerClass that selects porter-lb (default: %(default)s)",
    )
    parser.add_argument(
        "--watch-timeout", type=int, default=300, help="seconds a watch stays open (default: 300)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="porter-lb", description="porter-lb: bare-metal load balancer for Kubernetes"
    )
    parser.add_argument("--version", action="version", version=f"porter-lb {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    status = commands.add_parser(
        "speaker-status", help="show a gobgpd's BGP sessions and locally announced routes"
    )
    status.add_argument(
        "--gobgp",
        default="unix:///run/porter-lb/gobgp.sock",
        help="gRPC target of gobgpd (default: %(default)s)",
    )
    status.add_argument("--timeout", type=float, default=5.0, help="seconds (default: %(default)s)")
    status.set_defaults(run=_speaker_status)
    # Long-running commands register here, one line each.
    controller.add_command(commands)
    __import__("porter_lb.webhook.admission", fromlist=["add_command"]).add_command(commands)
    agent.add_command(commands)
    audit.add_command(commands)
    uninstall.add_command(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except CommandError as error:
        print(f"porter-lb {args.command}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
