#!/usr/bin/env bash
# Install everything porter-lb's lab and tests need, idempotently, printing progress:
#   apt packages (BIRD 2, FRR, iproute2, containerd, runc, CNI plugins, podman, debootstrap),
#   a virtualenv with the runtime and the lab installed, gobgpd and gobgp, etcd, the
#   Kubernetes components (kube-apiserver, kubelet, controller-manager, scheduler, kube-proxy,
#   kubectl), helm and MetalLB (the benchmark's peer) built from pinned Go modules, and the
#   container images.
# Caches live outside the checkout: $PORTER_LB_CACHE (default ~/.cache/porter-lb).
# Prints the virtualenv's path as its last line.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${PORTER_LB_CACHE:-$HOME/.cache/porter-lb}
export PORTER_LB_CACHE=$cache
mkdir -p "$cache"
step() { printf '\n==> %s\n' "$*" >&2; }
say() { printf '    %s\n' "$*" >&2; }

[ "$(id -u)" -eq 0 ] || { echo "error: run as root (network namespaces, routing daemons, apt)" >&2; exit 1; }

step "System packages"
# The real cluster (porter_lab.cluster): containerd, runc and the CNI plugins on its nodes,
# iptables and conntrack for kube-proxy, socat to reach its API server from this host; the
# images (porter_lab.images): podman and debootstrap.
packages=(bird2 frr iproute2 procps git ca-certificates
          containerd runc containernetworking-plugins iptables conntrack socat
          podman debootstrap)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >&2
  apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
else
  say "present: ${packages[*]}"
fi

step "Go toolchain"
command -v go >/dev/null || { echo "error: the Go toolchain (go >= 1.25) is needed to build gobgpd, etcd and kube-apiserver; it is not on PATH" >&2; exit 1; }
say "$(go version)"

step "GoBGP module (tools/gobgp): its .proto files, for the runtime's gRPC stubs"
# The runtime's build step reads them from the Go module cache; gobgpd itself is built below.
(cd "$repo/tools/gobgp" && GOSUMDB=off GOFLAGS=-mod=readonly go mod download github.com/osrg/gobgp/v4) >&2
say "$(cd "$repo/tools/gobgp" && go list -m -f '{{.Path}} {{.Version}}' github.com/osrg/gobgp/v4) in the module cache"

step "Python virtualenv"
python=${PORTER_LB_PYTHON:-}
if [ -z "$python" ]; then
  for candidate in python3.12 "$HOME"/.pyenv/versions/3.12.*/bin/python3.12 python3.13 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then
      python=$(command -v "$candidate"); break
    fi
  done
fi
[ -n "$python" ] || { echo "error: Python >= 3.12 is needed (ansible-core 2.21); set PORTER_LB_PYTHON" >&2; exit 1; }
pyver=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
venv=$cache/venv
stamp=$venv/.requirements.sha256
want=$(cat "$repo/requirements/dev.txt" | sha256sum | cut -d' ' -f1)
if [ -x "$venv/bin/python" ] && [ "$("$venv/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')" != "$pyver" ]; then
  say "recreating $venv for Python $pyver"
  rm -rf "$venv"
fi
if [ ! -x "$venv/bin/python" ]; then
  say "creating $venv with $python"
  "$python" -m venv "$venv"
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  say "installing requirements/dev.txt (first time: about a minute)"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip >&2
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$repo/requirements/dev.txt" >&2
  echo "$want" > "$stamp"
else
  say "requirements up to date in $venv"
fi
# Editable installs: the runtime's build step (re)generates the GoBGP stubs from the .proto files.
"$venv/bin/python" -m pip install -q --disable-pip-version-check --no-build-isolation --no-deps \
  -e "$repo/runtime" -e "$repo/lab" >&2
say "porter-lb $("$venv/bin/porter-lb" --version | cut -d' ' -f2) installed (GoBGP stubs generated)"

step "Ansible collections: porter.lb's dependencies and containers.podman (for Molecule)"
# Galaxy is not reachable from every site: they come from PyPI's `ansible` wheel (the same
# files Galaxy serves), pinned by version and hash, unpacked in the cache and linked into the
# checkout's ansible_collections/ (git-ignored), where ansible-playbook and ansible-test find
# them next to porter.lb.
ansible_wheel=ansible-14.5.0-py3-none-any.whl
ansible_sha256=245623ccc2d31d0f6f4bdb63168d550cad305fb032cc43d96e8f61ce8ab0ba84
# The directory's name changes with the list extracted, so an older cache is redone.
collections=$cache/collections/ansible-14.5.0-2
if [ ! -f "$collections/.complete" ]; then
  mkdir -p "$cache/wheels"
  if [ "$(sha256sum "$cache/wheels/$ansible_wheel" 2>/dev/null | cut -d' ' -f1)" != "$ansible_sha256" ]; then
    say "downloading $ansible_wheel (56 MB) from PyPI"
    "$venv/bin/python" -m pip download -q --disable-pip-version-check --no-deps \
      --dest "$cache/wheels" "ansible==14.5.0" >&2
  fi
  got=$(sha256sum "$cache/wheels/$ansible_wheel" | cut -d' ' -f1)
  [ "$got" = "$ansible_sha256" ] || { echo "error: $ansible_wheel has sha256 $got, expected $ansible_sha256" >&2; exit 1; }
  rm -rf "$collections"
  "$venv/bin/python" - "$cache/wheels/$ansible_wheel" "$collections" <<'PY'
import sys, zipfile
wheel, dest = sys.argv[1:]
wanted = ("ansible_collections/kubernetes/core/", "ansible_collections/ansible/netcommon/",
          "ansible_collections/ansible/utils/", "ansible_collections/containers/podman/")
with zipfile.ZipFile(wheel) as archive:
    archive.extractall(dest, [n for n in archive.namelist() if n.startswith(wanted)])
PY
  touch "$collections/.complete"
fi
for name in kubernetes/core ansible/netcommon ansible/utils containers/podman; do
  mkdir -p "$repo/ansible_collections/${name%/*}"
  ln -sfn "$collections/ansible_collections/$name" "$repo/ansible_collections/$name"
done
say "kubernetes.core 6.6.0, ansible.netcommon 8.7.1, ansible.utils 6.1.1, containers.podman 1.21.0 linked into ansible_collections/"

step "gobgpd and gobgp from the pinned GoBGP module (every speaker of the lab and the bed)"
"$venv/bin/python" -m porter_lab.gobgp >&2

step "Kubernetes control plane (etcd, kube-apiserver) from pinned Go modules"
"$venv/bin/python" -m porter_lab.controlplane >&2

step "helm from its pinned Go module (tests of charts/porter-lb)"
"$venv/bin/python" -m porter_lab.helm >&2

step "MetalLB from its pinned Go module (bench/peers.py, tests/bed/test_peers.py)"
"$venv/bin/python" -m porter_lab.metallb >&2

step "Container images (podman): Debian base, porter-lb controller and agent, test app, pause, Molecule host"
"$venv/bin/python" -m porter_lab.images >&2

step "The AWX execution environment (ansible-builder, podman; docs/awx)"
"$venv/bin/python" -m porter_lab.ee build >&2

echo "$venv"
