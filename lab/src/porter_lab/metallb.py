"""MetalLB, the peer porter-lb is measured against (bench/peers.py), on the bed.

Built like the control plane: MetalLB's controller and speaker from the module pinned in
tools/metallb/go.mod (+ go.sum), into the cache outside the checkout, reused when present;
its CRDs come from that module's own `config/crd/bases` in the Go module cache. Nothing of
MetalLB is patched or vendored.

Run as processes, the way the bed runs porter-lb's (../shared/FACTS.md, "MetalLB on the bed"):
the controller in the host's namespace with the bed's kubeconfig (webhooks off, no metrics
port); each speaker in its node's namespace, native BGP mode, memberlist off, with a Pod object
of its name (it looks itself up for owner references; the Pod never runs). A speaker reaches
the API server, which listens on the host's loopback, through a relay: socat in the node's
namespace listens on the same loopback address and port and forwards over a unix socket on
the shared filesystem to socat on the host. `nodelay` on both TCP ends: without it Nagle and
delayed ACKs add 35-45 ms to every watch event.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from porter_lab.controlplane import Tool, build
from porter_lab.processes import Daemon
from porter_lab.topology import Node
from porter_lab.waiting import wait_for

MODULE = "go.universe.tf/metallb"
NAMESPACE = "metallb-system"
GROUP = "metallb.io"


@dataclass(frozen=True)
class _Program(Tool):
    """A main package of the MetalLB module (its packages have no /cmd/ to cut at)."""

    def version(self) -> str:
        text = (self.module_dir / "go.mod").read_text()
        match = re.search(rf"^\s*(?:require\s+)?{re.escape(MODULE)}\s+(v\S+)", text, re.MULTILINE)
        if not match:
            raise RuntimeError(f"{self.module_dir}/go.mod: no version pinned for {MODULE}")
        return match.group(1)


CONTROLLER = _Program("metallb-controller", f"{MODULE}/controller", "metallb")
SPEAKER = _Program("metallb-speaker", f"{MODULE}/speaker", "metallb")
PROGRAMS = (CONTROLLER, SPEAKER)


def binary(program: _Program) -> Path:
    """The cached binary; raises (never builds inside a bench or test) when setup has not run."""
    target = program.binary()
    if not target.exists():
        raise FileNotFoundError(
            f"MetalLB {program.version()} ({program.name}) is not built at {target}: run "
            "scripts/setup.sh (or python -m porter_lab.metallb)"
        )
    return target


def crd_files() -> list[Path]:
    """MetalLB's CRD manifests, from the pinned module's source in the Go module cache."""
    env = {**os.environ, "GOSUMDB": "off", "GOFLAGS": "-mod=readonly"}
    listed = subprocess.run(
        ["go", "list", "-m", "-f", "{{.Dir}}", MODULE],
        cwd=CONTROLLER.module_dir,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    directory = Path(listed.stdout.strip()) / "config" / "crd" / "bases"
    if listed.returncode != 0 or not directory.is_dir():
        raise FileNotFoundError(
            f"MetalLB's CRDs are not in the Go module cache ({listed.stderr.strip()}): run "
            "scripts/setup.sh (or python -m porter_lab.metallb)"
        )
    return sorted(directory.glob("*.yaml"))


# --- objects -----------------------------------------------------------------------------


def ip_address_pool(name: str, addresses: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/v1beta1",
        "kind": "IPAddressPool",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"addresses": [addresses], "avoidBuggyIPs": True},
    }


def bgp_advertisement(name: str, pool: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/v1beta1",
        "kind": "BGPAdvertisement",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"ipAddressPools": [pool]},
    }


def bgp_peer(
    name: str,
    peer_address: str,
    *,
    peer_asn: int,
    my_asn: int,
    node_labels: dict[str, str],
    hold_time: str = "9s",
) -> dict[str, Any]:
    """A native-mode BGPPeer (which refuses keepaliveTime and connectTime)."""
    return {
        "apiVersion": f"{GROUP}/v1beta2",
        "kind": "BGPPeer",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "peerAddress": peer_address,
            "peerASN": peer_asn,
            "myASN": my_asn,
            "holdTime": hold_time,
            "nodeSelectors": [{"matchLabels": node_labels}],
        },
    }


def path(kind: str, version: str = "v1beta1") -> str:
    return f"/apis/{GROUP}/{version}/namespaces/{NAMESPACE}/{kind}"


def speaker_pod(node: str) -> dict[str, Any]:
    """The Pod object a speaker looks itself up by (never scheduled: no kubelet runs it)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": speaker_pod_name(node), "namespace": NAMESPACE},
        "spec": {
            "nodeName": node,
            "containers": [{"name": "speaker", "image": "metallb-speaker.invalid"}],
        },
    }


