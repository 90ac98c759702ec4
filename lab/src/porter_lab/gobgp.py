"""GoBGP for the lab, the bed and the images: gobgpd and its `gobgp` CLI, built by
tools/gobgp/build.sh from the module pinned in tools/gobgp/go.mod (+ go.sum), with porter-lb's
patches (tools/gobgp/patches/, each says why) applied, into the cache outside the checkout
(`$PORTER_LB_CACHE/bin/gobgp-<version>-<digest>/`, the digest covering go.sum, build.sh,
applypatch and the patches), reused when present.

The same go.mod pins the API's .proto files the runtime's gRPC stubs are generated from
(runtime/build_support/gobgp_stubs.py reads them from the Go module cache) and the gobgpd the
images build (containers/agent.Containerfile runs the same build.sh): one GoBGP in the product.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
import time
from pathlib import Path

from porter_lab.paths import REPO, cache_dir

TOOLS_DIR = REPO / "tools" / "gobgp"
MODULE = "github.com/osrg/gobgp/v4"


def version() -> str:
    """The GoBGP release tools/gobgp/go.mod pins."""
    text = (TOOLS_DIR / "go.mod").read_text()
    match = re.search(rf"^\s*(?:require\s+)?{re.escape(MODULE)}\s+(v\S+)", text, re.MULTILINE)
    if not match:
        raise RuntimeError(f"{TOOLS_DIR}/go.mod: no version pinned for {MODULE}")
    return match.group(1)


def build_dir() -> Path:
    """Where gobgpd and gobgp land: keyed by version, go.sum, build.sh and the patches."""
    recipe = b"".join(
        path.read_bytes()
        for path in [
            TOOLS_DIR / "go.sum",
            TOOLS_DIR / "build.sh",
            TOOLS_DIR / "applypatch" / "main.go",
            *sorted((TOOLS_DIR / "patches").glob("*.patch")),
        ]
    )
    digest = hashlib.sha256(recipe).hexdigest()[:12]
    return cache_dir() / "bin" / f"gobgp-{version()}-{digest}"


def gobgpd_binary() -> Path:
    """The cached gobgpd; raises (never builds inside a test) when scripts/setup.sh has not run."""
    return _built("gobgpd")


def gobgp_cli_binary() -> Path:
    """The cached `gobgp` CLI (same build as gobgpd)."""
    return _built("gobgp")


def _built(name: str) -> Path:
    target = build_dir() / name
    if not target.exists():
        raise FileNotFoundError(
            f"{name} {version()} is not built at {target}: run scripts/setup.sh "
            "(or python -m porter_lab.gobgp)"
        )
    return target


def build() -> Path:
    """Build both programs into build_dir() unless they are there."""
    target = build_dir()
    if (target / "gobgpd").exists() and (target / "gobgp").exists():
        print(f"  gobgpd {version()}: cached at {target}", flush=True)
        return target
    partial = target.with_name(target.name + ".partial")
    started = time.monotonic()
    print(f"  gobgpd {version()}: tools/gobgp/build.sh (patches applied) ...", flush=True)
    subprocess.run(
        [str(TOOLS_DIR / "build.sh"), str(partial), "-ldflags=-s -w"],
        check=True,
    )
    partial.rename(target)
    print(f"  gobgpd {version()}: built in {time.monotonic() - started:.0f}s -> {target}")
    return target


def main() -> int:
    """`python -m porter_lab.gobgp`: build gobgpd and gobgp."""
    build()
    return 0


if __name__ == "__main__":
    sys.exit(main())
