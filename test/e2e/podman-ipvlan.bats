#!/usr/bin/env bats
# Podman 4.3 (Debian) with network_backend "cni": `podman network create -d ipvlan` networks run
# containers through our ipvlan plugin. Podman 4.3 writes no master for ipvlan (its CNI backend
# takes no parent option for that driver), so the plugin uses the node's default-route interface,
# here the node's link to the external host. l2: containers sit on that segment and the external
# host sees their own addresses; l3: routed through the master, reached by a route on the external
# host. This kernel has no ipvlan: the file skips here and the User-Mode Linux stage runs it.

load lib
load podman

L2_NET=e2eipvl2
L3_NET=e2eipvl3
L3_SUBNET=198.51.100.0/24

# Why this kernel cannot create ipvlan links, or nothing (probed in a namespace made for it).
ipvlan_missing() {
    local ns=tc-e2e-probe-$$ out
    ip netns add "$ns"
    ip -n "$ns" link add p0 type veth peer name p1
    out=$(ip -n "$ns" link add i0 link p0 type ipvlan mode l2 2>&1) || echo "this kernel cannot create ipvlan links ($out)"
    ip netns del "$ns"
}

# bats 1.8 cannot skip from setup_file: the reason is kept for each test's setup.
setup_file() {
    export IPVLAN_MISSING
    IPVLAN_MISSING=$(ipvlan_missing)
    [ -z "$IPVLAN_MISSING" ] || return 0
    e2e_sandbox_up podman-ipvlan
    podman_setup
    podman_ load -q -i "$(e2e_image)" >/dev/null
    # The master Podman leaves to the plugin: the interface of the node's default route.
    in_node ip route add default via "$EXT_ADDR" dev "$E2E_EXT_IF"
    # The external host: a web server answering with the client's address, and a route to the l3
    # subnet through the node's address on the segment.
    export E2E_WWW
    E2E_WWW=$(e2e_www)
    in_ext_mnt_bg busybox httpd -f -p "$EXT_ADDR:80" -h "$E2E_WWW" &
    in_ext ip route add "$L3_SUBNET" via "$NODE_ADDR"
}

setup() {
    [ -z "$IPVLAN_MISSING" ] || skip "$IPVLAN_MISSING; the uml stage runs this file"
}

teardown_file() {
    if [ -n "${PODMAN_DIR:-}" ]; then
        podman_ rm -a -f -t 0 >/dev/null 2>&1
        podman_ network rm -f "$L2_NET" "$L3_NET" >/dev/null 2>&1
    fi
    [ -z "${E2E_TMP:-}" ] || e2e_sandbox_down
}

# The ipvlan link of a container: mode, and its master's MAC shared (ipvlan's mark).
assert_ipvlan_eth0() {
    local pid=$1 mode=$2 link mac
    link=$(in_node_mnt nsenter --net="/proc/$pid/ns/net" ip -d -o link show dev eth0)
    grep -q "ipvlan  *mode $mode" <<<"$link" || die "eth0 is not an ipvlan link in mode $mode: $link"
    mac=$(in_node ip -o link show dev "$E2E_EXT_IF" | grep -Eo 'link/ether [0-9a-f:]+' | cut -d' ' -f2)
    grep -q "link/ether $mac " <<<"$link" || die "eth0 does not share the master's MAC $mac: $link"
}

@test "podman network create -d ipvlan (l2): containers on the master's segment, seen by their own address" {
    podman_ network create -d ipvlan --subnet 192.0.2.0/24 --ip-range 192.0.2.128/25 --gateway "$EXT_ADDR" \
        "$L2_NET" >/dev/null
    podman_ network ls --format '{{.Name}}' | grep -qx "$L2_NET" || die "podman does not list $L2_NET"

    podman_ run -d --name l2a --network "$L2_NET" "$E2E_IMAGE_NAME" >/dev/null
    podman_ run -d --name l2b --network "$L2_NET" "$E2E_IMAGE_NAME" >/dev/null
    local id_a pid_a pid_b ip_a ip_b
    read -r id_a pid_a _ pid_b <<<"$(podman_ inspect --format '{{.Id}} {{.State.Pid}}' l2a l2b | tr '\n' ' ')"
    ip_a=$(netns_ipv4 "/proc/$pid_a/ns/net" eth0)
    ip_b=$(netns_ipv4 "/proc/$pid_b/ns/net" eth0)
    [[ $ip_a == 192.0.2.* ]] && [ "${ip_a##*.}" -ge 128 ] || die "l2a address '$ip_a' not from the ip range"
    [ "$ip_a" != "$ip_b" ] || die "both containers got $ip_a"
    assert_ipvlan_eth0 "$pid_a" l2

    assert_no_nat "$pid_a" "$ip_a" "$pid_b" "$ip_b"

    podman_ rm -f -t 0 l2a l2b >/dev/null
    [ -z "$(in_node ip -o link show type ipvlan)" ] || die "ipvlan links left on the node"
    [ -z "$(find "$E2E_TMP/cnicache/networks/$L2_NET" -type f -name '192.0.2.*' 2>/dev/null)" ] ||
        die "host-local reservations left after podman rm"
    [ -z "$(grep -rlF "$id_a" "$E2E_TMP/cnicache/results" 2>/dev/null)" ] || die "libcni cache entry left for l2a"
    podman_ network rm "$L2_NET" >/dev/null
}

@test "podman network create -d ipvlan -o mode=l3: routed through the master, no NAT" {
    podman_ network create -d ipvlan -o mode=l3 --subnet "$L3_SUBNET" "$L3_NET" >/dev/null
    local conf=$PODMAN_DIR/net.d/$L3_NET.conflist
    [ "$(node -e 'const c=JSON.parse(require("fs").readFileSync(process.argv[1]));console.log(c.plugins[0].type, c.plugins[0].mode)' "$conf")" = "ipvlan l3" ] ||
        die "podman did not write an l3 ipvlan plugin: $(cat "$conf")"

    podman_ run -d --name l3a --network "$L3_NET" "$E2E_IMAGE_NAME" >/dev/null
    podman_ run -d --name l3b --network "$L3_NET" "$E2E_IMAGE_NAME" >/dev/null
    local pid_a pid_b ip_a ip_b
    read -r pid_a pid_b <<<"$(podman_ inspect --format '{{.State.Pid}}' l3a l3b | tr '\n' ' ')"
    ip_a=$(netns_ipv4 "/proc/$pid_a/ns/net" eth0)
    ip_b=$(netns_ipv4 "/proc/$pid_b/ns/net" eth0)
    [[ $ip_a == 198.51.100.* ]] || die "l3a address '$ip_a' not from $L3_SUBNET"
    assert_ipvlan_eth0 "$pid_a" l3

    assert_no_nat "$pid_a" "$ip_a" "$pid_b" "$ip_b"

    podman_ rm -f -t 0 l3a l3b >/dev/null
    [ -z "$(in_node ip -o link show type ipvlan)" ] || die "ipvlan links left on the node"
    podman_ network rm "$L3_NET" >/dev/null
}
