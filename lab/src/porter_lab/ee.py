"""The AWX execution environment of docs/awx, built here and run the way AWX runs a job.

Build (`python -m porter_lab.ee build`): the collection tarball (`ansible-galaxy collection
build`) and the runtime wheel (`pip wheel ./runtime`) into a scratch dist/, then
`ansible-builder build` with podman on a base made here (lab/images/ee-base: a debootstrapped
Debian trixie, whose Python 3.13 ansible-core 2.21 needs; no image registry is reachable).
The definition is docs/awx/execution-environment.yml with only what a site without a registry
and without Galaxy must change (`lab_definition`): the base image, its package manager and
Python, and kubernetes.core, ansible.netcommon and ansible.utils from the copies setup.sh took
out of PyPI's `ansible` wheel instead of Galaxy. The image is tagged by a digest of everything
it is made from, so an unchanged checkout builds nothing.

Run (`run_job`): `ansible-runner run` inside the image, as AWX's job does: a private data dir
with the project, the inventory, extra vars (survey answers), the environment (the Kubernetes
credential as `K8S_AUTH_*`), an SSH key (the Machine credential) and `--check`/`--diff`, the
container joined to a network namespace of the lab. The job's events give the result.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from porter_lab import images
from porter_lab.paths import REPO, cache_dir

COLLECTION = REPO / "ansible_collections/porter/lb"
AWX = REPO / "docs/awx"
BIN = Path(sys.executable).parent
EE_SUITE = "trixie"
EE_BASE = images.Image(
    "ee-base",
    "localhost/porter-lab/ee-base",
    REPO / "lab/images/ee-base/Containerfile",
    REPO / "lab/images/ee-base",
    ("porter-pkgmgr",),
)
# The collections porter.lb depends on, as scripts/setup.sh linked them into the checkout.
DEPENDENCIES = ("kubernetes/core", "ansible/netcommon", "ansible/utils")
REPOSITORY = "localhost/porter-lb-ee"
RUNNER_UID = 1000  # ansible-builder's final USER


def collection_version() -> str:
    version = yaml.safe_load((COLLECTION / "galaxy.yml").read_text())["version"]
    return str(version)


def _sources() -> list[str]:
    """Every file the image is made from, tracked or not, minus what git ignores (Molecule's
    symlink farm, test outputs, build outputs)."""
    done = subprocess.run(
        [
            "git",
            "-C",
            str(REPO),
            "ls-files",
            "--cached",
            "--others",
            "--exclude-standard",
            "--",
            "ansible_collections/porter/lb",
            "runtime",
            "docs/awx",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return sorted(line for line in done.stdout.splitlines() if (REPO / line).is_file())


def image_ref(base: str) -> str:
    parts = [base.encode(), Path(__file__).read_bytes()]
    for relative in _sources():
        parts += [relative.encode(), (REPO / relative).read_bytes()]
    for name in DEPENDENCIES:
        manifest = REPO / "ansible_collections" / name / "MANIFEST.json"
        parts.append(manifest.read_bytes())
    return f"{REPOSITORY}:{collection_version()}-{images.digest(parts)}"


def lab_definition(base: str, tags: list[str]) -> dict[str, Any]:
    """docs/awx/execution-environment.yml with the lab's base, package manager, Python (and its
    pip) and offline collections; everything else as users get it."""
    definition: dict[str, Any] = yaml.safe_load((AWX / "execution-environment.yml").read_text())
    definition["images"]["base_image"]["name"] = base
    definition["dependencies"]["python_interpreter"] = {
        "package_system": "python3",
        "python_path": "/usr/bin/python3",
    }
    definition["dependencies"]["galaxy"] = "requirements-lab.yml"
    # docs/awx's ../../dist is dist/ here; the dependency collections come beside it.
    definition["additional_build_files"] = [
        {"src": "dist", "dest": "porter-lb"},
        {"src": "collections", "dest": "collections"},
    ]
    definition["options"]["package_manager_path"] = "/usr/local/bin/porter-pkgmgr"
    # Debian's Python refuses ensurepip; the base has Debian's pip instead.
    definition["options"]["skip_pip_install"] = True
    definition["options"]["tags"] = tags
    definition["build_arg_defaults"] = {"ANSIBLE_GALAXY_CLI_COLLECTION_OPTS": "--offline"}
    return definition


def lab_requirements() -> dict[str, Any]:
    """docs/awx/requirements.yml with the dependency collections as directories (no Galaxy)."""
    requirements: dict[str, Any] = yaml.safe_load((AWX / "requirements.yml").read_text())
    collections = [c for c in requirements["collections"] if c.get("type") == "file"]
    for name in DEPENDENCIES:
        collections.append({"name": f"/build/collections/{name}", "type": "dir"})
    return {"collections": collections}


def _run(argv: list[str], log_path: Path, env: dict[str, str] | None = None) -> None:
    with log_path.open("a") as out:
        out.write(f"$ {' '.join(argv)}\n")
        out.flush()
        done = subprocess.run(
            argv, stdout=out, stderr=subprocess.STDOUT, env=env, check=False, timeout=1800
        )
    if done.returncode != 0:
        tail = "".join(log_path.read_text().splitlines(keepends=True)[-30:])
        raise RuntimeError(f"{argv[0]} failed (exit {done.returncode}):\n{tail}")


def build(log: images.Log = print) -> str:
    """The execution environment for the checkout as it is; built if missing. Returns its
    reference."""
    base = images.build(EE_BASE, images.base_image(log, suite=EE_SUITE), log)
    ref = image_ref(base)
    if images.image_exists(ref):
        log(f"  execution environment {ref}: present")
        return ref
    started = time.monotonic()
    log_path = cache_dir() / "images" / "build-ee.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.write_text("")
    log(f"  execution environment: ansible-builder build (log {log_path}) ...")
    with tempfile.TemporaryDirectory(prefix="porter-lab-ee-", dir=cache_dir()) as tmp:
        work = Path(tmp)
        dist = work / "dist"
        galaxy = [str(BIN / "ansible-galaxy"), "collection", "build", "--output-path", str(dist)]
        _run([*galaxy, str(COLLECTION)], log_path)
        # No build isolation: the stubs' grpcio-tools pin is in the virtualenv already.
        wheel = [str(BIN / "python"), "-m", "pip", "wheel", "--quiet", "--no-deps"]
        _run(
            [*wheel, "--no-build-isolation", "--wheel-dir", str(dist), str(REPO / "runtime")],
            log_path,
        )
        for name in DEPENDENCIES:
            shutil.copytree(
                (REPO / "ansible_collections" / name).resolve(), work / "collections" / name
            )
        version = collection_version()
        definition = lab_definition(base, [ref, f"{REPOSITORY}:{version}"])
        (work / "execution-environment.yml").write_text(yaml.safe_dump(definition))
        (work / "requirements-lab.yml").write_text(yaml.safe_dump(lab_requirements()))
        shutil.copy(AWX / definition["dependencies"]["python"], work)
        extra = " ".join(["--network=host", "--pull=never", *images.build_volumes()])
        builder = [str(BIN / "ansible-builder"), "build", "--container-runtime", "podman"]
        builder += ["--file", str(work / "execution-environment.yml")]
        builder += ["--context", str(work / "context"), "--verbosity", "2"]
        _run([*builder, "--extra-build-cli-args", extra], log_path, env=images.podman_env())
    size = images.podman("image", "inspect", "--format", "{{.Size}}", ref).strip()
    for line in images.podman("images", "--format", "{{.Repository}}:{{.Tag}}", REPOSITORY).split():
        if line.startswith(f"{REPOSITORY}:{version}-") and line != ref:  # an older checkout's
            # best effort: an image a job still runs stays until the next build
            subprocess.run(
                ["podman", "rmi", line],
                env=images.podman_env(),
                capture_output=True,
                timeout=120,
                check=False,
            )
    log(
        f"  execution environment {ref}: built in {time.monotonic() - started:.0f}s, "
        f"{int(size) / 1e6:.0f} MB"
    )
    return ref


# --- a job, as AWX runs it -----------------------------------------------------------------


@dataclass(frozen=True)
class JobResult:
    """What an ansible-runner job inside the execution environment ended with."""

    status: str  # successful, failed, ...
    stdout: str
    # playbook_on_stats: host -> count, for ok, changed, failures, ...
    stats: dict[str, dict[str, int]]

    def changed(self) -> int:
        return sum(self.stats.get("changed", {}).values())

    def failed(self) -> int:
        return sum(self.stats.get("failures", {}).values()) + sum(
            self.stats.get("dark", {}).values()
        )


def run_job(
    ref: str,
    data_dir: Path,
    playbook: str,
    *,
    netns: str,
    extra_vars: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
    ssh_key: str | None = None,
    check: bool = False,
    diff: bool = False,
    volumes: tuple[str, ...] = (),
    timeout: float = 600,
) -> JobResult:
    """`ansible-runner run /runner -p PLAYBOOK` in the image, with data_dir as /runner (it must
    hold project/ and inventory/), joined to the network namespace `netns` (podman adds no
    bridge or route to this host). extra_vars are the survey's answers, env the credential's
    variables, ssh_key the Machine credential's key; check and diff are the job type and
    Show Changes."""
    env_dir = data_dir / "env"
    env_dir.mkdir(parents=True, exist_ok=True)
    (env_dir / "extravars").write_text(json.dumps(extra_vars or {}))
    (env_dir / "envvars").write_text(json.dumps(env or {}))
    cmdline = " ".join(flag for flag, on in (("--check", check), ("--diff", diff)) if on)
    (env_dir / "cmdline").write_text(cmdline)
    if ssh_key is not None:
        (env_dir / "ssh_key").write_text(ssh_key)
    else:
        (env_dir / "ssh_key").unlink(missing_ok=True)
    artifacts = data_dir / "artifacts"
    shutil.rmtree(artifacts, ignore_errors=True)
    # The image runs as 1000:0, as AWX's execution environments do: it owns the data dir.
    for path in [data_dir, *data_dir.rglob("*")]:
        os.chown(path, RUNNER_UID, 0)
    name = f"porter-lab-job-{uuid.uuid4().hex[:8]}"
    argv = ["podman", "run", "--rm", f"--name={name}", f"--network=ns:/run/netns/{netns}"]
    argv += ["--volume", f"{data_dir}:/runner:rw"]
    for volume in volumes:
        argv += ["--volume", volume]
    argv += [ref, "ansible-runner", "run", "/runner", "-p", playbook, "--ident", "job"]
    try:
        done = subprocess.run(
            argv,
            env=images.podman_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        # podman's client is gone, not the job's container: remove it, then report the timeout
        images.podman("rm", "--force", "--ignore", "--time=5", name)
        raise
    job = artifacts / "job"
    status = (job / "status").read_text().strip() if (job / "status").exists() else "missing"
    events = []
    for path in sorted(
        (job / "job_events").glob("*.json"), key=lambda p: int(p.stem.split("-")[0])
    ):
        events.append(json.loads(path.read_text()))
    stats: dict[str, dict[str, int]] = {}
    for event in events:
        if event.get("event") == "playbook_on_stats":
            data = event["event_data"]
            stats = {key: data.get(key) or {} for key in ("ok", "changed", "failures", "dark")}
    stdout = (job / "stdout").read_text() if (job / "stdout").exists() else done.stdout
    if status == "missing":
        stdout += f"\n(podman exit {done.returncode}) {done.stderr}"
    return JobResult(status, stdout, stats)


def main() -> int:
    """`python -m porter_lab.ee build`: build the execution environment, print its reference."""
    if sys.argv[1:] != ["build"]:
        print("usage: python -m porter_lab.ee build", file=sys.stderr)
        return 2
    print(build(log=lambda line: print(line, file=sys.stderr, flush=True)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
