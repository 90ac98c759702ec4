"""The roles' Molecule scenarios (extensions/molecule/), run as `molecule test -s NAME`.

Each router scenario builds its own bed of network namespaces with real gobgpd peers,
converges the role on a real BIRD or FRR, checks idempotence and verifies sessions and the
kernel FIB; host_runtime_systemd runs porter-lb's controller under systemd against a real API
server; see extensions/molecule/README.md. A missing tool is a failure, never a skip.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from porter_lab import netns
from porter_lab.gobgp import gobgp_cli_binary, gobgpd_binary
from porter_lab.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]
COLLECTION = REPO / "ansible_collections/porter/lb"
BIN = Path(sys.executable).parent
# scenario -> the prefix of the namespaces its bed creates (porter_molecule_bed)
SCENARIOS = {
    "bird_router": "plbmol-bird-",
    "frr_router": "plbmol-frr-",
    # the router as a podman container with systemd as PID 1, in the router namespace
    "bird_router_systemd": "plbmol-birdsd-",
    "frr_router_systemd": "plbmol-frrsd-",
    "node_sysctl_systemd": "plbmol-sysctlsd-",
    # porter-lb's controller under systemd against a real API server in the host's namespace
    "host_runtime_systemd": "plbmol-rtsd-",
}
LOCKS = Path("/run/porter-molecule")


def molecule(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "MOLECULE_"))}
    # The beds' gobgpd and gobgp: the pinned release scripts/setup.sh built.
    path = [BIN, gobgpd_binary().parent, gobgp_cli_binary().parent]
    env |= {
        "PATH": ":".join([*map(str, path), env.get("PATH", "")]),
        "ANSIBLE_NOCOLOR": "1",
        "NO_COLOR": "1",
    }
    return subprocess.run(
        [str(BIN / "molecule"), *args],
        cwd=COLLECTION,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def scenario_lock(request: pytest.FixtureRequest, bed_prerequisites: None) -> Iterator[str]:
    """One run of a scenario at a time on this machine: its bed has fixed names, and its
    first step removes whatever bed of that name exists."""
    name: str = request.param
    if not shutil.which("molecule", path=str(BIN)):
        pytest.fail(f"molecule is not installed in {BIN}: run scripts/setup.sh")
    LOCKS.mkdir(parents=True, exist_ok=True)
    with (LOCKS / f"{name}.lock").open("w") as lock:

        def locked() -> bool:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            return True

        wait_for(locked, 900, f"another run of the Molecule scenario {name} to finish", 1)
        try:
            yield name
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@pytest.mark.parametrize("scenario_lock", sorted(SCENARIOS), indirect=True)
def test_scenario_passes(scenario_lock: str) -> None:
    name = scenario_lock
    started = time.monotonic()
    try:
        run = molecule("test", "-s", name, timeout=600)
    finally:
        leftovers = [n for n in netns.existing() if n.startswith(SCENARIOS[name])]
        if leftovers:  # a timeout or a crash before Molecule's own destroy
            molecule("destroy", "-s", name, timeout=120)
    seconds = time.monotonic() - started
    output = f"{run.stdout}\n{run.stderr}"
    assert run.returncode == 0, f"molecule test -s {name} failed after {seconds:.0f}s:\n{output}"
    for step in ("create", "check", "converge", "idempotence", "verify", "destroy"):
        assert f"{step}: Executed: Successful" in output, f"step {step} did not run:\n{output}"
    remaining = [n for n in netns.existing() if n.startswith(SCENARIOS[name])]
    assert not remaining, f"namespaces left behind: {remaining}"
    if name.endswith("_systemd"):
        containers = subprocess.run(
            [
                "podman",
                "ps",
                "--all",
                "--quiet",
                "--filter",
                f"label=porter-molecule={SCENARIOS[name].rstrip('-')}",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout.split()
        assert not containers, f"containers left behind: {containers}"
    print(f"molecule test -s {name}: {seconds:.0f}s")
