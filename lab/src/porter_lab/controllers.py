"""`porter-lb controller` processes for the bed (no kubelet here: plain processes in the host
network namespace, beside the API server)."""

from __future__ import annotations

import sys
from pathlib import Path

from porter_lab.processes import Daemon


def start_controller(
    kubeconfig: Path,
    log: Path,
    *args: str,
    identity: str,
    namespace: str = "porter-lb-system",
    name: str = "controller",
) -> Daemon:
    """Start `porter-lb controller --kubeconfig K --namespace N --identity I ARGS...`, its
    output (both streams) appended to `log`; the running Daemon."""
    return Daemon(
        name,
        [
            sys.executable,
            "-m",
            "porter_lb",
            "controller",
            "--kubeconfig",
            str(kubeconfig),
            "--namespace",
            namespace,
            "--identity",
            identity,
            *args,
        ],
        log,
    ).start()
