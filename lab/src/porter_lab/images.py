"""Container images of the real cluster, built here with podman: no image registry is reachable.

    base        localhost/porter-lab/debian:bookworm-<d>    debootstrap --variant=minbase,
                                                            slimmed, podman import
    golang      localhost/porter-lab/golang:go1.x-<d>       this host's Go toolchain on the
                                                            base (no registry for golang:1.26)
    controller  localhost/porter-lb-controller:0.1.0-<d>    containers/controller.Containerfile
    agent       localhost/porter-lb-agent:0.1.0-<d>         containers/agent.Containerfile
    test-app    localhost/porter-lab/test-app:<d>           lab/images/test-app
    pause       localhost/porter-lab/pause:v1.35.4-<d>      Kubernetes' pause.c, static

Every tag carries a digest of what the image is made of: its Containerfile, the files it copies
(the runtime's sources for porter-lb's images, with the same exclusions as .containerignore),
its base image and build arguments. A build whose tag exists is skipped, so a changed runtime
source gives a new tag (and a new image), an unchanged one costs nothing.

porter-lb's images build gobgpd in a stage of their own from tools/gobgp (as a user's build
does with docker.io/library/golang): here on the golang image above, with GOPROXY=off and this
host's Go module cache mounted read-only, where scripts/setup.sh has downloaded the pinned
GoBGP module. Each image is also
saved once as an archive in the cache (`$PORTER_LB_CACHE/images/`), which porter_lab.cluster
imports into every node's containerd.

podman runs with a containers.conf of the lab's own (runc, ulimits within this machine's hard
limits; see ../shared/FACTS.md) given through $CONTAINERS_CONF, so the host's configuration is
never changed, and builds with the host's network (no podman bridge, NAT or IP forwarding is
set up on this host). Builds that install from PyPI inside the image see the host's CA bundle
and pip settings through read-only build volumes (TLS-intercepting proxies), which never enter
a layer.

`python -m porter_lab.images` builds them all with progress (scripts/setup.sh runs it).
"""

from __future__ import annotations

import fnmatch
import functools
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from porter_lab.controlplane import KUBELET
from porter_lab.paths import REPO, cache_dir

Log = Callable[[str], None]

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
# What is removed from the debootstrapped root and kept out of later apt installs, as Debian's
# own -slim images do; apt keeps no package lists or archives in a layer.
SLIM_DPKG_EXCLUDES = (
    "path-exclude /usr/share/doc/*",
    "path-include /usr/share/doc/*/copyright",
    "path-exclude /usr/share/man/*",
    "path-exclude /usr/share/info/*",
    "path-exclude /usr/share/locale/*",
    "path-include /usr/share/locale/locale.alias",
)
BASE_RECIPE_VERSION = "2"  # bump when base_image() changes what it puts in the image

# Files a build context must never contribute (build outputs); .containerignore says the same.
EXCLUDED_NAMES = ("__pycache__", "*.egg-info", "*.pyc")
EXCLUDED_PATHS = ("runtime/build", "runtime/dist", "runtime/src/porter_lb/gobgp_api")


def podman_env() -> dict[str, str]:
    """The environment podman runs with: the lab's containers.conf."""
    conf = cache_dir() / "podman" / "containers.conf"
    text = (
        "# porter-lab's podman settings (porter_lab.images); the host's stay untouched.\n"
        "[containers]\n"
        # The hard nofile limit here is 20000, nproc must stay <= 32768 (FACTS.md).
        'default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]\n'
        "[engine]\n"
        # crun fails on this machine's hybrid cgroups; runc works.
        'runtime = "runc"\n'
    )
    if not conf.exists() or conf.read_text() != text:
        conf.parent.mkdir(parents=True, exist_ok=True)
        conf.write_text(text)
    return {**os.environ, "CONTAINERS_CONF": str(conf)}


def podman(*args: str, capture: bool = True, timeout: float = 600) -> str:
    if not shutil.which("podman"):
        raise RuntimeError("podman is not installed: run scripts/setup.sh (apt: podman)")
    result = subprocess.run(
        ["podman", *args],
        env=podman_env(),
        capture_output=capture,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args)} failed ({result.returncode}): {result.stderr}")
    return result.stdout or ""


