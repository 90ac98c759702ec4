"""The gobgpd process behind a `unix://` gRPC target, asked to exit so that whatever supervises
it (kubelet, systemd, the lab) starts a fresh one.

GoBGP 4 cannot change its BGP instance in place: StopBgp ends the server's loop and every later
call fails ("server stopped") until the process restarts. The speaker stops the instance itself
(letting graceful-restart peers keep its routes) and then asks the process to go: the peer
credentials of the unix socket (SO_PEERCRED) name its pid, and SIGTERM makes gobgpd exit 0.
In a pod this needs `shareProcessNamespace: true` (the manifests set it) and the same user as
gobgpd's container; elsewhere the pid is not visible and `restart` says why.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import struct

log = logging.getLogger(__name__)

UNIX = "unix://"


def socket_path(target: str) -> str | None:
    """The filesystem path of a `unix:///path` or `unix:path` target; None for TCP targets."""
    if target.startswith(UNIX):
        return target[len(UNIX) :]
    if target.startswith("unix:"):
        return target[len("unix:") :]
    return None


def serving_pid(path: str) -> int:
    """The pid of the process listening on the unix socket `path`, 0 when it is not visible
    from this pid namespace. Raises OSError when nothing listens there."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(2.0)
        client.connect(path)
        creds = client.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, _uid, _gid = struct.unpack("3i", creds)
    return int(pid)


class GobgpdProcess:
    """Restarts the gobgpd serving `target` by asking it to exit (see the module docstring)."""

    def __init__(self, target: str) -> None:
        self.target = target

    def restart(self) -> str | None:
        """Send SIGTERM to gobgpd; None once sent, else why it could not be (for the speaker
        to report: the process must then be restarted by hand or by its liveness probe)."""
        path = socket_path(self.target)
        if path is None:
            return f"gobgpd at {self.target} is not on a unix socket: its process is unknown"
        try:
            pid = serving_pid(path)
        except OSError as error:
            return f"cannot reach gobgpd's socket {path}: {error}"
        if pid <= 0 or pid == os.getpid():
            return (
                f"gobgpd's process behind {path} is not visible from here "
                "(a pod needs shareProcessNamespace: true)"
            )
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError as error:
            return f"cannot signal gobgpd (pid {pid}): {error}"
        log.info("asked gobgpd to exit for a restart", extra={"pid": pid, "socket": path})
        return None
