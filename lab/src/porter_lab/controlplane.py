"""A real Kubernetes control plane for the bed: etcd and kube-apiserver as processes.

Both are built from the Go modules pinned in tools/controlplane/<name>/go.mod (+ go.sum) with
the Go toolchain on the machine, into a cache outside the checkout keyed by version and go.sum,
and reused when present. They are started as controller-runtime's envtest does: generated
serving certificates, service-account keys, and an admin kubeconfig (client certificate in
group system:masters). No kubelet or controller-manager runs: tests create Nodes, Services and
EndpointSlices themselves.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from porter_lab.paths import REPO, cache_dir
from porter_lab.processes import Daemon
from porter_lab.waiting import wait_for


@dataclass(frozen=True)
class Component:
    """A Go program built from a module pinned under tools/ (go.mod + go.sum)."""

    name: str  # binary name
    package: str  # Go package of the main program
    module: str = ""  # directory under tools/controlplane/ holding go.mod (default: `name`)
    # -X flags stamping the version the program reports (Kubernetes' own build does this; without
    # it kube-apiserver says v0.0.0-master and kubectl/helm refuse to talk to it).
    version_variables: tuple[str, ...] = ()

    @property
    def module_dir(self) -> Path:
        return REPO / "tools" / "controlplane" / (self.module or self.name)

    def version(self) -> str:
        """The pinned version of the component's module, read from its go.mod."""
        module = self.package.split("/cmd/")[0]
        text = (self.module_dir / "go.mod").read_text()
        match = re.search(rf"^\s*(?:require\s+)?{re.escape(module)}\s+(v\S+)", text, re.MULTILINE)
        if not match:
            raise RuntimeError(f"{self.module_dir}/go.mod: no version pinned for {module}")
        return match.group(1)

    def ldflags(self) -> str:
        return " ".join(f"-X {variable}={self.version()}" for variable in self.version_variables)

    def binary(self) -> Path:
        """Where the build lands: keyed by version, go.sum and link flags, so any change
        rebuilds."""
        recipe = (self.module_dir / "go.sum").read_bytes() + self.ldflags().encode()
        digest = hashlib.sha256(recipe).hexdigest()[:12]
        return cache_dir() / "bin" / f"{self.name}-{self.version()}-{digest}" / self.name


@dataclass(frozen=True)
class Tool(Component):
    """A Go program pinned in tools/<module or name>/ (the control plane's are in
    tools/controlplane/)."""

    @property
    def module_dir(self) -> Path:
        return REPO / "tools" / (self.module or self.name)


KUBERNETES_VERSION_VARIABLES = ("k8s.io/component-base/version.gitVersion",)


def kubernetes_component(name: str) -> Component:
    """One program of k8s.io/kubernetes, from tools/controlplane/kubernetes (all share one
    go.mod, so every component is of the same release)."""
    return Component(
        name, f"k8s.io/kubernetes/cmd/{name}", "kubernetes", KUBERNETES_VERSION_VARIABLES
    )


ETCD = Component("etcd", "go.etcd.io/etcd/server/v3")
KUBE_APISERVER = kubernetes_component("kube-apiserver")
COMPONENTS = (ETCD, KUBE_APISERVER)
# The rest of a real cluster (porter_lab.cluster): node agents, controllers and kubectl.
KUBELET = kubernetes_component("kubelet")
KUBE_CONTROLLER_MANAGER = kubernetes_component("kube-controller-manager")
KUBE_SCHEDULER = kubernetes_component("kube-scheduler")
KUBE_PROXY = kubernetes_component("kube-proxy")
KUBECTL = kubernetes_component("kubectl")
CLUSTER_COMPONENTS = (KUBELET, KUBE_CONTROLLER_MANAGER, KUBE_SCHEDULER, KUBE_PROXY, KUBECTL)


