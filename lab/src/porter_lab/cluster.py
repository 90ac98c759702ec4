"""A real multi-node Kubernetes cluster on this one machine, its network the lab's namespaces.

    client ─ router (BIRD/FRR) ─ br0 198.51.100.0/24 ─┬─ cp    .2   etcd, kube-apiserver,
                                                      │             controller-manager, scheduler
                                                      ├─ node1 .11  containerd, kubelet,
                                                      ├─ node2 .12  kube-proxy; pods in
                                                      └─ node3 .13  10.244.<i>.0/24

Every node is a network namespace of the lab's topology (porter_lab.topology), so the router's
ECMP reaches the nodes exactly as before; what runs in it is what runs on a real node: containerd
(Debian's) with runc and the CNI plugins (bridge + host-local), a kubelet and kube-proxy (iptables)
built from the same pinned k8s.io/kubernetes module as the API server. Pods get real EndpointSlices
from the EndpointSlice controller and real Node conditions from their kubelets.

How a node is made (../shared/FACTS.md, "A real cluster on one machine", has every reason):

- a *holder* process per node, `ip netns exec NODE unshare --uts`, sets up the node's private view
  of the file system and stays: the cgroup hierarchies mounted again (ip netns exec mounts a fresh
  /sys), a private tmpfs /run, its own directories bound over /var/lib/kubelet, /var/lib/cni and
  /var/log/{pods,containers}, and files holding the values the kubelet wants bound over the
  host-wide sysctls it would otherwise write (the host is never changed). containerd, the kubelet
  and kube-proxy each enter the holder's namespaces with nsenter, so each can be stopped and
  started alone (a stopped kubelet turns its Node NotReady; its pods keep running);
- its own cgroup root (`/plb<run>-<node>`) in every hierarchy, so two kubelets never see each
  other's pods;
- containerd with `restrict_oom_score_adj` (this VM has no CAP_SYS_RESOURCE) and the lab's
  pause image; the images built by porter_lab.images are imported into it;
- static routes to the other nodes' pod networks (no overlay: they share a LAN).

The control plane runs in a namespace of its own on the node LAN, so kubelets, pods (through the
`kubernetes` Service) and the router reach it; the API server calls porter-lb's webhook at its
pods' addresses (`--enable-aggregator-routing`). This host reaches the API server through a relay
on its loopback (socat: TCP ↔ unix socket ↔ TCP inside the namespace), never by changing the
host's links or routes. Nodes authenticate as `system:node:<name>` (Node authorization).

`Cluster.start()` / `stop()`; `remove_leftovers(run)` removes what a crashed run left behind.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from porter_lab import netns
from porter_lab.controlplane import (
    CLUSTER_COMPONENTS,
    KUBE_CONTROLLER_MANAGER,
    KUBE_PROXY,
    KUBE_SCHEDULER,
    KUBECTL,
    KUBELET,
    ControlPlane,
    write_kubeconfig,
)
from porter_lab.images import BuiltImages
from porter_lab.processes import Daemon, kill_group
from porter_lab.topology import NODE_NET, PREFIX_ROOT, Node, Topology
from porter_lab.waiting import Fatal, wait_for

Log = Callable[[str], None]

CP_ADDRESS = f"{NODE_NET}.2"
API_PORT = 6443
CLUSTER_CIDR = "10.244.0.0/16"
SERVICE_CIDR = "10.96.0.0/16"
# How long a silent kubelet keeps its Node Ready: short, so a stopped kubelet shows in seconds
# (Kubernetes' default is 40 s). The kubelet renews its Lease every 4 s (a quarter of 16 s).
NODE_MONITOR_GRACE_PERIOD = 16
NODE_LEASE_SECONDS = 16
# The values kubelet wants for host-wide sysctls (pkg/kubelet/cm setupKernelTunables): bound over
# /proc/sys inside each node's mount namespace, so the kubelet finds them set and writes nothing.
KUBELET_SYSCTLS = {
    "vm/overcommit_memory": 1,
    "vm/panic_on_oom": 0,
    "kernel/panic": 10,
    "kernel/panic_on_oops": 1,
    "kernel/keys/root_maxkeys": 1000000,
    "kernel/keys/root_maxbytes": 25000000,
}
# Fixed paths kubelet, containerd and the CNI plugins use whatever their flags say: each node
# binds a directory of its own over them. Missing ones are made (empty) on the host as mount
# points, and removed again when the last cluster goes.
NODE_BIND_PATHS = ("/var/lib/kubelet", "/var/lib/cni", "/var/log/pods", "/var/log/containers")
CNI_BIN_DIR = "/usr/lib/cni"
# Unix sockets the host and a node (or the control plane's namespace) share: a short path of
# their own, as a socket's path may not exceed 107 bytes (a test's tmp_path easily does), and
# /tmp, which every node's mount namespace shares with the host (each has a private /run).
SOCKET_ROOT = Path("/tmp/porter-lab")


def socket_dir(run: str) -> Path:
    return SOCKET_ROOT / f"{PREFIX_ROOT}{run}"


def pod_cidr(node: Node) -> str:
    return f"10.244.{node.index}.0/24"


def cgroup_mounts() -> list[Path]:
    """This host's cgroup hierarchies (v1 controllers, name=systemd, the v2 `unified`)."""
    mounts = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        _, where, kind, *_ = line.split()
        if kind in ("cgroup", "cgroup2"):
            mounts.append(Path(where))
    return mounts