def image_exists(ref: str) -> bool:
    return (
        subprocess.run(["podman", "image", "exists", ref], env=podman_env(), check=False).returncode
        == 0
    )


def _excluded(relative: str) -> bool:
    parts = relative.split("/")
    if any(fnmatch.fnmatch(part, pattern) for part in parts for pattern in EXCLUDED_NAMES):
        return True
    return any(relative == p or relative.startswith(p + "/") for p in EXCLUDED_PATHS)


def context_files(root: Path, inputs: Iterable[str]) -> Iterator[tuple[str, Path]]:
    """(path relative to `root`, path) of every file under `inputs`, sorted, minus build outputs.
    Symbolic links are followed: what is hashed is what a COPY would read."""
    for entry in sorted(inputs):
        path = root / entry
        if path.is_dir():
            for file in sorted(path.rglob("*")):
                relative = file.relative_to(root).as_posix()
                if file.is_file() and not _excluded(relative):
                    yield relative, file
        elif not _excluded(entry):
            yield entry, path


def digest(parts: Iterable[bytes]) -> str:
    hasher = hashlib.sha256()
    for part in parts:
        hasher.update(hashlib.sha256(part).digest())
    return hasher.hexdigest()[:12]


# --- the base image ------------------------------------------------------------------------


def base_ref(suite: str = SUITE) -> str:
    recipe = [suite.encode(), MIRROR.encode(), BASE_RECIPE_VERSION.encode()]
    recipe += [line.encode() for line in SLIM_DPKG_EXCLUDES]
    return f"localhost/porter-lab/debian:{suite}-{digest(recipe)}"


def base_image(log: Log = print, suite: str = SUITE) -> str:
    """The Debian base every lab image starts from: debootstrap once (the root's archive is
    cached), then `podman import`. `suite` other than bookworm: the execution environment's
    base (ansible-core 2.21 needs Python >= 3.12, which trixie has)."""
    ref = base_ref(suite)
    if image_exists(ref):
        log(f"  base {ref}: present")
        return ref
    archive = cache_dir() / "images" / f"{ref.rsplit(':', 1)[1]}-rootfs.tar"
    if not archive.exists():
        if not shutil.which("debootstrap"):
            raise RuntimeError("debootstrap is not installed: run scripts/setup.sh")
        started = time.monotonic()
        log(f"  base: debootstrap --variant=minbase {suite} (about a minute) ...")
        archive.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="porter-lab-rootfs-", dir="/var/tmp") as tmp:
            root = Path(tmp) / "root"
            result = subprocess.run(
                ["debootstrap", "--variant=minbase", suite, str(root), MIRROR],
                capture_output=True,
                text=True,
                check=False,
            )
            if result.returncode != 0:
                raise RuntimeError(f"debootstrap failed: {result.stdout[-2000:]}{result.stderr}")
            _slim(root, suite)
            partial = archive.with_suffix(".partial")
            subprocess.run(
                ["tar", "--numeric-owner", "-C", str(root), "-cf", str(partial), "."],
                check=True,
            )
            partial.rename(archive)
        log(f"  base: root file system made in {time.monotonic() - started:.0f}s")
    podman("import", "--change", 'CMD ["/bin/bash"]', str(archive), ref)
    log(f"  base {ref}: imported")
    return ref


def _slim(root: Path, suite: str) -> None:
    """Leave out what a container never needs (as Debian's -slim images), and point apt at
    the release, its updates and its security fixes."""
    (root / "etc/apt/sources.list").write_text(
        f"deb {MIRROR} {suite} main\n"
        f"deb {MIRROR} {suite}-updates main\n"
        f"deb {MIRROR.replace('/debian', '/debian-security')} {suite}-security main\n"
    )
    (root / "etc/dpkg/dpkg.cfg.d/porter-lab-slim").write_text("\n".join(SLIM_DPKG_EXCLUDES) + "\n")
    (root / "etc/apt/apt.conf.d/porter-lab-clean").write_text(
        'APT::Keep-Downloaded-Packages "false";\n'
        'DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb || true"; };\n'
    )
    for pattern in (
        "var/cache/apt/*.bin",
        "var/cache/apt/archives/*.deb",
        "var/lib/apt/lists/*_*",
        "usr/share/man/*",
        "usr/share/info/*",
        "usr/share/locale/*",
    ):
        for path in root.glob(pattern):
            if path.name == "locale.alias":
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
    for doc in (root / "usr/share/doc").glob("*"):
        if doc.is_dir() and not doc.is_symlink():
            for file in doc.rglob("*"):
                if file.is_file() and file.name != "copyright":
                    file.unlink()


