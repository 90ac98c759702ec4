"""A host with real systemd that Ansible reaches over SSH, as AWX reaches routers: the lab's
systemd host image (lab/images/molecule-host, the Molecule scenarios' host) booted as a
privileged podman container joined to one of the lab's network namespaces, with root's
authorized key given. podman adds no bridge, route or NAT rule to this host (`--network ns:`).

Privileged because systemd mounts its cgroups and the router roles write the namespace's own
/proc/sys/net; runc and the ulimits because crun and podman's default ulimits fail on this
machine kind (FACTS.md). The image has bird2 and frr baked in: the namespace has no way out.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from porter_lab import images
from porter_lab.waiting import wait_for

IMAGE = "molecule-host"


def ssh_key_pair() -> tuple[str, str]:
    """A new Ed25519 key: (the private key in OpenSSH format, the public key line)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode()
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return private, public.decode() + " porter-lab\n"


@dataclass
class SystemdHost:
    name: str  # the container's
    netns: str
    workdir: Path

    def exec(self, *argv: str, timeout: float = 30, check: bool = True) -> str:
        """A command inside the host (podman exec), its stdout."""
        done = subprocess.run(
            ["podman", "exec", self.name, *argv],
            env=images.podman_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and done.returncode != 0:
            raise RuntimeError(
                f"{self.name}: {' '.join(argv)}: exit {done.returncode}: {done.stderr.strip()}"
            )
        return done.stdout

    def start(self, authorized_key: str, timeout: float = 120) -> SystemdHost:
        """Boot it and wait until systemd has finished booting and sshd is active."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        keys = self.workdir / "authorized_keys"
        keys.write_text(authorized_key)
        keys.chmod(0o600)
        images.podman(
            "run",
            "--detach",
            "--replace",
            f"--name={self.name}",
            f"--hostname={self.name}",
            f"--network=ns:/run/netns/{self.netns}",
            "--privileged",
            "--systemd=always",
            "--runtime=runc",
            "--ulimit=nofile=20000:20000",
            "--ulimit=nproc=32768:32768",
            f"--volume={keys}:/root/.ssh/authorized_keys:ro",
            images.host_image(IMAGE),
        )

        def booted() -> bool:
            state = self.exec("systemctl", "is-system-running", check=False).strip()
            if state not in ("running", "degraded"):
                return False
            return self.exec("systemctl", "is-active", "ssh", check=False).strip() == "active"

        wait_for(booted, timeout, f"systemd and sshd up in {self.name}", interval=0.5)
        return self

    def stop(self) -> None:
        images.podman("rm", "--force", "--ignore", "--time=10", self.name)


@contextlib.contextmanager
def systemd_host(
    name: str, netns: str, workdir: Path, authorized_key: str
) -> Iterator[SystemdHost]:
    """A booted SystemdHost, removed afterwards whatever happens."""
    host = SystemdHost(name, netns, workdir)
    try:
        yield host.start(authorized_key)
    finally:
        host.stop()
