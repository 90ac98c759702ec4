#!/bin/sh
# Build gobgpd and its `gobgp` CLI into OUT_DIR from the GoBGP module go.mod pins (go.sum
# verifies the download), with porter-lb's patches (patches/*.patch, each says why) applied to
# a copy of the module. Used by porter_lab.gobgp (lab, bed, CI) and containers/agent.Containerfile.
#
#   tools/gobgp/build.sh OUT_DIR [go build flags...]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=$1
shift
export CGO_ENABLED=0 GOSUMDB=off
cd "$here"
go mod download github.com/osrg/gobgp/v4
module=$(go list -m -f '{{.Dir}}' github.com/osrg/gobgp/v4)
work=$(mktemp -d)
trap 'chmod -R u+w "$work"; rm -rf "$work"' EXIT
cp -R "$module" "$work/gobgp"
chmod -R u+w "$work/gobgp"
go run ./applypatch "$work/gobgp" "$here"/patches/*.patch
cp go.mod "$work/build.mod"
cp go.sum "$work/build.sum"
echo "replace github.com/osrg/gobgp/v4 => $work/gobgp" >>"$work/build.mod"
mkdir -p "$out"
go build -modfile="$work/build.mod" -mod=readonly -trimpath -buildvcs=false "$@" -o "$out/" \
  github.com/osrg/gobgp/v4/cmd/gobgpd github.com/osrg/gobgp/v4/cmd/gobgp
