#!/usr/bin/env bash
# The whole test suite, from a fresh machine of this kind: installs what it needs
# (scripts/setup.sh), then lint, formatting and types, ansible-test sanity and units,
# ansible-lint, and pytest
# (unit tests and the real bed: kube-apiserver + etcd, gobgpd, BIRD and FRR in namespaces).
# Extra arguments go to pytest, e.g. scripts/test.sh -k bird
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
started=$SECONDS
venv=$("$repo/scripts/setup.sh")
export PATH=$venv/bin:$PATH
step() { printf '\n==> %s\n' "$*" >&2; }

step "ruff: lint and formatting"
ruff check .
ruff format --check .

step "mypy: runtime/ (strict on the pure core) and the lab"
mypy

step "lint-imports: the runtime's layers, its pure core, no import cycles (pyproject.toml)"
lint-imports --no-cache

step "ansible-test sanity on the porter.lb collection"
VENV=$venv "$repo/scripts/ansible-sanity.sh"

step "ansible-test units on the porter.lb collection (module_utils and plugins)"
(cd "$repo/ansible_collections/porter/lb" && "$venv/bin/ansible-test" units --venv --python "$("$venv/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')")

step "ansible-lint, production profile, on the porter.lb collection"
(cd "$repo/ansible_collections/porter/lb" && ANSIBLE_COLLECTIONS_PATH=$repo ansible-lint --offline --nocolor -q)

step "pytest: unit tests and the real test bed"
set +e
# The 40 slowest steps close the log: where the suite's time goes, for keeping it short.
python -m pytest --durations=40 "$@"
status=$?
set -e
printf '\n==> test.sh finished in %ds (exit %d)\n' "$((SECONDS - started))" "$status" >&2
exit $status