# --- images built from Containerfiles ------------------------------------------------------


@dataclass(frozen=True)
class Image:
    """An image built with `podman build -f containerfile context`."""

    name: str
    repository: str
    containerfile: Path
    context: Path
    inputs: tuple[str, ...]  # what the Containerfile copies, relative to `context`
    tag_prefix: str = ""
    needs_base: bool = True
    # Prepares the context (the pause binary) before hashing; returns nothing.
    prepare: Callable[[], None] | None = field(default=None, compare=False)
    builds_gobgp: bool = False  # has the gobgp stage (GO_IMAGE, tools/gobgp)

    def ref(self, base: str) -> str:
        if self.prepare is not None:
            self.prepare()
        parts = [self.containerfile.read_bytes()]
        for relative, path in context_files(self.context, self.inputs):
            parts += [relative.encode(), path.read_bytes()]
        if self.needs_base:
            parts.append(base.encode())
        if self.builds_gobgp:
            parts.append(golang_image().ref(base).encode())
        return f"{self.repository}:{self.tag_prefix}{digest(parts)}"


def _runtime_version() -> str:
    text = (REPO / "runtime/pyproject.toml").read_text()
    match = re.search(r'^version = "([^"]+)"', text, re.MULTILINE)
    return match.group(1) if match else "0"


PAUSE_DIR_NAME = "pause-context"


def _pause_context() -> Path:
    return cache_dir() / "images" / PAUSE_DIR_NAME


def _prepare_pause() -> None:
    """Compile Kubernetes' pause.c (from the pinned module, downloaded by its Go build) as a
    static binary into the pause image's build context."""
    context = _pause_context()
    binary = context / "pause"
    source = _pause_source()
    stamp = context / "pause.source-sha256"
    want = hashlib.sha256(source.read_bytes()).hexdigest()
    if binary.exists() and stamp.exists() and stamp.read_text() == want:
        return
    context.mkdir(parents=True, exist_ok=True)
    if not shutil.which("gcc"):
        raise RuntimeError("gcc is needed to build the pause image")
    subprocess.run(
        [
            "gcc",
            "-Os",
            "-static",
            "-Wall",
            f"-DVERSION={KUBELET.version()}",
            "-o",
            str(binary),
            str(source),
        ],
        check=True,
    )
    subprocess.run(["strip", str(binary)], check=True)
    stamp.write_text(want)


def _pause_source() -> Path:
    env = {**os.environ, "GOFLAGS": "-mod=mod"}
    modcache = subprocess.run(
        ["go", "env", "GOMODCACHE"], capture_output=True, text=True, check=True, env=env
    ).stdout.strip()
    source = Path(modcache) / f"k8s.io/kubernetes@{KUBELET.version()}/build/pause/linux/pause.c"
    if not source.exists():
        subprocess.run(
            ["go", "mod", "download", f"k8s.io/kubernetes@{KUBELET.version()}"],
            cwd=KUBELET.module_dir,
            env={**env, "GOSUMDB": "off"},
            check=True,
        )
    return source


@functools.cache
def golang_image() -> Image:
    """This host's Go toolchain (its GOROOT as the build context) on the base image: the gobgp
    stage of porter-lb's images builds with it (a user's build takes docker.io/library/golang)."""
    if not shutil.which("go"):
        raise RuntimeError("the Go toolchain is needed to build gobgpd: `go` not on PATH")
    root = Path(
        subprocess.run(
            ["go", "env", "GOROOT"], capture_output=True, text=True, check=True
        ).stdout.strip()
    )
    version = (root / "VERSION").read_text().split()[0]
    return Image(
        "golang",
        "localhost/porter-lab/golang",
        REPO / "lab/images/golang/Containerfile",
        root,
        ("VERSION",),
        tag_prefix=f"{version}-",
    )


