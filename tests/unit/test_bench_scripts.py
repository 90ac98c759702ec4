"""The benchmarks are not run by the test command (they take minutes and print figures), but
they must keep importing and parsing their arguments as the code under them changes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
SCRIPTS = sorted(p for p in BENCH.glob("*.py") if p.name not in ("common.py", "bedkit.py"))


def test_every_benchmark_is_found() -> None:
    assert {p.name for p in SCRIPTS} >= {
        "allocation.py",
        "cold_start.py",
        "endpointslice_fib.py",
        "layer2_failover.py",
    }


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_benchmark_imports_and_shows_its_help(script: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(script), "--help"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout
