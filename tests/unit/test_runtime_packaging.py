"""The runtime's GoBGP stubs are generated at build time from GoBGP's own .proto files."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

RUNTIME = Path(__file__).resolve().parents[2] / "runtime"


def _gobgp_stubs_module():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(
        "gobgp_stubs", RUNTIME / "build_support" / "gobgp_stubs.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_missing_proto_source_says_how_to_get_the_pinned_module(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    stubs = _gobgp_stubs_module()
    monkeypatch.setenv(stubs.PROTO_DIR_ENV, str(tmp_path))
    with pytest.raises(stubs.ProtoSourceMissing) as caught:
        stubs.proto_dir()
    message = str(caught.value)
    assert "go mod download` in tools/gobgp" in message
    assert "api/gobgp.proto" in message and str(tmp_path) in message


def test_proto_files_come_from_the_module_cache_at_the_pinned_version(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    stubs = _gobgp_stubs_module()
    monkeypatch.delenv(stubs.PROTO_DIR_ENV, raising=False)
    monkeypatch.setenv("GOMODCACHE", str(tmp_path))
    version = stubs.pinned_version()
    assert version.startswith("v4.")
    proto = tmp_path / f"github.com/osrg/gobgp/v4@{version}" / "proto"
    for name in stubs.PROTO_FILES:
        (proto / name).parent.mkdir(parents=True, exist_ok=True)
        (proto / name).write_text('syntax = "proto3";\n')
    assert stubs.proto_dir() == proto


def _build_wheel(out: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--disable-pip-version-check",
            "-w",
            str(out),
            str(RUNTIME),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


def test_wheel_carries_stubs_generated_from_the_proto_files(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PORTER_LB_GOBGP_PROTO_DIR"}
    result = _build_wheel(tmp_path, env)
    assert result.returncode == 0, result.stderr[-2000:]
    (wheel,) = tmp_path.glob("porter_lb-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        stub = archive.read("porter_lb/gobgp_api/gobgp_pb2.py").decode()
    for name in (
        "gobgp_pb2.py",
        "gobgp_pb2.pyi",
        "attribute_pb2.py",
        "capability_pb2.py",
        "common_pb2.py",
        "extcom_pb2.py",
        "nlri_pb2.py",
        "__init__.py",
    ):
        assert f"porter_lb/gobgp_api/{name}" in names
    # No gRPC service stubs (they import grpcio, which the runtime does not need).
    assert not [n for n in names if n.endswith("_grpc.py")]
    # Sibling imports are rewritten to relative ones, so the stubs work inside the package.
    assert "from . import attribute_pb2 as api_dot_attribute__pb2" in stub
    assert "porter_lb/model/addresses.py" in names


def test_wheel_build_without_proto_files_fails_with_one_clear_error(tmp_path: Path) -> None:
    env = {**os.environ, "PORTER_LB_GOBGP_PROTO_DIR": str(tmp_path / "absent")}
    result = _build_wheel(tmp_path, env)
    assert result.returncode != 0
    assert "go mod download` in tools/gobgp" in result.stdout + result.stderr


# What each process imports is most of what it holds resident (bench/peers.py): grpcio with
# the asyncio it pulls in was ~18 MB, `cryptography` is ~8 MB. The rule: a module is imported
# only by the commands that use it, and grpcio by none.
HEAVY = ("grpc", "asyncio", "cryptography", "yaml", "pyroute2", "kubernetes")


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        # Registering every command's options loads none of them.
        ("import porter_lb.cli; porter_lb.cli.build_parser()", []),
        # The controller in node mode needs no gRPC, and no certificates without a Secret.
        ("from porter_lb.commands import controller", []),
        # The agent drives gobgpd with porter-lb's own gRPC client (routing/grpc_client.py).
        ("from porter_lb.routing import speaker, central", []),
        # Host rules and layer 2 talk netlink with porter-lb's own client (host/rtnl.py).
        ("from porter_lb.host import netlink; from porter_lb.layer2 import announcer", []),
        ("from porter_lb.webhook import tls; tls.webhook_certificate", ["cryptography"]),
    ],
)
def test_a_command_imports_only_what_it_uses(command: str, expected: list[str]) -> None:
    script = f"import sys; {command}; print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    output = subprocess.run(
        [sys.executable, "-c", script], check=True, capture_output=True, text=True
    ).stdout
    assert output.strip() == repr(sorted(expected))
