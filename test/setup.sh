#!/usr/bin/env bash
# Brings a fresh Debian 12 machine (root, with node, npm, git) to the point where the suite builds
# and its tests run: system packages, node_modules, the build, the libcni test client.
#
#   test/setup.sh                   everything the tests need
#   test/setup.sh --demo            what the demo needs (packages, node_modules, build if stale)
#   test/setup.sh --packages-for U  only the packages listed for use U (runtime, demo, test)
#   test/setup.sh --packages P...   only make sure these Debian packages are installed
#
# Each step is skipped when already done, so running it again costs a few dpkg look-ups.
# TSCNI_DIST (as for build.mjs) selects the build tree, default dist/.
set -euo pipefail

# The tests and tools run TypeScript under Node (tsx) and use process.getBuiltinModule and
# import.meta.dirname: Node 20.16 or newer. (The installed plugins themselves need no Node at all.)
if ! node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 16) ? 0 : 1)'; then
    echo "test/setup.sh: Node.js >= 20.16 is required, found $(node --version 2>/dev/null || echo none) (Debian 12's own nodejs is 18: use a newer build, e.g. NodeSource)" >&2
    exit 1
fi

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# Every Debian package the suite uses, in one place: a name, then what needs it.
#   runtime  a program the plugins themselves run (scripts/install.sh installs these)
#   demo     scripts/demo.sh
#   bench    npm run bench
#   test     any test stage; npm test installs every one of these before its first stage
# test/unit/debian-packages.test.ts fails when a source runs a program that no package here (or
# Debian's base system) provides.
# A quoted heredoc: nothing in the list is ever shell text.
read -r -d '' PACKAGE_LIST <<'LIST' || true
iproute2                      runtime demo test bench
iptables                      runtime demo test bench
nftables                      runtime demo test bench
conntrack                     runtime demo test bench
util-linux                    runtime demo test bench
procps                        runtime demo test bench
golang-go                     test bench  # builds the libcni client
golang-github-appc-cni-dev    test bench  # libcni sources for the client
bats                          test  # the e2e scripts
containernetworking-plugins   test bench  # the reference plugins, compared against
strace                        test bench  # process counts in tests and the benchmark
busybox-static                test  # ping, nc, httpd and sh inside test namespaces; the e2e image
iputils-ping                  test  # ping -M do: the agent tests send full-size DF packets pod to pod (busybox ping cannot set DF)
curl                          test  # the external host's HTTP client in e2e
containerd                    test  # e2e: ctr and the CRI plugin
runc                          test  # e2e
podman                        test  # e2e
conmon                        test  # e2e
dbus-daemon                   test  # a private system bus for the firewalld backend's error tests
file                          test  # test/e2e/image.sh checks that busybox is static
iperf3                        test bench  # the benchmark's data path (the package test checks bench/ too)
dnsmasq-base                  runtime test  # the DNS server dnsname starts per network; the DHCP server the dhcp tests lease from
golang-github-containernetworking-plugin-dnsname  test  # the reference dnsname, compared against
bind9-dnsutils                test  # dig: name lookups from container namespaces
user-mode-linux               test  # the uml stage: a kernel with ipvlan, vlan, dummy and vrf
kmod                          test  # modprobe -d inside User-Mode Linux
etcd-server                   test bench  # the node agent's store (etcd v3), started by its tests and the benchmark
etcd-client                   test bench  # etcdctl: tests write and delete keys as an operator would
LIST

# The packages listed for one use.
packages_for() {
    awk -v use="$1" '/^[a-z0-9]/ { sub(/#.*/, ""); for (i = 2; i <= NF; i++) if ($i == use) { print $1; break } }' <<<"$PACKAGE_LIST"
}

log() { printf 'setup: %s\n' "$*" >&2; }

ensure_packages() {
    local missing=() p
    for p in "$@"; do
        if [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" != "installed" ]; then
            missing+=("$p")
        fi
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        log "missing Debian packages: ${missing[*]} (run as root to install them)"
        return 1
    fi
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # A fresh machine may have no package lists yet: update only when the install fails.
    if ! apt-get install -y -q --no-install-recommends "${missing[@]}" >/tmp/tscni-apt.log 2>&1; then
        log "apt-get install failed; running apt-get update and retrying"
        apt-get update -q >>/tmp/tscni-apt.log 2>&1 || true
        apt-get install -y -q --no-install-recommends "${missing[@]}" >>/tmp/tscni-apt.log 2>&1 || {
            tail -n 20 /tmp/tscni-apt.log >&2
            log "could not install ${missing[*]}"
            return 1
        }
    fi
}

ensure_node_modules() {
    local tool
    for tool in esbuild bun tsc tsx uvu biome; do
        if [ ! -x "$root/node_modules/.bin/$tool" ]; then
            log "node_modules incomplete ($tool missing): npm ci"
            (cd "$root" && npm ci --no-audit --no-fund)
            return
        fi
    done
}

build() {
    log "building (node build.mjs${TSCNI_DIST:+, TSCNI_DIST=$TSCNI_DIST})"
    (cd "$root" && node build.mjs)
}

# Builds only when the executable is missing or older than any source file.
build_if_stale() {
    local exe="$root/${TSCNI_DIST:-dist}/bin/tscni"
    if [ -x "$exe" ] && [ -z "$(find "$root/main.ts" "$root/build.mjs" "$root/package.json" "$root/lib" "$root/plugins" \
        -newer "$exe" -print -quit 2>/dev/null)" ]; then
        return 0
    fi
    build
}

# Where the libcni client lives: keyed by the source's hash, so a changed main.go is rebuilt and
# parallel checkouts do not trample each other. test/helpers/libcni.ts computes the same path.
libcni_client_path() {
    local hash
    hash=$(sha256sum "$root/test/libcni-client/main.go" | cut -c1-16)
    echo "/tmp/tscni-libcni-client/$hash/libcni-client"
}

build_libcni_client() {
    local out
    out=$(libcni_client_path)
    if [ -x "$out" ]; then return 0; fi
    log "building the libcni client"
    bash "$root/test/libcni-client/build.sh" "$out"
}

case "${1:-}" in
--packages)
    shift
    ensure_packages "$@"
    ;;
--packages-for)
    mapfile -t use_packages < <(packages_for "${2:?usage: $0 --packages-for USE}")
    ensure_packages "${use_packages[@]}"
    ;;
--demo)
    mapfile -t demo_packages < <(packages_for demo)
    ensure_packages "${demo_packages[@]}"
    ensure_node_modules
    build_if_stale
    ;;
--libcni-client-path)
    libcni_client_path
    ;;
"")
    # Every package any stage uses, before the first stage runs.
    mapfile -t test_packages < <(packages_for test)
    ensure_packages "${test_packages[@]}"
    ensure_node_modules
    build
    build_libcni_client
    ;;
*)
    echo "usage: $0 [--demo | --packages-for USE | --packages PKG... | --libcni-client-path]" >&2
    exit 2
    ;;
esac
