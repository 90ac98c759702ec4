"""`porter-lb uninstall`: release what porter-lb holds in the cluster, before it is removed.

Run by the Helm chart's pre-delete hook and by deploy/porter-lb-uninstall.yaml (a Job), so that
removing porter-lb leaves nothing stuck (OpenELB #138, #251):

1. the ValidatingWebhookConfiguration goes first: nothing calls a webhook that is going away;
2. the controller Deployment is scaled to 0 and waited for until no controller pod is left,
   so nothing adds a finalizer again;
3. porter-lb's finalizer comes off every Service holding it (each with a JSON patch that first
   tests it is still where it was): deleting a Service never waits for a controller again. A
   Service keeps its last status; nothing announces it once the agents are gone;
4. the webhook certificate's Secret, which the controller made (it is in no manifest), goes.

Idempotent: what is already gone is skipped. Eips, BgpConfs and BgpPeers carry no finalizer
and are left to the CRDs' owner.
"""

from __future__ import annotations

import argparse
import logging
import time
from typing import Any

from porter_lb.allocation.controller import FINALIZER
from porter_lb.kube.api import KubeAPI, KubeError

log = logging.getLogger("porter_lb.uninstall")

CONTROLLER_DEPLOYMENT = "porter-lb-controller"
CONTROLLER_PODS = "app.kubernetes.io/name=porter-lb,app.kubernetes.io/component=controller"


def add_command(commands: Any) -> None:
    from porter_lb.commands.startup import add_common_options

    parser: argparse.ArgumentParser = commands.add_parser(
        "uninstall",
        help="release porter-lb's hold on the cluster (webhook, controller, Service finalizers)"
        " before removing it",
    )
    add_common_options(parser)
    parser.add_argument(
        "--namespace",
        default="porter-lb-system",
        help="porter-lb's namespace (default: %(default)s)",
    )
    parser.add_argument("--webhook-configuration", default="porter-lb", metavar="NAME")
    parser.add_argument("--webhook-secret", default="porter-lb-webhook-tls", metavar="NAME")
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="seconds to wait for the controller to stop"
    )
    parser.set_defaults(run=run)


def _ignore_missing(call: Any, *args: Any) -> bool:
    """Call; True if it did something, False if the object was already gone."""
    try:
        call(*args)
    except KubeError as error:
        if error.status == 404:
            return False
        raise
    return True


def run(args: argparse.Namespace) -> int:
    from porter_lb.commands.process import setup_logging
    from porter_lb.commands.startup import CommandError, kube_api

    setup_logging(args.log_level, args.log_format)
    api = kube_api(args.kubeconfig)
    try:
        released = uninstall(
            api, args.namespace, args.webhook_configuration, args.webhook_secret, args.timeout
        )
    except (KubeError, TimeoutError) as error:
        raise CommandError(str(error)) from None
    log.info("porter-lb released the cluster", extra=released)
    return 0


def uninstall(
    api: KubeAPI, namespace: str, configuration: str, secret: str, timeout: float
) -> dict[str, Any]:
    """The four steps of the module docstring; returns what was done, for the log."""
    # Not at the top: porter_lb.webhook.tls brings `cryptography` (~8 MB resident) into every
    # command that imports the command line.
    from porter_lb.webhook.tls import WEBHOOKS_PATH, secret_path

    webhook = _ignore_missing(api.delete, f"{WEBHOOKS_PATH}/{configuration}")
    scale = f"/apis/apps/v1/namespaces/{namespace}/deployments/{CONTROLLER_DEPLOYMENT}/scale"
    scaled = _ignore_missing(api.merge_patch, scale, {"spec": {"replicas": 0}})
    pods = f"/api/v1/namespaces/{namespace}/pods?labelSelector={CONTROLLER_PODS}"
    deadline = time.monotonic() + timeout
    while api.list(pods)[0]:
        if time.monotonic() > deadline:
            raise TimeoutError(f"controller pods still in {namespace} after {timeout:.0f}s")
        time.sleep(0.5)
    finalizers = 0
    services, _ = api.list("/api/v1/services")
    for service in services:
        meta = service["metadata"]
        held = list(meta.get("finalizers") or [])
        if FINALIZER not in held:
            continue
        index = held.index(FINALIZER)
        path = f"/api/v1/namespaces/{meta['namespace']}/services/{meta['name']}"
        patch = [
            {"op": "test", "path": f"/metadata/finalizers/{index}", "value": FINALIZER},
            {"op": "remove", "path": f"/metadata/finalizers/{index}"},
        ]
        if _ignore_missing(api.json_patch, path, patch):
            finalizers += 1
    secret_deleted = _ignore_missing(api.delete, secret_path(namespace, secret))
    return {
        "webhook_configuration_deleted": webhook,
        "controller_scaled_down": scaled,
        "finalizers_removed": finalizers,
        "certificate_secret_deleted": secret_deleted,
    }
