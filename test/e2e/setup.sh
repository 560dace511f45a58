#!/usr/bin/env bash
# Installs what the end-to-end tests (test/e2e/*.bats) need from Debian's packages: the container
# runtimes (containerd 1.6 with ctr and its CRI plugin, runc, Podman 4 with conmon), busybox-static
# for the test image and in-namespace servers, curl as the external host's HTTP client, bats, and
# the kernel tools. The libcni client, node_modules (@grpc/grpc-js for the CRI client) and the build
# come from test/setup.sh. Installed daemons are not started: the tests start their own, inside
# sandbox namespaces.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

E2E_PACKAGES=(containerd runc podman conmon busybox-static curl bats iproute2 iptables nftables
    util-linux procps golang-go golang-github-appc-cni-dev)

bash "$root/test/setup.sh" --packages "${E2E_PACKAGES[@]}"
