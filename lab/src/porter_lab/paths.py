"""Where the bed keeps things: a cache outside the checkout, per-run state directories."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
# $PORTER_LB_CRD_DIR lets a test run use other CRD manifests (e.g. those of another revision).
CRD_DIR = Path(
    os.environ.get("PORTER_LB_CRD_DIR")
    or REPO / "ansible_collections/porter/lb/roles/controller/files/crds"
)


def cache_dir() -> Path:
    """Long-lived cache (Go-built binaries, virtualenvs): $PORTER_LB_CACHE or ~/.cache/porter-lb."""
    configured = os.environ.get("PORTER_LB_CACHE")
    path = Path(configured) if configured else Path.home() / ".cache" / "porter-lb"
    path.mkdir(parents=True, exist_ok=True)
    return path


def lab_state_dir() -> Path:
    """The running lab's state (pids, logs, kubeconfig).

    $PORTER_LB_LAB_DIR, default /var/tmp/porter-lab."""
    return Path(os.environ.get("PORTER_LB_LAB_DIR", "/var/tmp/porter-lab"))
