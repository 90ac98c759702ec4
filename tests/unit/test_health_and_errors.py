"""The health checks a kubelet probes (porter_lb.telemetry.health, served by
porter_lb.telemetry.metrics), and a user's mistakes ending a command with one line, never a
traceback (porter_lb.cli).

The probes on the real cluster: tests/cluster/test_failures.py (gobgpd killed, restarted by the
kubelet) and every install test (pods Ready only when /readyz passes).
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from porter_lb.telemetry.health import Health, Heartbeat
from porter_lb.telemetry.metrics import parse_address, serve

PORTER_LB = [sys.executable, "-m", "porter_lb"]


@pytest.mark.parametrize(
    ("address", "wanted"),
    [
        (":7472", ("0.0.0.0", 7472)),
        ("127.0.0.1:9000", ("127.0.0.1", 9000)),
        ("[::1]:9000", ("::1", 9000)),
        ("0.0.0.0:0", ("0.0.0.0", 0)),
    ],
)
def test_metrics_addresses_that_parse(address: str, wanted: tuple[str, int]) -> None:
    assert parse_address(address) == wanted


@pytest.mark.parametrize("address", ["7472", "host:7472", ":http", ":70000", "1.2.3.4:"])
def test_metrics_addresses_that_do_not(address: str) -> None:
    with pytest.raises(ValueError, match=r"HOST:PORT|IP address"):
        parse_address(address)


def test_a_heartbeat_is_stale_only_while_its_loop_runs() -> None:
    beat = Heartbeat("loop", max_age=0.05)
    assert beat.check() is None  # not started: a standby's loop is not a dead one
    beat.beat()
    assert beat.check() is None
    deadline = time.monotonic() + 5
    while beat.check() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert "loop has not come round" in (beat.check() or "")
    beat.stop()
    assert beat.check() is None  # ended on purpose


def test_report_lists_every_check_and_fails_on_any() -> None:
    health = Health()
    health.readiness("caches", lambda: None)
    health.readiness("gobgpd", lambda: "unix:///run/x: UNAVAILABLE")
    ok, text = health.report("readyz")
    assert not ok
    assert text.splitlines() == [
        "[+]caches ok",
        "[-]gobgpd: unix:///run/x: UNAVAILABLE",
        "readyz failed",
    ]
    health.readiness("gobgpd", lambda: None)
    assert health.report("readyz") == (True, "[+]caches ok\n[+]gobgpd ok\nreadyz ok\n")


def test_a_check_that_raises_fails_without_breaking_the_report() -> None:
    health = Health()

    def broken() -> str | None:
        raise RuntimeError("boom")

    health.liveness("broken", broken)
    assert health.report("healthz") == (False, "[-]broken: check failed: boom\nhealthz failed\n")


def test_the_server_answers_the_probes_and_metrics() -> None:
    health = Health()
    health.liveness("loop", lambda: None)
    health.readiness("caches", lambda: "still listing")
    server = serve("127.0.0.1:0", health)
    assert server is not None
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with urllib.request.urlopen(f"{base}/healthz", timeout=5) as answer:
            assert answer.status == 200
            assert answer.read().decode() == "[+]loop ok\nhealthz ok\n"
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{base}/readyz", timeout=5)
        assert refused.value.code == 503
        with urllib.request.urlopen(f"{base}/metrics", timeout=5) as answer:
            text = answer.read().decode()
        # Prometheus' own collectors beside porter-lb's gauges.
        assert "process_resident_memory_bytes" in text
        assert "python_gc_collections_total" in text
        assert "porter_lb_leader" in text
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["agent", "--metrics-address", "nonsense"], "--metrics-address: 'nonsense'"),
        (["controller", "--kubeconfig", "/nonexistent/kubeconfig"], "--kubeconfig"),
        (["webhook", "--cert-file", "/nonexistent/tls.crt", "--key-file", "/nonexistent/k"],
         "--cert-file /nonexistent/tls.crt: no such file"),
        (["webhook", "--cert-file", "/etc/hostname"], "--cert-file needs --key-file"),
        (["webhook"], "one of the arguments --cert-secret --cert-file is required"),
        (["webhook", "--cert-secret", "no-slash", "--kubeconfig", "/nonexistent/k"],
         "--kubeconfig /nonexistent/k: no such file"),
        (["agent", "--kubeconfig", "/nonexistent/k"], "--node (or $NODE_NAME) is required"),
        (["uninstall", "--kubeconfig", "/nonexistent/k"], "--kubeconfig /nonexistent/k"),
        (["controller", "--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    ],
)  # fmt: skip
def test_a_mistake_is_one_line_naming_it_never_a_traceback(
    argv: list[str], says: str, tmp_path: Path
) -> None:
    done = subprocess.run(
        [*PORTER_LB, *argv],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "NODE_NAME": ""},
        check=False,
    )
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr + done.stdout
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert says in lines[0], lines[0]


def test_a_port_that_cannot_be_bound_is_one_line(tmp_path: Path) -> None:
    import socket

    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: "
        "'https://127.0.0.1:1'}\nusers:\n- name: u\n  user: {token: t}\ncontexts:\n- name: c\n"
        "  context: {cluster: c, user: u}\ncurrent-context: c\n"
    )
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [*PORTER_LB, "controller", "--kubeconfig", str(kubeconfig),
             "--metrics-address", f"127.0.0.1:{port}"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert f"--metrics-address 127.0.0.1:{port}: cannot listen" in done.stderr
