"""ansible-playbook on localhost, with porter.lb resolved from the checkout: one task of a
module with its registered result read back, or whole plays with their PLAY RECAP.

The tests drive modules and roles this way rather than importing them, so that argument
specs, check mode, diff and `no_log` act as they do for a user. The environment drops the
caller's ANSIBLE_* variables (an outside collection path or config must not decide which
porter.lb runs) and points ANSIBLE_COLLECTIONS_PATH at the checkout.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from porter_lab.paths import REPO

BIN = Path(sys.executable).parent
RECAP_LINE = re.compile(r"^(\S+)\s+:\s+(ok=.*)$", re.MULTILINE)


def environment(
    *, drop: tuple[str, ...] = ("ANSIBLE_",), collections: Path = REPO
) -> dict[str, str]:
    """This process's environment without variables starting with `drop`, with porter.lb
    taken from `collections` and no colour codes in the output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    return env | {"ANSIBLE_COLLECTIONS_PATH": str(collections), "ANSIBLE_NOCOLOR": "1"}


def playbook_command(playbook: Path, *flags: str) -> list[str]:
    """ansible-playbook on localhost over the local connection, with this interpreter (the one
    that has porter-lb's and the modules' dependencies) as the managed host's Python."""
    return [
        str(BIN / "ansible-playbook"),
        "-i",
        "localhost,",
        "-c",
        "local",
        "-e",
        f"ansible_python_interpreter={sys.executable}",
        *flags,
        str(playbook),
    ]


def run_playbook(
    plays: list[dict[str, Any]],
    workdir: Path,
    *flags: str,
    env: dict[str, str] | None = None,
    timeout: float = 300,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Write `plays` to workdir/play.yml and run it (in `cwd`, by default `workdir`; with
    `environment()` unless `env` is given). The exit status is the caller's to check."""
    playbook = workdir / "play.yml"
    playbook.write_text(json.dumps(plays))
    return subprocess.run(
        playbook_command(playbook, *flags),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=environment() if env is None else env,
        check=False,
        cwd=workdir if cwd is None else cwd,
    )


def run_task(
    module: str,
    args: dict[str, Any],
    workdir: Path,
    *,
    check: bool = False,
    diff: bool = False,
    play: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 120,
    cwd: Path | None = None,
) -> tuple[dict[str, Any], subprocess.CompletedProcess[str]]:
    """Run `module` (e.g. "porter.lb.frr_bgp") with `args` as the one task of a play on
    localhost; its registered result and the finished ansible-playbook.

    The task ignores errors, so a module failure is in the result (`failed`, `msg`) while
    ansible-playbook itself must succeed. The result is written by a copy task that runs
    outside check mode and shows no diff, so --check and --diff concern the module alone.
    `play` adds keys to the play (module_defaults, say).
    """
    out = workdir / "result.json"
    out.unlink(missing_ok=True)
    tasks = [
        {module: args, "register": "result", "ignore_errors": True},
        {
            "ansible.builtin.copy": {"content": "{{ result | to_json }}", "dest": str(out)},
            "check_mode": False,
            "diff": False,
        },
    ]
    plays = [{"hosts": "localhost", "gather_facts": False, **(play or {}), "tasks": tasks}]
    flags = ["--check"] * check + ["--diff"] * diff
    done = run_playbook(plays, workdir, *flags, env=env, timeout=timeout, cwd=cwd)
    assert done.returncode == 0, f"ansible-playbook:\n{done.stdout}\n{done.stderr}"
    result: dict[str, Any] = json.loads(out.read_text())
    return result, done


def recaps(stdout: str) -> dict[str, dict[str, int]]:
    """The PLAY RECAP's counters (ok, changed, unreachable, failed, ...) by host."""
    return {
        host: {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", counters)}
        for host, counters in RECAP_LINE.findall(stdout)
    }


def recap(stdout: str, host: str = "localhost") -> dict[str, int]:
    """The PLAY RECAP's counters for `host`; fails showing the output if it has none."""
    counters = recaps(stdout).get(host)
    assert counters is not None, f"no PLAY RECAP for {host}:\n{stdout}"
    return counters