def _mount_commands() -> list[str]:
    """Shell lines re-mounting, in a node's mount namespace, the cgroup hierarchies this host has
    (ip netns exec mounts a fresh /sys without them)."""
    lines = ["mount -t tmpfs -o mode=755 cgroup /sys/fs/cgroup"]
    for line in Path("/proc/self/mounts").read_text().splitlines():
        _, where, kind, options, *_ = line.split()
        if kind == "cgroup":
            wanted = [o for o in options.split(",") if o not in ("rw", "relatime", "ro")]
            lines.append(f"mkdir -p {where}")
            lines.append(f"mount -t cgroup -o {','.join(wanted) or 'none'} cgroup {where}")
        elif kind == "cgroup2":
            lines.append(f"mkdir -p {where}")
            lines.append(f"mount -t cgroup2 cgroup2 {where}")
    return lines


# --- the control plane ---------------------------------------------------------------------


@dataclass
class ClusterControlPlane(ControlPlane):
    """etcd, kube-apiserver, kube-controller-manager and kube-scheduler in the control-plane
    namespace, on the node LAN; this host reaches the API server through a loopback relay."""

    address: str = CP_ADDRESS
    sockets: Path = SOCKET_ROOT
    relay: list[Daemon] = field(default_factory=list)
    controller_manager: Daemon | None = None
    scheduler: Daemon | None = None

    def server_names(self) -> tuple[str, ...]:
        return (self.address,)

    @property
    def in_cluster_url(self) -> str:
        return f"https://{self.address}:{API_PORT}"

    def start(self, timeout: float = 120) -> ClusterControlPlane:
        assert self.netns, "the cluster's control plane runs in a namespace of its own"
        missing = [c for c in CLUSTER_COMPONENTS if not c.binary().exists()]
        if missing:
            names = ", ".join(f"{c.name} ({c.binary()})" for c in missing)
            raise RuntimeError(f"Kubernetes not built: {names}; run scripts/setup.sh")
        self._start_relay()
        super().start(timeout)
        pki = self.workdir / "pki"
        ca = pki / "ca.crt"
        kcm = write_kubeconfig(
            self.workdir / "controller-manager.kubeconfig",
            self.in_cluster_url,
            ca,
            *self.issue_client("controller-manager", "system:kube-controller-manager"),
            user="system:kube-controller-manager",
        )
        scheduler = write_kubeconfig(
            self.workdir / "scheduler.kubeconfig",
            self.in_cluster_url,
            ca,
            *self.issue_client("scheduler", "system:kube-scheduler"),
            user="system:kube-scheduler",
        )
        self.controller_manager = Daemon(
            "kube-controller-manager",
            [
                str(KUBE_CONTROLLER_MANAGER.binary()),
                f"--kubeconfig={kcm}",
                f"--authentication-kubeconfig={kcm}",
                f"--authorization-kubeconfig={kcm}",
                "--bind-address=127.0.0.1",
                "--leader-elect=false",
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--root-ca-file={ca}",
                f"--cluster-cidr={CLUSTER_CIDR}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                f"--node-monitor-grace-period={NODE_MONITOR_GRACE_PERIOD}s",
                "--node-monitor-period=1s",
                # No cloud: nothing else writes a LoadBalancer Service's status.
                "--controllers=*,-cloud-node-lifecycle-controller,-service-lb-controller,"
                "-node-route-controller",
                "--v=1",
            ],
            self.workdir / "kube-controller-manager.log",
            netns=self.netns,
        ).start()
        self.scheduler = Daemon(
            "kube-scheduler",
            [
                str(KUBE_SCHEDULER.binary()),
                f"--kubeconfig={scheduler}",
                f"--authentication-kubeconfig={scheduler}",
                f"--authorization-kubeconfig={scheduler}",
                "--bind-address=127.0.0.1",
                "--leader-elect=false",
                "--v=1",
            ],
            self.workdir / "kube-scheduler.log",
            netns=self.netns,
        ).start()
        return self

    def _start_relay(self) -> None:
        """socat on this host's loopback → a unix socket → socat in the namespace → the API
        server. TCP_NODELAY on both TCP ends: without it watch events wait on delayed ACKs."""
        self.port = _free_port()
        self.sockets.mkdir(parents=True, exist_ok=True)
        sock = self.sockets / "apiserver.sock"
        self.workdir.mkdir(parents=True, exist_ok=True)
        inner = Daemon(
            "apiserver-relay-inner",
            [
                "socat",
                f"UNIX-LISTEN:{sock},fork,unlink-early,mode=600",
                f"TCP:{self.address}:{API_PORT},nodelay",
            ],
            self.workdir / "relay-inner.log",
            netns=self.netns,
        ).start()
        outer = Daemon(
            "apiserver-relay",
            [
                "socat",
                f"TCP-LISTEN:{self.port},bind=127.0.0.1,reuseaddr,fork,nodelay",
                f"UNIX-CONNECT:{sock}",
            ],
            self.workdir / "relay.log",
        ).start()
        self.relay = [inner, outer]

    def apiserver_flags(self, pki: dict[str, Path]) -> list[str]:
        kubelet_client = self.issue_client(
            "apiserver-kubelet-client", "kube-apiserver-kubelet-client", ("system:masters",)
        )
        return [
            f"--etcd-servers={self.etcd_url}",
            f"--bind-address={self.address}",
            f"--advertise-address={self.address}",
            f"--secure-port={API_PORT}",
            f"--cert-dir={self.workdir / 'pki'}",
            f"--tls-cert-file={pki['serving_cert']}",
            f"--tls-private-key-file={pki['serving_key']}",
            f"--client-ca-file={pki['ca']}",
            f"--kubelet-client-certificate={kubelet_client[0]}",
            f"--kubelet-client-key={kubelet_client[1]}",
            # Nodes by address: nothing here resolves their names (no lookup leaves the lab).
            "--kubelet-preferred-address-types=InternalIP",
            f"--service-account-key-file={pki['sa_pub']}",
            f"--service-account-signing-key-file={pki['sa_key']}",
            "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--service-node-port-range=20000-32767",
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction",
            "--allow-privileged=true",
            # Webhooks (porter-lb's) and aggregated APIs are called at their pods' addresses:
            # this namespace runs no kube-proxy to reach a ClusterIP.
            "--enable-aggregator-routing=true",
            "--v=1",
        ]

    def stop(self) -> None:
        for daemon in (self.scheduler, self.controller_manager):
            if daemon is not None:
                daemon.stop(timeout=10)
        super().stop()  # the API server before etcd: stopped the other way round it hangs
        for daemon in self.relay:
            daemon.stop(timeout=5)


