#!/usr/bin/env bash
# Builds the libcni test client from Debian's golang-go and golang-github-appc-cni-dev packages,
# in GOPATH mode and without network access.
#
#   usage: test/libcni-client/build.sh OUTPUT_PATH
set -euo pipefail

if [ $# -ne 1 ]; then
    echo "usage: $0 OUTPUT_PATH" >&2
    exit 2
fi
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out_dir=$(mkdir -p "$(dirname "$1")" && cd "$(dirname "$1")" && pwd)
out="$out_dir/$(basename "$1")"

if ! command -v go >/dev/null 2>&1 || [ ! -d /usr/share/gocode/src/github.com/containernetworking/cni/libcni ]; then
    bash "$here/../setup.sh" --packages golang-go golang-github-appc-cni-dev
fi

# GOPATH mode wants the package under <gopath>/src/<import path>; libcni comes from the Debian tree.
work=$(mktemp -d /tmp/tscni-libcni-build.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/src/libcni-client"
cp "$here/main.go" "$work/src/libcni-client/"
(
    cd "$work/src/libcni-client"
    GO111MODULE=off GOPATH="$work:/usr/share/gocode" GOPROXY=off \
        GOCACHE="${GOCACHE:-/tmp/tscni-gocache}" CGO_ENABLED=0 \
        go build -trimpath -o "$out.tmp.$$" .
)
mv -f "$out.tmp.$$" "$out"
echo "built $out" >&2