def build(component: Component, log: Callable[[str], None] = print) -> Path:
    """Build `component` into the cache unless it is there; print progress while Go works."""
    target = component.binary()
    if target.exists():
        log(f"  {component.name} {component.version()}: cached at {target}")
        return target
    go = shutil.which("go")
    if not go:
        raise RuntimeError(
            "the Go toolchain is needed to build the control plane: `go` not on PATH"
        )
    env = {
        **os.environ,
        # go.sum is committed and complete: it is the integrity pin, so the checksum database is
        # not needed (and may be out of reach); -mod=readonly refuses any drift from it.
        "GOSUMDB": "off",
        "GOFLAGS": "-mod=readonly -trimpath -buildvcs=false",
        "CGO_ENABLED": "0",
    }
    cwd = component.module_dir
    log(f"  {component.name} {component.version()}: downloading modules ...")
    subprocess.run([go, "mod", "download"], cwd=cwd, env=env, check=True)
    listing = subprocess.run(
        [go, "list", "-deps", component.package],
        cwd=cwd,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    total = len(listing.stdout.split())
    partial = target.with_name(target.name + ".partial")
    partial.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    argv = [go, "build", "-v", "-o", str(partial)]
    if component.ldflags():
        argv += ["-ldflags", component.ldflags()]
    process = subprocess.Popen(
        [*argv, component.package],
        cwd=cwd,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    done = 0
    errors: list[str] = []
    last_report = 0.0

    assert process.stderr is not None
    for line in process.stderr:
        if re.match(r"^[\w.\-]+(/[\w.\-~+]+)*$", line.strip()):
            done += 1
        else:
            errors.append(line.rstrip())
        now = time.monotonic()
        if now - last_report >= 10:
            last_report = now
            log(f"  {component.name}: compiled {done} of ~{total} packages ({now - started:.0f}s)")
    if process.wait() != 0:
        raise RuntimeError(f"go build {component.package} failed:\n" + "\n".join(errors[-30:]))
    partial.rename(target)
    log(f"  {component.name}: built in {time.monotonic() - started:.0f}s -> {target}")
    return target


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _write_pem(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    path.chmod(0o600)
    return path


def _key_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _certificate(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool = False,
    server_names: tuple[str, ...] = (),
    client: bool = False,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        # Key identifiers, as kubeadm's certificates have them: Python 3.13's default TLS
        # context (VERIFY_X509_STRICT) refuses a chain without the Authority Key Identifier.
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), False
        )
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), True
        )
    else:
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH]
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    if server_names:
        alt: list[x509.GeneralName] = []
        for name in server_names:
            try:
                alt.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                alt.append(x509.DNSName(name))
        builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


