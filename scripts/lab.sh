#!/usr/bin/env bash
# The main job on the local lab: install what is needed (scripts/setup.sh), then
#   scripts/lab.sh up [--router bird|frr] [--nodes N]   bring the lab up, print health
#   scripts/lab.sh status                               print health again
#   scripts/lab.sh down                                 stop it and remove everything
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
command=${1:-up}
case "$command" in
  up) venv=$("$repo/scripts/setup.sh") ;;
  *) venv=${PORTER_LB_CACHE:-$HOME/.cache/porter-lb}/venv
     [ -x "$venv/bin/porter-lab" ] || venv=$("$repo/scripts/setup.sh") ;;
esac
printf '\n==> porter-lab %s\n' "$*" >&2
exec "$venv/bin/porter-lab" "${@:-up}"
