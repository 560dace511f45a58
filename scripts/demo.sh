#!/usr/bin/env bash
# Demo: what a container runtime does with this suite, in throw-away namespaces.
#
#   npm run demo                   # or: bash scripts/demo.sh [--loopback-only]
#
# Sets up what it needs (Debian packages, node_modules, the build), then creates a "node"
# network namespace (standing in for the machine, so its bridge and iptables rules never touch
# the real one) and a "container" namespace, and runs through our cnitool, inside the node:
#   ADD cni-loopback (loopback) and tscni-bridge (bridge + host-local + portmap, with a published
#   port), prints the results and the container's addresses, CHECKs, then DELs in reverse order.
# Everything (namespaces, IPAM store, result cache) is removed at exit.
#
# --loopback-only runs the loopback network alone. CNITOOL and DEMO_CNI_PATH override the client
# and the plugin directory (e.g. to run the same demo with another cnitool or the reference plugins).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
loopback_only=0
[ "${1:-}" = "--loopback-only" ] && loopback_only=1

if [ "$(id -u)" -ne 0 ]; then
    echo "demo: creating network namespaces needs root" >&2
    exit 1
fi
bash "$root/test/setup.sh" --demo

bin="$root/${TSCNI_DIST:-dist}/bin"
cnitool=${CNITOOL:-$bin/cnitool}
node_ns="tscni-demo-node-$$"
ctr_ns="tscni-demo-ctr-$$"
ctr_path="/var/run/netns/$ctr_ns"
tmp=$(mktemp -d /tmp/tscni-demo.XXXXXX)
networks=()

cleanup() {
    local rc=$? net
    # DEL anything still attached (after a failure half-way), newest first, then drop it all.
    for ((i = ${#networks[@]} - 1; i >= 0; i--)); do
        net=${networks[i]}
        in_node "$cnitool" del "$net" "$ctr_path" >/dev/null 2>&1 || true
    done
    ip netns del "$ctr_ns" 2>/dev/null || true
    ip netns del "$node_ns" 2>/dev/null || true
    rm -rf "$tmp"
    [ $rc -eq 0 ] && echo "demo: done, namespaces and state removed" || echo "demo: FAILED (exit $rc); namespaces and state removed" >&2
}
trap cleanup EXIT

export CNI_PATH=${DEMO_CNI_PATH:-$bin} NETCONFPATH="$tmp/net.d" CNI_CACHE_DIR="$tmp/cache"
in_node() { ip netns exec "$node_ns" "$@"; }
if [ -t 1 ]; then
    step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
else
    step() { printf '\n== %s\n' "$*"; }
fi

# The example configurations from conf/, with host-local's store moved into the temp dir.
mkdir -p "$NETCONFPATH"
cp "$root/conf/99-loopback.conflist" "$NETCONFPATH/"
node -e '
  const fs = require("fs");
  const [src, dst, dataDir] = process.argv.slice(1);
  const list = JSON.parse(fs.readFileSync(src, "utf8"));
  for (const p of list.plugins) if (p.ipam) p.ipam.dataDir = dataDir;
  fs.writeFileSync(dst, JSON.stringify(list, null, 2));
' "$root/conf/10-tscni-bridge.conflist" "$NETCONFPATH/10-tscni-bridge.conflist" "$tmp/ipam"

step "namespaces: node $node_ns, container $ctr_ns"
ip netns add "$node_ns"
ip netns add "$ctr_ns"
in_node ip link set lo up
echo "container before ADD:"
ip -n "$ctr_ns" -brief addr

export CAP_ARGS='{"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp"}]}'
add() {
    local net=$1
    step "cnitool add $net $ctr_path"
    networks+=("$net")
    in_node "$cnitool" add "$net" "$ctr_path"
    echo
}

add cni-loopback
if [ "$loopback_only" -eq 0 ]; then
    add tscni-bridge
fi

step "container after ADD: ip addr"
ip -n "$ctr_ns" addr
if [ "$loopback_only" -eq 0 ]; then
    step "container routes"
    ip -n "$ctr_ns" route
    step "node: bridge and port mapping"
    ip -n "$node_ns" -brief addr
    in_node iptables-save -t nat | grep -E '^-A (CNI-|POSTROUTING|PREROUTING|OUTPUT)' || true
fi

check_failed=0
for net in "${networks[@]}"; do
    step "cnitool check $net"
    if in_node "$cnitool" check "$net" "$ctr_path"; then echo "ok"; else check_failed=1; fi
done

for ((i = ${#networks[@]} - 1; i >= 0; i--)); do
    net=${networks[i]}
    step "cnitool del $net"
    # A failed DEL stays in the list, so the exit trap tries it once more.
    if in_node "$cnitool" del "$net" "$ctr_path"; then echo "ok"; unset 'networks[i]'; else check_failed=1; fi
done

step "container after DEL: ip addr"
ip -n "$ctr_ns" addr
# A failed CHECK still gets its DEL and clean-up above, then fails the demo.
exit $check_failed
