"""GoBGP for the lab, the bed and the images: gobgpd and its `gobgp` CLI, built like the control
plane from the module pinned in tools/gobgp/go.mod (+ go.sum) into the cache outside the
checkout (`$PORTER_LB_CACHE/bin/gobgpd-<version>-<go.sum digest>/gobgpd`), reused when present.

The same go.mod pins the API's .proto files the runtime's gRPC stubs are generated from
(runtime/build_support/gobgp_stubs.py reads them from the Go module cache) and the gobgpd the
images build (containers/*.Containerfile): one GoBGP version in the product.
"""

from __future__ import annotations

import sys
from pathlib import Path

from porter_lab.controlplane import Tool, build

GOBGPD = Tool("gobgpd", "github.com/osrg/gobgp/v4/cmd/gobgpd", "gobgp")
GOBGP_CLI = Tool("gobgp", "github.com/osrg/gobgp/v4/cmd/gobgp", "gobgp")
TOOLS = (GOBGPD, GOBGP_CLI)


def gobgpd_binary() -> Path:
    """The cached gobgpd; raises (never builds inside a test) when scripts/setup.sh has not run."""
    return _built(GOBGPD)


def gobgp_cli_binary() -> Path:
    """The cached `gobgp` CLI (same release as gobgpd)."""
    return _built(GOBGP_CLI)


def _built(tool: Tool) -> Path:
    target = tool.binary()
    if not target.exists():
        raise FileNotFoundError(
            f"{tool.name} {tool.version()} is not built at {target}: run scripts/setup.sh "
            "(or python -m porter_lab.gobgp)"
        )
    return target


def main() -> int:
    """`python -m porter_lab.gobgp`: build gobgpd and gobgp with progress."""
    for tool in TOOLS:
        build(tool, log=lambda line: print(line, flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
