#!/usr/bin/python
# Copyright: porter-lb contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
# SPDX-License-Identifier: Apache-2.0
"""A long-running process kept by a pid file, for hosts without a service manager."""

from __future__ import annotations

DOCUMENTATION = r"""
module: host_process
short_description: Keep a long-running process started, with a pid file, where no service manager runs
description:
  - Starts O(argv) detached (its own session, standard input from C(/dev/null), output
    appended to O(log_file)) and records it in O(pid_file), for hosts, containers and labs
    where no systemd runs. Use a real service manager where there is one (the role
    C(porter.lb.host_runtime) writes systemd units).
  - Idempotent. The process recorded in O(pid_file) counts as running only if that pid is
    alive and is the same process (its start time, from C(/proc), matches the one recorded),
    so a reused pid is never mistaken for it. Running with the same O(argv) and
    O(environment) reports no change; with another O(argv) or O(environment) it is stopped
    and started again (RV(restarted)).
  - Stopping sends C(SIGTERM) to the process group, then C(SIGKILL) after O(stop_timeout).
  - Linux only (reads C(/proc)). Supports check mode.
version_added: 0.1.0
author:
  - porter-lb maintainers (@porter-lb)
options:
  argv:
    description:
      - The command and its arguments, not run through a shell. Required with
        O(state=started).
    type: list
    elements: str
  pid_file:
    description:
      - Where the pid is recorded. A file C(<pid_file>.json) next to it records the argv,
        the environment and the start time the module compares.
    type: path
    required: true
  log_file:
    description:
      - The file standard output and standard error are appended to. Defaults to
        C(<pid_file> without .pid>.log).
    type: path
  environment:
    description:
      - Variables added to the module's own environment for the process.
    type: dict
    default: {}
  chdir:
    description:
      - The working directory of the process.
    type: path
    default: /
  state:
    description:
      - V(started) keeps the process running with O(argv); V(stopped) stops it and removes
        the pid files.
    type: str
    choices: [started, stopped]
    default: started
  startup_check:
    description:
      - Seconds the process must stay alive after it is started; if it exits sooner the task
        fails and shows the end of O(log_file). V(0) does not wait.
    type: float
    default: 1.0
  stop_timeout:
    description:
      - Seconds between C(SIGTERM) and C(SIGKILL) when stopping.
    type: float
    default: 10.0
"""

EXAMPLES = r"""
- name: The agent of node1, as the lab runs it
  porter.lb.host_process:
    argv:
      - /opt/porter-lb/bin/porter-lb
      - agent
      - --node
      - node1
      - --kubeconfig
      - /etc/porter-lb/kubeconfig
    pid_file: /run/porter-lb/agent-node1.pid
    log_file: /var/log/porter-lb/agent-node1.log

- name: Stop it
  porter.lb.host_process:
    pid_file: /run/porter-lb/agent-node1.pid
    state: stopped
"""

RETURN = r"""
pid:
  description: The pid of the running process; V(null) when stopped (or in check mode before a start).
  returned: always
  type: int
  sample: 41231
restarted:
  description: A running process was replaced because its argv or environment changed.
  returned: always
  type: bool
  sample: false
log_file:
  description: Where the process writes its output.
  returned: always
  type: str
  sample: /var/log/porter-lb/agent-node1.log
"""

import contextlib
import json
import os
import signal
import time

from ansible.module_utils.basic import AnsibleModule


def start_time(pid):
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat), or
    None if no such process exists (or it is a zombie)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            text = stat.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text.rpartition(")")[2].split()
    if fields[0] == "Z":
        return None
    return int(fields[19])


def recorded(pid_file):
    """The record of the process we started, if it still runs; else None."""
    try:
        with open(pid_file + ".json") as handle:
            record = json.load(handle)
    except (FileNotFoundError, ValueError):
        return None
    if start_time(record.get("pid", 0)) != record.get("start_time"):
        return None
    return record


def stop(record, timeout):
    pid = record["pid"]
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        except PermissionError:
            os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if start_time(pid) != record["start_time"]:
                return
            time.sleep(0.05)


def log_tail(path, lines=20):
    try:
        with open(path, errors="replace") as handle:
            return "".join(handle.readlines()[-lines:])
    except FileNotFoundError:
        return ""