def speaker_pod_name(node: str) -> str:
    return f"speaker-{node}"


# --- processes ---------------------------------------------------------------------------


@dataclass
class ApiRelay:
    """The API server's loopback address and port, reachable inside one node's namespace."""

    node: Node
    kubeconfig: Path
    workdir: Path
    daemons: list[Daemon] = field(default_factory=list)

    def start(self) -> ApiRelay:
        server = urlparse(_server(self.kubeconfig))
        host, port = server.hostname or "127.0.0.1", server.port or 443
        socket = self.workdir / f"apiserver-{self.node.name}.sock"
        socket.unlink(missing_ok=True)
        self.workdir.mkdir(parents=True, exist_ok=True)
        outer = Daemon(
            f"relay-{self.node.name}-host",
            ["socat", f"UNIX-LISTEN:{socket},fork", f"TCP:{host}:{port},nodelay"],
            self.workdir / f"relay-{self.node.name}-host.log",
        ).start()
        self.daemons.append(outer)
        wait_for(lambda: outer.check_running() and socket.exists(), 10, f"{socket}")
        inner = Daemon(
            f"relay-{self.node.name}-node",
            [
                "socat",
                f"TCP-LISTEN:{port},bind={host},fork,reuseaddr,nodelay",
                f"UNIX-CONNECT:{socket}",
            ],
            self.workdir / f"relay-{self.node.name}-node.log",
            netns=self.node.netns,
        ).start()
        self.daemons.append(inner)
        return self

    def stop(self) -> None:
        for daemon in reversed(self.daemons):
            daemon.stop()


def _server(kubeconfig: Path) -> str:
    match = re.search(r"server:\s*(\S+)", kubeconfig.read_text())
    if not match:
        raise RuntimeError(f"{kubeconfig}: no server")
    return match.group(1)


def start_controller(kubeconfig: Path, workdir: Path, *extra: str) -> Daemon:
    """MetalLB's controller (IP allocation) in the host's namespace."""
    return Daemon(
        "metallb-controller",
        [
            str(binary(CONTROLLER)),
            "--namespace",
            NAMESPACE,
            "--webhook-mode",
            "disabled",
            "--disable-cert-rotation",
            "--port",
            "0",
            "--log-level",
            "warn",
            *extra,
        ],
        workdir / "metallb-controller.log",
        env={"KUBECONFIG": str(kubeconfig)},
    ).start()


def start_speaker(node: Node, kubeconfig: Path, workdir: Path) -> Daemon:
    """MetalLB's speaker for `node`, in its namespace (native BGP; the relay must run)."""
    return Daemon(
        f"metallb-speaker-{node.name}",
        [str(binary(SPEAKER)), "--port", "7472", "--log-level", "warn"],
        workdir / f"metallb-speaker-{node.name}.log",
        netns=node.netns,
        env={
            "KUBECONFIG": str(kubeconfig),
            "METALLB_NODE_NAME": node.name,
            "METALLB_NAMESPACE": NAMESPACE,
            "METALLB_POD_NAME": speaker_pod_name(node.name),
            "METALLB_BGP_TYPE": "native",
            "METALLB_ML_BIND_ADDR": "",
        },
    ).start()


def main() -> int:
    """`python -m porter_lab.metallb`: build MetalLB's controller and speaker with progress."""
    for program in PROGRAMS:
        build(program, log=lambda line: print(line, flush=True))
    crd_files()
    return 0


if __name__ == "__main__":
    sys.exit(main())