@dataclass
class ControlPlane:
    """etcd + kube-apiserver on loopback, with all their files under `workdir`."""

    workdir: Path
    etcd: Daemon | None = None
    apiserver: Daemon | None = None
    port: int = 0
    etcd_url: str = ""
    # Where etcd and kube-apiserver run: this host's loopback (the bed), or a network namespace
    # of their own (porter_lab.cluster.ClusterControlPlane).
    netns: str | None = None
    kubeconfig: Path = field(init=False)
    _context: ssl.SSLContext | None = field(default=None, init=False, repr=False)
    _ca: tuple[x509.Name, ec.EllipticCurvePrivateKey] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.kubeconfig = self.workdir / "kubeconfig"

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def _pki(self, server_names: tuple[str, ...] = ()) -> dict[str, Path]:
        pki = self.workdir / "pki"
        pki.mkdir(exist_ok=True)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "porter-lab-ca")])
        ca = _certificate(ca_name, ca_key, ca_name, ca_key, ca=True)
        self._ca = (ca_name, ca_key)
        serving_key = ec.generate_private_key(ec.SECP256R1())
        serving = _certificate(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]),
            serving_key,
            ca_name,
            ca_key,
            server_names=(
                "127.0.0.1",
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "10.96.0.1",
                *server_names,
            ),
        )
        sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = serialization.Encoding.PEM
        files = {
            "ca": _write_pem(pki / "ca.crt", ca.public_bytes(pem)),
            "ca_key": _write_pem(pki / "ca.key", _key_pem(ca_key)),
            "serving_cert": _write_pem(pki / "apiserver.crt", serving.public_bytes(pem)),
            "serving_key": _write_pem(pki / "apiserver.key", _key_pem(serving_key)),
            "sa_key": _write_pem(pki / "sa.key", _key_pem(sa_key)),
            "sa_pub": _write_pem(
                pki / "sa.pub",
                sa_key.public_key().public_bytes(
                    pem, serialization.PublicFormat.SubjectPublicKeyInfo
                ),
            ),
        }
        files["admin_cert"], files["admin_key"] = self.issue_client(
            "admin", "porter-lab-admin", ("system:masters",)
        )
        return files

    def issue_client(
        self, file_name: str, common_name: str, organizations: tuple[str, ...] = ()
    ) -> tuple[Path, Path]:
        """A client certificate of the lab's CA (user `common_name`, groups `organizations`),
        written as pki/<file_name>.crt and .key; returns their paths."""
        ca_name, ca_key = self._ca
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name(
            [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org) for org in organizations]
            + [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
        )
        certificate = _certificate(subject, key, ca_name, ca_key, client=True)
        pki = self.workdir / "pki"
        pem = serialization.Encoding.PEM
        return (
            _write_pem(pki / f"{file_name}.crt", certificate.public_bytes(pem)),
            _write_pem(pki / f"{file_name}.key", _key_pem(key)),
        )

    def start(self, timeout: float = 120) -> ControlPlane:
        missing = [c for c in COMPONENTS if not c.binary().exists()]
        if missing:
            names = ", ".join(f"{c.name} ({c.binary()})" for c in missing)
            raise RuntimeError(f"control plane not built: {names}; run scripts/setup.sh")
        pki = self._pki(self.server_names())
        self._start_etcd()
        self.apiserver = Daemon(
            "kube-apiserver",
            [str(KUBE_APISERVER.binary()), *self.apiserver_flags(pki)],
            self.workdir / "kube-apiserver.log",
            netns=self.netns,
        ).start()
        self._write_kubeconfig(pki)
        self._context = ssl.create_default_context(cafile=str(pki["ca"]))
        self._context.load_cert_chain(str(pki["admin_cert"]), str(pki["admin_key"]))
        self.wait_ready(timeout)
        return self

    def server_names(self) -> tuple[str, ...]:
        """Names and addresses the serving certificate carries beyond the defaults."""
        return ()

    def _start_etcd(self) -> None:
        if self.netns is None:
            etcd_port, peer_port, self.port = free_port(), free_port(), free_port()
        else:  # a namespace of its own: the usual ports are free
            etcd_port, peer_port = 2379, 2380
        self.etcd_url = f"http://127.0.0.1:{etcd_port}"
        self.etcd = Daemon(
            "etcd",
            [
                str(ETCD.binary()),
                "--name",
                "porter-lab",
                "--data-dir",
                str(self.workdir / "etcd"),
                "--listen-client-urls",
                f"http://127.0.0.1:{etcd_port}",
                "--advertise-client-urls",
                f"http://127.0.0.1:{etcd_port}",
                "--listen-peer-urls",
                f"http://127.0.0.1:{peer_port}",
                "--initial-advertise-peer-urls",
                f"http://127.0.0.1:{peer_port}",
                "--initial-cluster",
                f"porter-lab=http://127.0.0.1:{peer_port}",
                "--unsafe-no-fsync",
                "--log-level",
                "warn",
            ],
            self.workdir / "etcd.log",
            netns=self.netns,
        ).start()

    def apiserver_flags(self, pki: dict[str, Path]) -> list[str]:
        """kube-apiserver's flags for the bed: loopback, RBAC, no controller-manager."""
        return [
            f"--etcd-servers={self.etcd_url}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={self.port}",
            f"--cert-dir={self.workdir / 'pki'}",
            f"--tls-cert-file={pki['serving_cert']}",
            f"--tls-private-key-file={pki['serving_key']}",
            f"--client-ca-file={pki['ca']}",
            f"--service-account-key-file={pki['sa_pub']}",
            f"--service-account-signing-key-file={pki['sa_key']}",
            f"--service-account-issuer=https://127.0.0.1:{self.port}",
            # Dual-stack: a Service may ask for IPv6 or both families (spec.ipFamilies); IPv4
            # first, so one that asks for nothing stays IPv4-only.
            "--service-cluster-ip-range=10.96.0.0/16,fd00:10:96::/112",
            # Room for the health-check NodePorts of 10,000 Local Services (benchmarks).
            "--service-node-port-range=20000-60000",
            "--authorization-mode=RBAC",
            "--allow-privileged=true",
            # As envtest: no controller-manager mints tokens for pods here.
            "--disable-admission-plugins=ServiceAccount",
            # ConfigMaps bypass the watch cache, so a test can make a resourceVersion expire
            # (compact_etcd) and see 410 Gone; porter-lb itself never watches ConfigMaps.
            "--watch-cache-sizes=configmaps#0",
            "--v=1",
        ]

    def wait_ready(self, timeout: float = 120) -> None:
        def ready() -> bool:
            assert self.etcd is not None and self.apiserver is not None
            self.etcd.check_running()
            self.apiserver.check_running()
            with urllib.request.urlopen(
                f"{self.url}/readyz", context=self._context, timeout=2
            ) as answer:
                return bool(answer.status == 200)

        wait_for(ready, timeout, "kube-apiserver /readyz", interval=0.1)

    def stop_apiserver(self) -> None:
        """Stop kube-apiserver alone (SIGTERM); etcd and everything stored stay."""
        assert self.apiserver is not None
        self.apiserver.stop(timeout=30)

    def start_apiserver(self, timeout: float = 120) -> None:
        """Start kube-apiserver again, as it was (same port, same certificates), and wait
        until it is ready."""
        assert self.apiserver is not None
        self.apiserver.start()
        self.wait_ready(timeout)

    def compact_etcd(self) -> int:
        """Compact etcd's history up to its current revision (as the API server does every five
        minutes); watches from older resourceVersions then fail with 410 Gone. Returns it."""
        import json

        def post(endpoint: str, body: dict[str, object]) -> dict[str, Any]:
            request = urllib.request.Request(
                f"{self.etcd_url}/v3/kv/{endpoint}",
                data=json.dumps(body).encode(),
                headers={"Content-Type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=10) as response:
                return dict(json.loads(response.read()))

        revision = int(post("range", {"key": "Lw=="})["header"]["revision"])  # key "/"
        post("compaction", {"revision": str(revision), "physical": True})
        return revision

    def _write_kubeconfig(self, pki: dict[str, Path]) -> None:
        write_kubeconfig(self.kubeconfig, self.url, pki["ca"], pki["admin_cert"], pki["admin_key"])

    def stop(self) -> None:
        for daemon in (self.apiserver, self.etcd):
            if daemon is not None:
                daemon.stop(timeout=10)


def write_kubeconfig(
    path: Path, server: str, ca: Path, cert: Path, key: Path, *, user: str = "porter-lab-admin"
) -> Path:
    """A kubeconfig for `server` with a client certificate, every file inlined."""
    import base64

    def b64(file: Path) -> str:
        return base64.b64encode(file.read_bytes()).decode()

    path.write_text(
        "apiVersion: v1\nkind: Config\n"
        "clusters:\n- name: porter-lab\n  cluster:\n"
        f"    server: {server}\n    certificate-authority-data: {b64(ca)}\n"
        f"users:\n- name: {user}\n  user:\n"
        f"    client-certificate-data: {b64(cert)}\n"
        f"    client-key-data: {b64(key)}\n"
        "contexts:\n- name: porter-lab\n"
        f"  context: {{cluster: porter-lab, user: {user}}}\n"
        "current-context: porter-lab\n"
    )
    path.chmod(0o600)
    return path


def serve(netns: str, workdir: Path) -> int:
    """Run a ControlPlane inside the network namespace `netns` until SIGTERM or SIGINT.

    The process enters the namespace first, so etcd and kube-apiserver listen on its
    loopback, where only what joins the namespace (a Molecule host's container) reaches them.
    Writes, in `workdir`: `kubeconfig` (the admin's, server on that loopback), `kubectl` (a
    script running kubectl in the namespace with it) and, once the API server is ready,
    `ready`. For the Molecule scenario of porter.lb.host_runtime (extensions/molecule/)."""
    import signal

    with open(f"/run/netns/{netns}", "rb") as handle:
        os.setns(handle.fileno(), os.CLONE_NEWNET)
    stop = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    plane = ControlPlane(workdir)
    try:
        plane.start()
        kubectl = workdir / "kubectl"
        kubectl.write_text(
            "#!/bin/sh\n"
            f'exec ip netns exec {netns} {KUBECTL.binary()} --kubeconfig {plane.kubeconfig} "$@"\n'
        )
        kubectl.chmod(0o755)
        (workdir / "ready").write_text(plane.url + "\n")
        print(f"control plane ready at {plane.url} in netns {netns}", flush=True)
        # blocked only now, so etcd and kube-apiserver do not inherit the mask
        signals = {signal.SIGTERM, signal.SIGINT}
        signal.pthread_sigmask(signal.SIG_BLOCK, signals)
        if not stop:
            signal.sigwait(signals)
    finally:
        (workdir / "ready").unlink(missing_ok=True)
        plane.stop()
    return 0


def main() -> int:
    """`python -m porter_lab.controlplane`: build every component with progress.
    `python -m porter_lab.controlplane serve NETNS DIR`: see `serve`."""
    if sys.argv[1:2] == ["serve"]:
        if len(sys.argv) != 4:
            print("usage: python -m porter_lab.controlplane serve NETNS DIR", file=sys.stderr)
            return 2
        return serve(sys.argv[2], Path(sys.argv[3]))
    print("Building Kubernetes (first time: several minutes) ...", flush=True)
    for component in (*COMPONENTS, *CLUSTER_COMPONENTS):
        build(component, log=lambda line: print(line, flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