def remove(pid_file):
    for path in (pid_file, pid_file + ".json"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


class SpawnError(Exception):
    """A step of starting the process failed: the option it concerns and the OS error."""

    def __init__(self, option, error):
        super().__init__(f"{option}: {error}")
        self.option = option


def spawn(argv, log_file, chdir, env):
    """Start argv detached: a child in its own session, stdin from /dev/null, stdout and stderr
    appended to log_file, no other descriptor inherited, SIGPIPE and SIGXFSZ at their defaults
    (as subprocess does). Returns its pid; raises SpawnError naming the option whose step
    failed. The child reports a failed chdir or exec through a close-on-exec pipe, so an empty
    read means exec succeeded. AnsibleModule.run_command waits for the command to exit, which
    a daemon never does."""
    try:
        out = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    except OSError as error:
        raise SpawnError("log_file", f"cannot open {log_file!r}: {error.strerror}") from error
    devnull = os.open(os.devnull, os.O_RDONLY)
    errors_read, errors_write = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:  # the child: never returns
        step = "chdir"
        try:
            os.setsid()
            os.chdir(chdir)
            step = "argv"
            for number in (signal.SIGPIPE, signal.SIGXFSZ):
                signal.signal(number, signal.SIG_DFL)
            os.dup2(devnull, 0)
            os.dup2(out, 1)
            os.dup2(out, 2)
            os.closerange(3, errors_write)
            os.closerange(errors_write + 1, os.sysconf("SC_OPEN_MAX"))
            os.execvpe(argv[0], argv, env)
        except OSError as error:
            os.write(errors_write, f"{step} {error.errno or 0}".encode())
        finally:
            os._exit(127)
    os.close(errors_write)
    os.close(out)
    os.close(devnull)
    with os.fdopen(errors_read, "rb") as errors:
        reported = errors.read().decode()
    if reported:
        os.waitpid(pid, 0)
        option, number = reported.split()
        reason = os.strerror(int(number))
        if option == "chdir":
            raise SpawnError("chdir", f"cannot change to {chdir!r}: {reason}")
        raise SpawnError("argv", f"cannot start {argv[0]!r}: [Errno {number}] {reason}")
    return pid


def exit_status(pid):
    """The child's exit status if it has exited (minus the signal's number if a signal ended
    it, as subprocess reports it), else None. Reaps it."""
    done, status = os.waitpid(pid, os.WNOHANG)
    if done == 0:
        return None
    if os.WIFSIGNALED(status):
        return -os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def make_directories(module, result, **paths):
    """The directory of each path, made if missing; a failure names the option."""
    for option, path in paths.items():
        try:
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        except OSError as error:
            module.fail_json(
                msg=f"{option}: cannot make the directory of {path!r}: {error}", **result
            )


def main():
    module = AnsibleModule(
        argument_spec=dict(
            argv=dict(type="list", elements="str"),
            pid_file=dict(type="path", required=True),
            log_file=dict(type="path"),
            environment=dict(type="dict", default={}),
            chdir=dict(type="path", default="/"),
            state=dict(type="str", choices=["started", "stopped"], default="started"),
            startup_check=dict(type="float", default=1.0),
            stop_timeout=dict(type="float", default=10.0),
        ),
        required_if=[("state", "started", ["argv"])],
        supports_check_mode=True,
    )
    params = module.params
    pid_file = params["pid_file"]
    log_file = (
        params["log_file"]
        or (pid_file[: -len(".pid")] if pid_file.endswith(".pid") else pid_file) + ".log"
    )
    environment = {str(k): str(v) for k, v in params["environment"].items()}
    current = recorded(pid_file)
    result = dict(
        changed=False, pid=current["pid"] if current else None, restarted=False, log_file=log_file
    )

    if params["state"] == "stopped":
        if current is not None:
            result.update(changed=True, pid=None)
            if not module.check_mode:
                stop(current, params["stop_timeout"])
        if not module.check_mode:
            remove(pid_file)
        module.exit_json(**result)

    argv = params["argv"]
    if not argv:
        module.fail_json(msg="argv: empty; a command is needed with state=started")
    if (
        current is not None
        and current.get("argv") == argv
        and current.get("environment") == environment
    ):
        module.exit_json(**result)

    result.update(changed=True, restarted=current is not None, pid=None)
    if module.check_mode:
        module.exit_json(**result)
    if current is not None:
        stop(current, params["stop_timeout"])
    make_directories(module, result, pid_file=pid_file, log_file=log_file)
    try:
        pid = spawn(argv, log_file, params["chdir"], {**os.environ, **environment})
    except SpawnError as error:
        module.fail_json(msg=str(error), **result)
    record = dict(pid=pid, start_time=start_time(pid), argv=argv, environment=environment)
    with open(pid_file + ".json", "w") as handle:
        json.dump(record, handle)
    with open(pid_file, "w") as handle:
        handle.write(f"{pid}\n")
    deadline = time.monotonic() + params["startup_check"]
    while time.monotonic() < deadline:
        status = exit_status(pid)
        if status is not None:
            remove(pid_file)
            module.fail_json(
                msg=f"{argv[0]} exited with status {status} within "
                f"{params['startup_check']}s of starting; the end of {log_file}:\n"
                + log_tail(log_file),
                **result,
            )
        time.sleep(0.05)
    result["pid"] = pid
    module.exit_json(**result)


if __name__ == "__main__":
    main()
