"""porter.lb behaves as one collection: from a checkout, built, installed and documented."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from porter_lab.ansible_run import environment, playbook_command, recap

REPO = Path(__file__).resolve().parents[2]
COLLECTION = REPO / "ansible_collections/porter/lb"
BIN = Path(sys.executable).parent
DEPENDENCIES = ("kubernetes/core", "ansible/netcommon", "ansible/utils")


def ansible(tool: str, *args: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    """Run an Ansible CLI with only `env` deciding where collections come from."""
    inherited = {
        k: v
        for k, v in os.environ.items()
        if k not in ("ANSIBLE_COLLECTIONS_PATH", "ANSIBLE_COLLECTIONS_PATHS", "ANSIBLE_CONFIG")
    }
    result = subprocess.run(
        [str(BIN / tool), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**inherited, "ANSIBLE_NOCOLOR": "1", **(env or {})},
        check=False,
    )
    assert result.returncode == 0, f"{tool} {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The collection built with ansible-galaxy and installed offline into an empty path."""
    out = tmp_path_factory.mktemp("build")
    ansible(
        "ansible-galaxy", "collection", "build", str(COLLECTION), "--output-path", str(out), cwd=out
    )
    (tarball,) = out.glob("porter-lb-*.tar.gz")
    path = tmp_path_factory.mktemp("collections")
    # Offline, the dependencies galaxy.yml declares must already be in the path (as a site
    # without Galaxy would have them from the `ansible` wheel): copy those setup.sh linked.
    for dependency in DEPENDENCIES:
        shutil.copytree(
            (REPO / "ansible_collections" / dependency).resolve(),
            path / "ansible_collections" / dependency,
        )
    ansible(
        "ansible-galaxy",
        "collection",
        "install",
        "--offline",
        "-p",
        str(path),
        str(tarball),
        cwd=out,
    )
    return path


def test_built_collection_holds_modules_module_utils_roles_and_playbooks(installed: Path) -> None:
    root = installed / "ansible_collections/porter/lb"
    for part in (
        "plugins/modules/eip_address_info.py",
        "plugins/module_utils/addresses.py",
        "roles/node_sysctl/tasks/main.yml",
        "playbooks/sysctl.yml",
        "meta/runtime.yml",
        "MANIFEST.json",
        "LICENSE",
        "README.md",
    ):
        assert (root / part).is_file(), part
    assert not [p for p in root.rglob("*") if p.is_symlink()]
    assert "Apache License" in (root / "LICENSE").read_text()
    assert (root / "LICENSE").read_text() == (REPO / "LICENSE").read_text()


def test_installed_collection_is_documented(installed: Path, tmp_path: Path) -> None:
    env = {"ANSIBLE_COLLECTIONS_PATH": str(installed)}
    listing = ansible("ansible-doc", "-l", "porter.lb", cwd=tmp_path, env=env)
    assert "porter.lb.eip_address_info" in listing
    doc = ansible("ansible-doc", "porter.lb.eip_address_info", cwd=tmp_path, env=env)
    assert "address" in doc and "RETURN VALUES" in doc


@pytest.fixture
def scratch_netns() -> Iterator[str]:
    """A private network namespace: its sysctls are its own, so a real run changes nothing else."""
    name = f"plbans-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    yield name
    subprocess.run(["ip", "netns", "delete", name], check=True)


def test_installed_role_applies_and_is_idempotent(
    installed: Path, tmp_path: Path, scratch_netns: str
) -> None:
    play = tmp_path / "play.yml"
    play.write_text(
        "- hosts: localhost\n  gather_facts: false\n  roles:\n"
        "    - role: porter.lb.node_sysctl\n"
        f"      node_sysctl_file: {tmp_path / '90-porter-lb.conf'}\n"
    )
    command = ["ip", "netns", "exec", scratch_netns, *playbook_command(play)]
    env = environment(collections=installed)

    def run() -> dict[str, int]:
        result = subprocess.run(
            command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return recap(result.stdout)

    first, second = run(), run()
    assert first["changed"] >= 1 and first["failed"] == 0
    assert second["changed"] == 0 and second["failed"] == 0
    values = subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            scratch_netns,
            "sysctl",
            "-n",
            "net.ipv4.ip_forward",
            "net.ipv4.fib_multipath_hash_policy",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert values == ["1", "1"]
    assert "net.ipv4.ip_forward = 1" in (tmp_path / "90-porter-lb.conf").read_text()


def test_checkout_resolves_porter_lb_without_installing(tmp_path: Path) -> None:
    """ansible.cfg at the root puts ./ansible_collections on the collection path."""
    output = ansible(
        "ansible",
        "localhost",
        "-m",
        "porter.lb.eip_address_info",
        "-a",
        "address=2001:db8::/120",
        "-e",
        f"ansible_python_interpreter={sys.executable}",
        cwd=REPO,
    )
    assert '"size": 256' in output
    syntax = ansible(
        "ansible-playbook", "--syntax-check", "-i", "localhost,", "playbooks/sysctl.yml", cwd=REPO
    )
    assert "playbook: playbooks/sysctl.yml" in syntax


def test_no_symlink_loops_and_top_level_points_into_the_collection() -> None:
    for name in ("roles", "playbooks", "galaxy.yml"):
        link = REPO / name
        assert link.is_symlink()
        assert link.resolve() == (COLLECTION / name).resolve()
    loops = subprocess.run(
        [
            "find",
            "-L",
            str(REPO),
            "-path",
            str(REPO / ".git"),
            "-prune",
            "-o",
            "-type",
            "l",
            "-print",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert "loop" not in loops.stderr.lower(), loops.stderr
    assert loops.stdout == "", f"dangling symlinks: {loops.stdout}"
