#!/usr/bin/env bash
# Run `ansible-test sanity` on the porter.lb collection, offline-safe.
#
#   scripts/ansible-sanity.sh [extra ansible-test sanity args...]
#   VENV=/path/to/venv scripts/ansible-sanity.sh --test pylint
#
# VENV: virtualenv holding ansible-core (default /root/.cache/porter-lb/venv-test).
# PYTHON_VERSION: Python version to test with (default: the venv's own, e.g. 3.12).
#
# Why --venv (not --local): each sanity test gets its own virtualenv with
# the exact pinned requirements ansible-test wants (pylint, yamllint,
# voluptuous, ...), installed from PyPI, without polluting $VENV.  Only PyPI
# has to be reachable.  The one non-PyPI download ansible-test does is the pip
# bootstrap script (ci-files.testing.ansible.com); it is read from
# ~/.ansible/test/cache/get_pip_<ver>.py first, so we put a small stand-in
# there that bootstraps pip with the interpreter's own `ensurepip` and then
# runs `pip install` with the arguments ansible-test passes (pip==<ver>).
# --docker/--podman are never used.
set -euo pipefail

VENV="${VENV:-/root/.cache/porter-lb/venv-test}"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
COLLECTION_DIR="$REPO_ROOT/ansible_collections/porter/lb"

if [[ ! -x "$VENV/bin/ansible-test" ]]; then
    echo "error: $VENV/bin/ansible-test not found (set VENV to a virtualenv with ansible-core)" >&2
    exit 2
fi

PYTHON_VERSION="${PYTHON_VERSION:-$("$VENV/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')}"

# pip version ansible-test bootstraps (get_venv_packages(): pip='25.2' in core 2.21).
PIP_VERSION="$("$VENV/bin/python" - <<'PY'
import pathlib, re, ansible_test
src = pathlib.Path(ansible_test.__file__).parent / "_internal" / "python_requirements.py"
m = re.search(r"""\bpip=['"]([0-9][0-9.]*)['"]""", src.read_text())
if not m:
    raise SystemExit("cannot find the pip bootstrap version in %s" % src)
print(m.group(1))
PY
)"

CACHE_DIR="$HOME/.ansible/test/cache"
GET_PIP="$CACHE_DIR/get_pip_${PIP_VERSION//./_}.py"

if [[ ! -s "$GET_PIP" ]]; then
    mkdir -p "$CACHE_DIR"
    tmp="$(mktemp "$GET_PIP.XXXXXX")"
    cat > "$tmp" <<'PY'
"""Offline stand-in for get-pip.py, written by porter-lb scripts/ansible-sanity.sh.

ansible-test runs this inside a fresh virtualenv created without pip, as
`python get_pip.py --disable-pip-version-check pip==X [--no-setuptools] [--no-wheel]`.
Bootstrap pip from the interpreter's bundled ensurepip wheel (no network),
then let that pip install the requested packages from the package index.
"""
import subprocess
import sys

GET_PIP_ONLY = {"--no-setuptools", "--no-wheel", "--no-pip"}
args = [arg for arg in sys.argv[1:] if arg not in GET_PIP_ONLY]

subprocess.check_call([sys.executable, "-m", "ensurepip", "--default-pip"], stdout=subprocess.DEVNULL)
subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet"] + args)
PY
    mv "$tmp" "$GET_PIP"
    echo "wrote pip bootstrap stand-in: $GET_PIP"
fi

cd "$COLLECTION_DIR"
# No --skip-test: every sanity test runs. Tests that need a tool missing on this
# host (shellcheck for *.sh, pwsh for *.ps1) only apply to files the collection
# does not have and are skipped by ansible-test itself.
status=0
"$VENV/bin/ansible-test" sanity --venv --python "$PYTHON_VERSION" --color no "$@" || status=$?

# ansible-test writes results to tests/output (gitignored); drop them so the tree stays clean.
rm -rf "$COLLECTION_DIR/tests/output"
exit "$status"
