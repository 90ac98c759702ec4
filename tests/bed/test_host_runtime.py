"""porter.lb.host_runtime, supervised mode, for sites that run porter-lb outside Kubernetes:
`porter-lb controller` started as a host process against the bed's API server.

- the first run starts it (changed) and it comes up: its /readyz answers 200 (caches synced,
  the allocator caught up), which the role's startup check alone does not show;
- a second run changes nothing and keeps the same process;
- changed arguments restart it (a new process, the new arguments);
- state absent stops it and removes its pid file (changed); once more: nothing to do.

(Its systemd mode needs a host with systemd; this machine has none.)
"""

from __future__ import annotations

import sys
import urllib.request
from pathlib import Path
from typing import Any

from porter_lab.ansible_run import recap, run_playbook
from porter_lab.controlplane import ControlPlane, free_port
from porter_lab.waiting import wait_for

BIN = Path(sys.executable).parent


def plays(plane: ControlPlane, run_dir: Path, port: int, **variables: Any) -> list[dict[str, Any]]:
    args = ["--kubeconfig", str(plane.kubeconfig), "--no-leader-elect", "--log-format", "text"]
    args += ["--metrics-address", f"127.0.0.1:{port}", *variables.pop("extra_args", [])]
    return [
        {
            "hosts": "localhost",
            "gather_facts": False,
            "roles": [
                {
                    "role": "porter.lb.host_runtime",
                    "vars": {
                        "host_runtime_mode": "supervised",
                        "host_runtime_executable": str(BIN / "porter-lb"),
                        "host_runtime_run_dir": str(run_dir),
                        "host_runtime_processes": [
                            {"name": "controller", "command": "controller", "args": args}
                        ],
                        **variables,
                    },
                }
            ],
        }
    ]


def run(plane: ControlPlane, tmp_path: Path, port: int, **variables: Any) -> dict[str, int]:
    done = run_playbook(plays(plane, tmp_path / "run", port, **variables), tmp_path)
    assert done.returncode == 0, f"host_runtime:\n{done.stdout[-4000:]}\n{done.stderr}"
    return recap(done.stdout)


def pid(tmp_path: Path) -> int:
    return int((tmp_path / "run/controller.pid").read_text().split()[0])


def running(pid: int) -> bool:
    """A live process (a zombie, exited but not yet reaped by whoever adopted it, is not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def ready(port: int) -> bool:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as answer:
        return bool(answer.status == 200)


def test_supervised_controller_starts_stays_restarts_and_stops(
    control_plane: ControlPlane, crds: list[str], tmp_path: Path
) -> None:
    port = free_port()
    first = run(control_plane, tmp_path, port)
    assert first["changed"] > 0 and first["failed"] == 0, first
    started = pid(tmp_path)
    wait_for(lambda: ready(port), 60, "the controller's /readyz answering 200")

    again = run(control_plane, tmp_path, port)
    assert again["changed"] == 0, again
    assert pid(tmp_path) == started

    changed = run(control_plane, tmp_path, port, extra_args=["--log-level", "debug"])
    assert changed["changed"] > 0, changed
    restarted = pid(tmp_path)
    assert restarted != started
    assert not running(started)
    assert "--log-level" in Path(f"/proc/{restarted}/cmdline").read_bytes().decode()
    wait_for(lambda: ready(port), 60, "the restarted controller ready")

    removed = run(
        control_plane, tmp_path, port, extra_args=["--log-level", "debug"],
        host_runtime_state="absent",
    )  # fmt: skip
    assert removed["changed"] > 0, removed
    wait_for(lambda: not running(restarted), 10, "the controller stopped")
    assert not (tmp_path / "run/controller.pid").exists()
    assert run(control_plane, tmp_path, port, host_runtime_state="absent")["changed"] == 0