def _gobgp_build_arguments(base: str, log: Log) -> list[str]:
    """The gobgp stage's arguments: the golang image (built if missing), no proxy, this host's
    module cache read-only (the pinned GoBGP module downloaded into it first)."""
    go_image = build(golang_image(), base, log)
    env = {**os.environ, "GOSUMDB": "off", "GOFLAGS": "-mod=readonly"}
    subprocess.run(["go", "mod", "download"], cwd=REPO / "tools/gobgp", env=env, check=True)
    modcache = subprocess.run(
        ["go", "env", "GOMODCACHE"], capture_output=True, text=True, check=True, env=env
    ).stdout.strip()
    return [
        "--build-arg",
        f"GO_IMAGE={go_image}",
        "--build-arg",
        "GOPROXY=off",
        "--volume",
        f"{modcache}:/go/pkg/mod:ro",
    ]


RUNTIME_INPUTS = (
    "containers/constraints.txt",
    "runtime",
    "ansible_collections/porter/lb/plugins/module_utils/addresses.py",
    "tools/gobgp",
)
CONTROLLER = Image(
    "controller",
    "localhost/porter-lb-controller",
    REPO / "containers/controller.Containerfile",
    REPO,
    RUNTIME_INPUTS,
    tag_prefix=f"{_runtime_version()}-",
    builds_gobgp=True,
)
AGENT = Image(
    "agent",
    "localhost/porter-lb-agent",
    REPO / "containers/agent.Containerfile",
    REPO,
    RUNTIME_INPUTS,
    tag_prefix=f"{_runtime_version()}-",
    builds_gobgp=True,
)
TEST_APP = Image(
    "test-app",
    "localhost/porter-lab/test-app",
    REPO / "lab/images/test-app/Containerfile",
    REPO / "lab/images/test-app",
    ("server.py",),
)
PAUSE = Image(
    "pause",
    "localhost/porter-lab/pause",
    REPO / "lab/images/pause/Containerfile",
    _pause_context(),
    ("pause",),
    tag_prefix=f"{KUBELET.version()}-",
    needs_base=False,
    prepare=_prepare_pause,
)
IMAGES = (PAUSE, CONTROLLER, AGENT, TEST_APP)
# Not for the cluster's nodes: the systemd hosts of the Molecule scenarios
# (extensions/molecule/) and of the execution environment's router (porter_lab.systemdhost).
MOLECULE_HOST = Image(
    "molecule-host",
    "localhost/porter-lab/molecule-host",
    REPO / "lab/images/molecule-host/Containerfile",
    REPO / "lab/images/molecule-host",
    (),
)
# The same with the porter-lb runtime in /opt/porter-lb (extensions/molecule/host_runtime_systemd).
RUNTIME_HOST = Image(
    "runtime-host",
    "localhost/porter-lab/runtime-host",
    REPO / "lab/images/runtime-host/Containerfile",
    REPO,
    RUNTIME_INPUTS,
    tag_prefix=f"{_runtime_version()}-",
    builds_gobgp=True,
)
HOST_IMAGES = (MOLECULE_HOST, RUNTIME_HOST)


def build_volumes() -> list[str]:
    """Read-only build volumes: the host's CA bundle and a pip.conf naming it, so pip inside a
    build trusts what the host trusts (nothing of it is kept in the image)."""
    bundle = Path("/etc/ssl/certs/ca-certificates.crt")
    if not bundle.exists():
        return []
    pip_conf = cache_dir() / "podman" / "pip.conf"
    pip_conf.parent.mkdir(parents=True, exist_ok=True)
    # Under /run, which a build never commits; not over the image's own bundle, which its
    # ca-certificates package rewrites.
    inside = "/run/porter-lab-build/ca-certificates.crt"
    pip_conf.write_text(f"[global]\ncert = {inside}\n")
    return [
        "--volume",
        f"{bundle}:{inside}:ro",
        "--volume",
        f"{pip_conf}:/etc/pip.conf:ro",
    ]


