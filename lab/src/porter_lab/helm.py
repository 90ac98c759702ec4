"""helm for the tests of charts/porter-lb, built like the control plane.

Pinned in tools/helm/go.mod (+ go.sum) and built with the Go toolchain into the cache outside
the checkout (`$PORTER_LB_CACHE/bin/helm-<version>-<go.sum digest>/helm`), reused when present.
Helm 4 rather than 3.22: Helm 3 is winding down (bug fixes ended with its last feature release,
2026-09-09; security fixes end 2027-02-10, per helm.sh/blog/helm-v3-end-of-life); the chart
(apiVersion v2) renders the same under both.
"""

from __future__ import annotations

import sys
from pathlib import Path

from porter_lab.controlplane import Tool, build

HELM = Tool("helm", "helm.sh/helm/v4/cmd/helm")


def helm_binary() -> Path:
    """The cached helm; raises (never builds inside a test) when scripts/setup.sh has not run."""
    target = HELM.binary()
    if not target.exists():
        raise FileNotFoundError(
            f"helm {HELM.version()} is not built at {target}: run scripts/setup.sh "
            "(or python -m porter_lab.helm)"
        )
    return target


def main() -> int:
    """`python -m porter_lab.helm`: build helm with progress."""
    build(HELM, log=lambda line: print(line, flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
