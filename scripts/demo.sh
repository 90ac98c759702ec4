#!/usr/bin/env bash
# The one-command demo on the local lab (see docs/demo.md):
#   scripts/demo.sh        install what is needed (scripts/setup.sh), bring up a lab whose router
#                          playbooks/site.yml configures, run site.yml, create a Service with
#                          endpoints on two nodes, and print its EIP, the router's ECMP route,
#                          how 100 requests spread over the nodes, and a route audit
#   scripts/demo.sh down   stop everything and remove the namespaces
# Idempotent: run again while it is up, it reuses what runs. $PORTER_LB_LAB_DIR and
# $PORTER_LB_LAB_RUN choose the lab (as for scripts/lab.sh).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
command=${1:-up}
case "$command" in
  up)
    start=$(date +%s)
    printf '[setup] Installing what is needed (scripts/setup.sh) ...\n'
    venv=$("$repo/scripts/setup.sh")
    printf '[setup] done (%ss)\n' "$(( $(date +%s) - start ))"
    exec "$venv/bin/porter-lab" demo ;;
  down)
    venv=${PORTER_LB_CACHE:-$HOME/.cache/porter-lb}/venv
    [ -x "$venv/bin/porter-lab" ] || venv=$("$repo/scripts/setup.sh")
    exec "$venv/bin/porter-lab" down ;;
  *) printf 'usage: %s [up|down]\n' "$0" >&2; exit 2 ;;
esac