def build(image: Image, base: str, log: Log = print) -> str:
    """Build `image` unless its tag exists; return its reference."""
    ref = image.ref(base)
    if image_exists(ref):
        log(f"  {image.name} {ref}: present")
        return ref
    # --network=host: the build's RUN steps (apt, pip) use this host's network as setup.sh's
    # own apt does; podman's default bridge would add a link and NAT rules to this host and
    # turn its IP forwarding on.
    argv = ["podman", "build", "--layers", "--pull=never", "--network=host"]
    argv += ["-f", str(image.containerfile)]
    argv += ["--tag", ref]
    if image.needs_base:
        argv += ["--build-arg", f"BASE_IMAGE={base}", *build_volumes()]
    if image.builds_gobgp:
        argv += _gobgp_build_arguments(base, log)
    argv.append(str(image.context))
    log_path = cache_dir() / "images" / f"build-{image.name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    log(f"  {image.name}: podman build (log {log_path}) ...")
    with log_path.open("w") as out:
        process = subprocess.Popen(
            argv,
            env=podman_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert process.stdout is not None
        for line in process.stdout:
            out.write(line)
            if line.startswith("STEP "):
                step = line.strip()
                log(f"    {step[:96]}{'...' if len(step) > 96 else ''}")
        code = process.wait()
    if code != 0:
        tail = "".join(log_path.read_text().splitlines(keepends=True)[-25:])
        raise RuntimeError(f"podman build of {image.name} failed (exit {code}):\n{tail}")
    log(f"  {image.name} {ref}: built in {time.monotonic() - started:.0f}s")
    return ref


def archive(refs: Iterable[str]) -> Path:
    """The images as one docker-archive in the cache (what every node's containerd imports):
    layers the images share (the base, the runtime's) are in it once."""
    names = sorted(refs)
    path = cache_dir() / "images" / f"images-{digest(n.encode() for n in names)}.tar"
    if not path.exists():
        partial = path.with_suffix(".partial")
        partial.unlink(missing_ok=True)
        podman(
            "save",
            "--format",
            "docker-archive",
            "--multi-image-archive",
            "-o",
            str(partial),
            *names,
        )
        partial.rename(path)
    return path


@dataclass(frozen=True)
class BuiltImages:
    """References of the built images, by name."""

    refs: dict[str, str]

    def __getitem__(self, name: str) -> str:
        return self.refs[name]

    def archive(self) -> Path:
        return archive(self.refs.values())


def build_all(log: Log = print) -> BuiltImages:
    base = base_image(log)
    built = BuiltImages({image.name: build(image, base, log) for image in IMAGES})
    keep = built.archive()
    for path in (cache_dir() / "images").glob("*.tar"):  # archives of images no longer current
        if path != keep and not path.name.endswith("-rootfs.tar"):
            path.unlink()
    return built


def current(log: Log = print) -> BuiltImages:
    """The images for the checkout as it is now; builds what is missing (cached otherwise)."""
    return build_all(log)


def host_image(name: str) -> str:
    """The reference of a host image (`python -m porter_lab.images --ref NAME`), built first if
    missing; progress goes to stderr."""
    (image,) = [image for image in HOST_IMAGES if image.name == name]
    return build(image, base_image(log=_to_stderr), log=_to_stderr)


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def main() -> int:
    """`python -m porter_lab.images`: build every image with progress, print the references.
    `--ref NAME`: print only the reference of the host image NAME (building it if missing)."""
    if sys.argv[1:2] == ["--ref"] and len(sys.argv) == 3:
        names = [image.name for image in HOST_IMAGES]
        if sys.argv[2] not in names:
            print(
                f"--ref: no host image {sys.argv[2]!r} (there are: {', '.join(names)})",
                file=sys.stderr,
            )
            return 2
        print(host_image(sys.argv[2]))
        return 0
    started = time.monotonic()
    print("Container images (first time: several minutes) ...", flush=True)
    built = build_all(log=lambda line: print(line, flush=True))
    # The hosts' images (Molecule) only here, in the setup: a cluster's start never needs them.
    for image in HOST_IMAGES:
        build(image, base_image(log=lambda line: None), log=lambda line: print(line, flush=True))
    for name, ref in built.refs.items():
        print(f"  {name:<10} {ref}", flush=True)
    print(f"  images ready in {time.monotonic() - started:.0f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