def _free_port() -> int:
    from porter_lab.controlplane import free_port

    return free_port()


# --- nodes ---------------------------------------------------------------------------------


@dataclass
class ClusterNode:
    """One node: a holder of its namespaces, then containerd, a kubelet and kube-proxy."""

    node: Node
    workdir: Path
    run_prefix: str
    sockets: Path
    holder: Daemon | None = None
    containerd: Daemon | None = None
    kubelet: Daemon | None = None
    kube_proxy: Daemon | None = None

    @property
    def name(self) -> str:
        return self.node.name

    @property
    def cgroup_name(self) -> str:
        return f"{self.run_prefix}{self.node.name}"

    @property
    def containerd_socket(self) -> Path:
        return self.sockets / f"{self.node.name}-containerd.sock"

    def prepare(self, plane: ClusterControlPlane, pause_image: str, peers: list[Node]) -> None:
        """Directories, cgroups, configuration files and routes; starts nothing."""
        w = self.workdir
        self.sockets.mkdir(parents=True, exist_ok=True)
        for sub in ("kubelet", "cni/net.d", "cni/lib", "log/pods", "log/containers", "sysctl"):
            (w / sub).mkdir(parents=True, exist_ok=True)
        for hierarchy in cgroup_mounts():
            root = hierarchy / self.cgroup_name
            root.mkdir(exist_ok=True)
            for name in ("cpuset.cpus", "cpuset.mems"):
                if (hierarchy / name).exists() and (root / name).exists():
                    (root / name).write_text((hierarchy / name).read_text())
        for key, value in KUBELET_SYSCTLS.items():
            (w / "sysctl" / key.replace("/", ".")).write_text(f"{value}\n")
        # No name service in the lab: pods' lookups fail at once (nothing listens on the
        # node's loopback), never wait on, or send to, this host's resolver.
        (w / "resolv.conf").write_text("# porter-lab: no name service\nnameserver 127.0.0.1\n")
        (w / "containerd.toml").write_text(self._containerd_config(pause_image))
        (w / "cni/net.d/10-porter-lab.conflist").write_text(self._cni_config())
        ca = plane.workdir / "pki/ca.crt"
        kubelet_cert = plane.issue_client(
            f"kubelet-{self.name}", f"system:node:{self.name}", ("system:nodes",)
        )
        write_kubeconfig(
            w / "kubelet.kubeconfig",
            plane.in_cluster_url,
            ca,
            *kubelet_cert,
            user=f"system:node:{self.name}",
        )
        proxy_cert = plane.issue_client(f"kube-proxy-{self.name}", "system:kube-proxy")
        write_kubeconfig(
            w / "kube-proxy.kubeconfig",
            plane.in_cluster_url,
            ca,
            *proxy_cert,
            user="system:kube-proxy",
        )
        (w / "kubelet.yaml").write_text(json.dumps(self._kubelet_config(ca), indent=2))
        (w / "kube-proxy.yaml").write_text(json.dumps(self._kube_proxy_config(), indent=2))
        ns = self.node.netns
        netns.sysctl(ns, "net.ipv4.ip_forward", 1)
        for peer in peers:
            if peer.name != self.name:
                netns.ip("route", "replace", pod_cidr(peer), "via", peer.address, netns=ns)

    def _containerd_config(self, pause_image: str) -> str:
        w = self.workdir
        return f"""# containerd of lab node {self.name} (porter_lab.cluster)
version = 2
root = "{w / "containerd"}"
state = "/run/containerd"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = "{self.containerd_socket}"

[plugins."io.containerd.internal.v1.opt"]
  path = "{w / "opt"}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause_image}"
  # This VM has no CAP_SYS_RESOURCE: runc cannot lower oom_score_adj below its own.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN_DIR}"
    conf_dir = "{w / "cni/net.d"}"
"""

    def _cni_config(self) -> str:
        return json.dumps(
            {
                "cniVersion": "0.4.0",
                "name": "porter-lab",
                "plugins": [
                    {
                        "type": "bridge",
                        "bridge": "cni0",
                        "isGateway": True,
                        "ipMasq": True,
                        "hairpinMode": True,
                        "ipam": {
                            "type": "host-local",
                            "ranges": [[{"subnet": pod_cidr(self.node)}]],
                            "routes": [{"dst": "0.0.0.0/0"}],
                            "dataDir": str(self.workdir / "cni/lib/networks"),
                        },
                    },
                    {"type": "portmap", "capabilities": {"portMappings": True}},
                ],
            },
            indent=2,
        )

    def _kubelet_config(self, ca: Path) -> dict[str, Any]:
        return {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": str(ca)},
            },
            "authorization": {"mode": "Webhook"},
            "address": self.node.address,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "containerRuntimeEndpoint": f"unix://{self.containerd_socket}",
            # Hybrid cgroup v1 here, no systemd managing these cgroups; a root per node.
            "cgroupDriver": "cgroupfs",
            "cgroupRoot": f"/{self.cgroup_name}",
            "failCgroupV1": False,
            "failSwapOn": False,
            "protectKernelDefaults": False,
            "clusterDNS": [],
            "resolvConf": str(self.workdir / "resolv.conf"),
            "serializeImagePulls": False,
            "nodeStatusUpdateFrequency": "4s",
            "nodeStatusReportFrequency": "10s",
            "nodeLeaseDurationSeconds": NODE_LEASE_SECONDS,
            # The nodes share one disk: no image GC or disk-pressure eviction between them.
            "imageGCHighThresholdPercent": 100,
            "evictionHard": {
                "memory.available": "50Mi",
                "nodefs.available": "1%",
                "imagefs.available": "1%",
            },
            "podPidsLimit": -1,
            "maxPods": 110,
            "shutdownGracePeriod": "0s",
            "syncFrequency": "10s",
            "fileCheckFrequency": "20s",
            "certDirectory": str(self.workdir / "kubelet/pki"),
        }

    def _kube_proxy_config(self) -> dict[str, Any]:
        return {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(self.workdir / "kube-proxy.kubeconfig")},
            "hostnameOverride": self.name,
            "mode": "iptables",
            "clusterCIDR": CLUSTER_CIDR,
            "bindAddress": "0.0.0.0",
            "healthzBindAddress": "0.0.0.0:10256",
            "metricsBindAddress": "127.0.0.1:10249",
            # Leave the host-wide conntrack table size alone.
            "conntrack": {"maxPerCore": 0, "min": 0},
        }

    # processes

    def _holder_script(self) -> str:
        w = self.workdir
        lines = [
            "set -e",
            f"hostname {self.name}",
            *_mount_commands(),
            # A private /run: containerd's state and the pods' network namespaces.
            "mount -t tmpfs -o mode=755 run /run",
        ]
        for path, own in zip(
            NODE_BIND_PATHS,
            (w / "kubelet", w / "cni/lib", w / "log/pods", w / "log/containers"),
            strict=True,
        ):
            lines.append(f"mount --bind {own} {path}")
        for key in KUBELET_SYSCTLS:
            lines.append(f"mount --bind {w / 'sysctl' / key.replace('/', '.')} /proc/sys/{key}")
        lines += [f"touch {w / 'holder.ready'}", "exec sleep infinity"]
        return "\n".join(lines) + "\n"

    def _enter(self, argv: list[str]) -> list[str]:
        assert self.holder is not None
        return ["nsenter", "-t", str(self.holder.pid), "-m", "-u", "-n", "--", *argv]

    def start_holder(self) -> None:
        script = self.workdir / "holder.sh"
        script.write_text(self._holder_script())
        (self.workdir / "holder.ready").unlink(missing_ok=True)
        self.holder = Daemon(
            f"{self.name}-holder",
            ["unshare", "--uts", "--", "sh", str(script)],
            self.workdir / "holder.log",
            netns=self.node.netns,
        ).start()
        wait_for(
            lambda: (
                self.holder is not None
                and self.holder.check_running()
                and (self.workdir / "holder.ready").exists()
            ),
            15,
            f"{self.name}'s namespaces",
        )

    def start_containerd(self) -> None:
        self.containerd = Daemon(
            f"{self.name}-containerd",
            self._enter(["containerd", "--config", str(self.workdir / "containerd.toml")]),
            self.workdir / "containerd.log",
        ).start()
        wait_for(
            lambda: (
                self.containerd is not None
                and self.containerd.check_running()
                and self.ctr("version").returncode == 0
            ),
            30,
            f"containerd on {self.name}",
            interval=0.1,
        )

    def ctr(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ctr", "--address", str(self.containerd_socket), "--namespace", "k8s.io", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def import_images(self, archive: Path) -> None:
        result = self.ctr("images", "import", str(archive), timeout=300)
        if result.returncode != 0:
            raise RuntimeError(f"{self.name}: ctr images import {archive}: {result.stderr}")

    def start_kubelet(self) -> None:
        self.kubelet = Daemon(
            f"{self.name}-kubelet",
            self._enter(
                [
                    str(KUBELET.binary()),
                    f"--config={self.workdir / 'kubelet.yaml'}",
                    f"--kubeconfig={self.workdir / 'kubelet.kubeconfig'}",
                    f"--hostname-override={self.name}",
                    f"--node-ip={self.node.address}",
                    "--root-dir=/var/lib/kubelet",
                    "--v=1",
                ]
            ),
            self.workdir / "kubelet.log",
        ).start()

    def start_kube_proxy(self) -> None:
        self.kube_proxy = Daemon(
            f"{self.name}-kube-proxy",
            self._enter(
                [str(KUBE_PROXY.binary()), f"--config={self.workdir / 'kube-proxy.yaml'}", "--v=1"]
            ),
            self.workdir / "kube-proxy.log",
        ).start()

    def stop_kubelet(self) -> None:
        """Stop the kubelet alone (SIGTERM): its pods keep running, its Node goes NotReady
        after the controller-manager's grace period."""
        if self.kubelet is not None:
            self.kubelet.stop(timeout=10)

    def daemons(self) -> list[Daemon]:
        return [d for d in (self.kube_proxy, self.kubelet, self.containerd, self.holder) if d]

    def stop(self) -> None:
        for daemon in self.daemons():
            daemon.stop(timeout=10)
        remove_node_leftovers(self.node.netns, self.cgroup_name)


def _pids_in_cgroups(name: str) -> set[int]:
    pids: set[int] = set()
    for hierarchy in cgroup_mounts():
        root = hierarchy / name
        if not root.is_dir():
            continue
        for procs in root.rglob("cgroup.procs"):
            with contextlib.suppress(OSError, ValueError):
                pids |= {int(p) for p in procs.read_text().split()}
    return pids


def _pids_in_netns(name: str) -> set[int]:
    result = subprocess.run(
        ["ip", "netns", "pids", name], capture_output=True, text=True, check=False
    )
    return {int(p) for p in result.stdout.split()} if result.returncode == 0 else set()


def remove_node_leftovers(netns_name: str, cgroup_name: str, timeout: float = 20) -> None:
    """Kill every process of a node (its pods' included: in its cgroups or its namespace) and
    remove its cgroups. Safe to call for a node that is already gone."""
    deadline = time.monotonic() + timeout
    while True:
        pids = _pids_in_cgroups(cgroup_name) | _pids_in_netns(netns_name)
        pids.discard(os.getpid())
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        if time.monotonic() > deadline:
            raise RuntimeError(f"processes of {netns_name} would not die: {sorted(pids)}")
        time.sleep(0.1)
    for hierarchy in cgroup_mounts():
        root = hierarchy / cgroup_name
        if not root.is_dir():
            continue
        for directory in sorted(
            (p for p in root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True
        ):
            with contextlib.suppress(OSError):
                directory.rmdir()
        wait_for(functools.partial(_rmdir, root), 10, f"cgroup {root} removed")


def _rmdir(path: Path) -> bool:
    try:
        path.rmdir()
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return True


def remove_leftovers(run: str) -> list[str]:
    """Everything a cluster of lab run `run` may have left (a crash, a killed test): processes
    in its namespaces or cgroups, the cgroups, the namespaces. Returns the namespaces removed."""
    prefix = f"{PREFIX_ROOT}{run}-"
    names = [n for n in netns.existing() if n.startswith(prefix)]
    cgroups = {
        p.name
        for hierarchy in cgroup_mounts()
        if hierarchy.is_dir()
        for p in hierarchy.iterdir()
        if p.name.startswith(prefix)
    }
    for name in sorted(set(names) | cgroups):
        remove_node_leftovers(name, name)
    for name in names:
        netns.delete(name)
    shutil.rmtree(socket_dir(run), ignore_errors=True)
    with contextlib.suppress(OSError):
        SOCKET_ROOT.rmdir()  # unless another lab's sockets are in it
    return names


def _make_mount_points() -> list[str]:
    made = []
    for path in NODE_BIND_PATHS:
        if not os.path.isdir(path):
            os.makedirs(path)
            made.append(path)
    return made


def remove_mount_points(paths: Iterable[str]) -> None:
    """The empty mount points a cluster made on the host, unless another cluster uses them."""
    if any(
        h.is_dir() and any(p.name.startswith(PREFIX_ROOT) for p in h.iterdir())
        for h in cgroup_mounts()[:1]
    ):
        return  # another lab cluster still runs
    for path in paths:
        with contextlib.suppress(OSError):
            os.rmdir(path)


# --- the cluster ---------------------------------------------------------------------------


@dataclass
class Cluster:
    """A control plane and len(topology.nodes) kubelet nodes on the lab's topology."""

    topology: Topology
    workdir: Path
    images: BuiltImages
    plane: ClusterControlPlane = field(init=False)
    nodes: list[ClusterNode] = field(init=False)
    made_mount_points: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        sockets = socket_dir(self.topology.run)
        self.plane = ClusterControlPlane(
            self.workdir / "controlplane", netns=self.cp_netns, sockets=sockets
        )
        self.nodes = [
            ClusterNode(node, self.workdir / "nodes" / node.name, self.topology.prefix, sockets)
            for node in self.topology.nodes
        ]

    @property
    def cp_netns(self) -> str:
        return f"{self.topology.prefix}cp"

    @property
    def kubeconfig(self) -> Path:
        return self.plane.kubeconfig

    def node(self, name: str) -> ClusterNode:
        return next(n for n in self.nodes if n.name == name)

    def start(self, log: Log = print, timeout: float = 120) -> Cluster:
        """Namespaces (unless the topology exists), control plane, nodes; returns once every
        Node is Ready. On failure, stops what it started and raises."""
        started = time.monotonic()
        for stale in ("controlplane", "nodes"):  # a cluster starts empty (etcd included)
            shutil.rmtree(self.workdir / stale, ignore_errors=True)
        self.plane.workdir.mkdir(parents=True)
        try:
            if not self.topology.created:
                self.topology.create()
            self._control_plane_namespace()
            self.made_mount_points = _make_mount_points()
            self.plane.start(timeout)
            log(
                f"      control plane up in {self.cp_netns} ({CP_ADDRESS}:{API_PORT}; "
                f"this host: {self.plane.url}) ({time.monotonic() - started:.1f}s)"
            )
            for node in self.nodes:
                node.prepare(self.plane, self.images["pause"], self.topology.nodes)
                node.start_holder()
                node.start_containerd()
            step = time.monotonic()
            with concurrent.futures.ThreadPoolExecutor(len(self.nodes)) as pool:
                archive = self.images.archive()
                list(pool.map(lambda n: n.import_images(archive), self.nodes))
            log(
                f"      {len(self.images.refs)} images imported into each node's containerd "
                f"({time.monotonic() - step:.1f}s)"
            )
            for node in self.nodes:
                node.start_kubelet()
                node.start_kube_proxy()
            self.wait_nodes_ready(timeout)
            log(f"      {len(self.nodes)} nodes Ready ({time.monotonic() - started:.1f}s in all)")
        except BaseException:
            self.stop()
            raise
        return self

    def _control_plane_namespace(self) -> None:
        """The control plane's namespace on the node LAN, with routes to every pod network."""
        ns, r = self.cp_netns, self.topology.router_ns
        if ns in netns.existing():
            return
        netns.add(ns)
        self.topology.created.append(ns)
        netns.veth(r, "to-cp", ns, "eth0")
        netns.enslave(r, "to-cp", "br0")
        netns.address(ns, "eth0", f"{CP_ADDRESS}/24")
        netns.ip("route", "add", "default", "via", self.topology.router_address, netns=ns)
        for node in self.topology.nodes:
            netns.ip("route", "add", pod_cidr(node), "via", node.address, netns=ns)

    def wait_nodes_ready(self, timeout: float = 120) -> None:
        def ready() -> bool:
            for node in self.nodes:
                for daemon in node.daemons():
                    if not daemon.running():
                        raise Fatal(f"{daemon.name} exited; log {daemon.log}:\n{daemon.tail()}")
            got = self.kubectl_json("get", "nodes")
            states = {
                item["metadata"]["name"]: {
                    c["type"]: c["status"] for c in item.get("status", {}).get("conditions", [])
                }.get("Ready")
                for item in got["items"]
            }
            return all(states.get(n.name) == "True" for n in self.nodes)

        wait_for(ready, timeout, "every Node Ready", interval=0.25)

    def tag_images(self, names: dict[str, str]) -> None:
        """Give images on every node a second name (new name -> existing reference), as
        `kind load` would: a manifest naming a registry image then runs without a pull."""
        for node in self.nodes:
            for new, existing in names.items():
                result = node.ctr("images", "tag", "--force", existing, new)
                if result.returncode != 0:
                    raise RuntimeError(
                        f"{node.name}: ctr images tag {existing} {new}: {result.stderr.strip()}"
                    )

    def kubectl(self, *args: str, timeout: float = 60, check: bool = True, stdin: str = "") -> str:
        """kubectl against this cluster (through the relay); its output. With `check`, a
        failure raises with what kubectl said; without, stderr is returned after stdout."""
        result = subprocess.run(
            [str(KUBECTL.binary()), f"--kubeconfig={self.kubeconfig}", *args],
            input=stdin or None,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)}:\n{result.stdout}{result.stderr}")
        return result.stdout if check else result.stdout + result.stderr

    def kubectl_json(self, *args: str) -> Any:
        return json.loads(self.kubectl(*args, "-o", "json"))

    def daemons(self) -> list[Daemon]:
        plane = [
            d
            for d in (
                *self.plane.relay,
                self.plane.etcd,
                self.plane.apiserver,
                self.plane.controller_manager,
                self.plane.scheduler,
            )
            if d
        ]
        return plane + [d for node in self.nodes for d in node.daemons()]

    def stop(self) -> None:
        """Stop every node (and every pod), then the control plane; remove the namespaces,
        cgroups and the mount points this cluster made."""
        errors = []
        for node in self.nodes:
            try:
                node.stop()
            except Exception as error:  # noqa: BLE001 - the rest must still be stopped
                errors.append(error)
        self.plane.stop()
        remove_leftovers(self.topology.run)
        self.topology.created.clear()
        remove_mount_points(self.made_mount_points)
        shutil.rmtree(self.workdir / "nodes", ignore_errors=True)
        if errors:
            raise errors[0]


def kill_daemon_groups(pids: Iterable[int]) -> None:
    for pid in pids:
        kill_group(pid, signal.SIGTERM)
