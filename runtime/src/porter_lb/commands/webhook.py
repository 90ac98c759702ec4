"""`porter-lb webhook`: serve the validating admission webhook for Eips over HTTPS, with its
certificate from the Secret the controller keeps or from files (docs/validation.md)."""

from __future__ import annotations

import argparse
import logging
import os
from typing import Any

from porter_lb.commands.startup import CommandError, add_common_options, kube_api, serve_metrics
from porter_lb.model.resources import Obj
from porter_lb.webhook.admission import (
    CERT_RELOAD_SECONDS,
    VALIDATE_EIP_PATH,
    CertificateSource,
    FileCertificate,
    WebhookServer,
    serve_in_thread,
    server_context,
)

log = logging.getLogger(__name__)


def add_command(commands: Any) -> None:
    """Register `porter-lb webhook` on the CLI's subcommands."""
    parser = commands.add_parser(
        "webhook", help="serve the validating admission webhook for Eips (HTTPS)"
    )
    add_common_options(parser)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--cert-secret",
        metavar="NAMESPACE/NAME",
        help="read the serving certificate (tls.crt, tls.key) from this Secret, which the "
        "controller keeps (as installed: porter-lb-system/porter-lb-webhook-tls)",
    )
    source.add_argument("--cert-file", help="serving certificate (PEM); needs --key-file")
    parser.add_argument("--key-file", help="its private key (PEM)")
    parser.add_argument("--port", type=int, default=9443, help="HTTPS port (default: %(default)s)")
    parser.add_argument(
        "--bind-address", default="0.0.0.0", help="address to listen on (default: %(default)s)"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from porter_lb.commands.process import setup_logging, stop_event_on_signals
    from porter_lb.kube.informers import PATHS
    from porter_lb.telemetry.health import HEALTH
    from porter_lb.webhook.tls import SecretCertificate, secret_path

    setup_logging(args.log_level, args.log_format)
    if args.cert_file and not args.key_file:
        raise CommandError("--cert-file needs --key-file (the certificate's private key)")
    if args.key_file and not args.cert_file:
        raise CommandError("--key-file needs --cert-file")
    if args.cert_file:
        for option, path in (("--cert-file", args.cert_file), ("--key-file", args.key_file)):
            if not os.path.isfile(path):
                raise CommandError(f"{option} {path}: no such file")
    api = kube_api(args.kubeconfig)
    stop = stop_event_on_signals()

    def stored_eips() -> list[Obj]:
        return api.list(PATHS["Eip"])[0]

    certificate: CertificateSource
    if args.cert_secret:
        namespace, slash, name = args.cert_secret.partition("/")
        if not (slash and namespace and name):
            raise CommandError(f"--cert-secret {args.cert_secret!r}: want NAMESPACE/NAME")
        certificate = SecretCertificate(
            lambda: api.get(secret_path(namespace, name)), server_context(), args.cert_secret
        )
    else:
        certificate = FileCertificate(args.cert_file, args.key_file, server_context())
    if not certificate.refresh():
        log.warning("%s; serving once it is there", certificate.problem)
    try:
        server = WebhookServer((args.bind_address, args.port), certificate, stored_eips)
    except OSError as error:
        raise CommandError(f"cannot listen on {args.bind_address}:{args.port}: {error}") from None
    HEALTH.readiness("certificate", lambda: certificate.problem)
    serve_metrics(args.metrics_address)
    thread = serve_in_thread(server)
    HEALTH.liveness("server", lambda: None if thread.is_alive() else "the HTTPS server stopped")
    log.info("serving %s on %s:%d", VALIDATE_EIP_PATH, args.bind_address, server.port)
    while not stop.wait(CERT_RELOAD_SECONDS):
        certificate.refresh()
    server.shutdown()
    server.server_close()
    thread.join(5)
    return 0
