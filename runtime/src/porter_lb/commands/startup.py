"""What every `porter-lb` command needs to start: its common options, the API client and the
metrics endpoint, and `CommandError`, a mistake of the user's printed as one line (exit 2)."""

from __future__ import annotations

import argparse
import os

from porter_lb.kube.api import KubeAPI, KubeconfigError, load_api_client
from porter_lb.model.resources import LOAD_BALANCER_CLASS
from porter_lb.telemetry.metrics import metrics_address


class CommandError(Exception):
    """A mistake in how a command was called or set up: printed as one line, exit status 2."""


def kube_api(kubeconfig: str | None) -> KubeAPI:
    """The API client of --kubeconfig, else the pod's service account, else ~/.kube/config
    (`kube.api.load_api_client`); CommandError when none can be loaded."""
    if kubeconfig and not os.path.isfile(kubeconfig):
        raise CommandError(f"--kubeconfig {kubeconfig}: no such file")
    try:
        return KubeAPI(load_api_client(kubeconfig))
    except KubeconfigError as error:
        hint = "" if kubeconfig else " (outside a pod, pass --kubeconfig)"
        raise CommandError(f"{error}{hint}") from None


def serve_metrics(address: str) -> None:
    """Serve /metrics, /healthz and /readyz; CommandError when the address cannot be bound."""
    from porter_lb.telemetry import metrics

    try:
        metrics.serve(address)
    except OSError as error:
        raise CommandError(f"--metrics-address {address}: cannot listen: {error}") from None


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
