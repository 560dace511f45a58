#!/usr/bin/env bats
# Docker's network modes expressed as CNI conflists (conf/), driven like a runtime on the node by
# two clients: the libcni client (Debian's libcni, as containerd and Podman use it) and our own
# cnitool. Every scenario runs through both. Host mode makes no CNI call at all, so it has no test
# here: a runtime expresses it by not creating a network namespace (see README).
#
# "Containers" are network namespaces with busybox processes in them; the external host reaches
# published ports through the node.

load lib

setup_file() {
    e2e_sandbox_up docker
    export NETCONF=$E2E_TMP/docker-conf
    mkdir -p "$NETCONF"
    cp "$REPO/conf/docker-bridge.conflist" "$REPO/conf/docker-custom.conflist" "$REPO/conf/90-tscni-none.conflist" "$NETCONF/"
    export LIBCNI_CLIENT=${TSCNI_LIBCNI_CLIENT:-$(bash "$REPO/test/setup.sh" --libcni-client-path)}
    [ -x "$LIBCNI_CLIENT" ] || bash "$REPO/test/libcni-client/build.sh" "$LIBCNI_CLIENT"
    export OUR_CNITOOL=${TSCNI_CNITOOL:-$E2E_BIN/cnitool}
    # A server on the external host, to see what address the container's outbound traffic has.
    local www
    www=$(e2e_www)
    in_ext_mnt_bg busybox httpd -f -p "$EXT_ADDR:80" -h "$www" &
}

teardown_file() {
    e2e_sandbox_down
}

# client TOOL VERB NET NSPATH: runs the libcni client or our cnitool in the node, the way a
# runtime on the node would, with only our plugin directory on CNI_PATH. CID, IFNAME and CAP_ARGS
# (variables of the caller) become CNI_CONTAINERID, CNI_IFNAME and CAP_ARGS.
client() {
    local tool=$1 bin
    shift
    case $tool in
    libcni) bin=$LIBCNI_CLIENT ;;
    cnitool) bin=$OUR_CNITOOL ;;
    *) die "unknown client $tool" ;;
    esac
    [ -x "$bin" ] || die "$tool client missing: $bin"
    local env=(CNI_PATH=/opt/cni/bin NETCONFPATH="$NETCONF" CNI_CONTAINERID="$CID" CNI_IFNAME="${IFNAME:-eth0}")
    [ -n "${CAP_ARGS:-}" ] && env+=(CAP_ARGS="$CAP_ARGS")
    in_node_mnt env "${env[@]}" "$bin" "$@"
}

port_mapping() {
    echo "{\"portMappings\":[{\"hostPort\":$1,\"containerPort\":80,\"protocol\":\"tcp\"}]}"
}

# The address (no prefix) of the first IP in a CNI result on stdin.
result_ip() {
    json_get ips.0.address | cut -d/ -f1
}

# new_netns NAME: a container network namespace (in the sandbox's /run/netns); prints its path.
new_netns() {
    in_node_mnt ip netns add "$1"
    echo "$1" >>"$BATS_TEST_TMPDIR/netns"
    echo "/run/netns/$1"
}

# httpd_in NSPATH ADDR:PORT: a web server in the container, ended by teardown at the latest.
httpd_in() {
    local pid
    pid=$(start_httpd "$@")
    echo "$pid" >>"$BATS_TEST_TMPDIR/pids"
    echo "$pid"
}

# After a failed test, its containers go, so that their veths do not fail the next tests.
teardown() {
    local x
    for x in $(cat "$BATS_TEST_TMPDIR/pids" 2>/dev/null); do kill "$x" 2>/dev/null; done
    for x in $(cat "$BATS_TEST_TMPDIR/netns" 2>/dev/null); do in_node_mnt ip netns del "$x" 2>/dev/null; done
    return 0
}

same_netns() {
    [ "$(stat -L -c %i "$1")" = "$(stat -L -c %i "$2")" ]
}

# Same file, not same path text: in another mount namespace (or a chroot) the link reads differently.
is_busybox() {
    [ "/proc/$1/exe" -ef /bin/busybox ]
}

curl_in() { # curl_in NSPATH URL
    in_node_mnt nsenter --net="$1" curl -sS --fail --max-time 5 "$2"
}

# Docker's default: eth0 on a bridge with a masqueraded default route, published ports, and lo.
scenario_bridge() {
    local tool=$1 port=$2
    local CID=e2e-bridge-$tool CAP_ARGS ns ip httpd
    CAP_ARGS=$(port_mapping "$port")
    ns=$(new_netns "br-$tool")
    httpd=$(httpd_in "$ns" 0.0.0.0:80)
    ip=$(client "$tool" add docker-bridge "$ns" | result_ip)
    [[ $ip == 10.87.* ]] || die "address '$ip' not from docker-bridge's subnet"
    [ "$(netns_ipv4 "$ns" eth0)" = "$ip" ] || die "eth0 does not hold $ip"
    assert_lo_up "$ns"
    in_node_mnt nsenter --net="$ns" ip route show default | grep -q 'via 10.87.0.1 dev eth0' || die "no default route via the gateway"

    assert_peer_is_ext "$(http_get_from_ext "http://$NODE_ADDR:$port/cgi-bin/peer")"
    # Outbound traffic is masqueraded behind the node's address.
    [ "$(curl_in "$ns" "http://$EXT_ADDR/cgi-bin/peer")" = "$NODE_ADDR" ] || die "outbound traffic not masqueraded"

    client "$tool" check docker-bridge "$ns"
    client "$tool" del docker-bridge "$ns"
    assert_nothing_left "$CID" "$ip" "$E2E_TMP/cnicache/networks"
    client "$tool" del docker-bridge "$ns" # DEL again is still a success
    kill "$httpd"
    in_node_mnt ip netns del "br-$tool"
}

# --network none: only lo, up.
scenario_none() {
    local tool=$1
    local CID=e2e-none-$tool ns links
    ns=$(new_netns "none-$tool")
    client "$tool" add tscni-none "$ns" | json_get ips.0.address | grep -qx '127.0.0.1/8' || die "result lacks lo's address"
    links=$(in_node_mnt nsenter --net="$ns" ip -o link show | awk -F': ' '{print $2}')
    [ "$links" = lo ] || die "links besides lo: $links"
    assert_lo_up "$ns"
    client "$tool" check tscni-none "$ns"
    client "$tool" del tscni-none "$ns"
    [ -z "$(grep -rlF "$CID" "$E2E_TMP/cnicache/results" 2>/dev/null)" ] || die "cache entry left"
    in_node_mnt ip netns del "none-$tool"
}

# --network container:<first> (and pods): the first container's process owns the netns, which the
# runtime passes by /proc/PID/ns/net; a second process joins by that path and a third by a pinned
# path. They share eth0's address and talk over 127.0.0.1.
scenario_container() {
    local tool=$1 port=$2
    local CID=e2e-container-$tool CAP_ARGS first third path ip pinned=joined-$tool
    CAP_ARGS=$(port_mapping "$port")
    local www
    www=$(e2e_www)
    in_node_mnt_bg unshare --net busybox httpd -f -p 0.0.0.0:80 -h "$www" &
    first=$!
    echo "$first" >>"$BATS_TEST_TMPDIR/pids"
    # Once busybox runs, unshare has made the new netns.
    wait_for is_busybox "$first"
    path=/proc/$first/ns/net
    ip=$(client "$tool" add docker-bridge "$path" | result_ip)
    [[ $ip == 10.87.* ]] || die "address '$ip' not from docker-bridge's subnet"

    in_node_mnt ip netns attach "$pinned" "$first"
    echo "$pinned" >>"$BATS_TEST_TMPDIR/netns"
    third=$(start_httpd "/run/netns/$pinned" 127.0.0.1:81)
    echo "$third" >>"$BATS_TEST_TMPDIR/pids"
    wait_for same_netns "/proc/$third/ns/net" "$path"
    [ "$(netns_ipv4 "/proc/$third/ns/net" eth0)" = "$ip" ] || die "third process does not share $ip"
    # Second process, joining by /proc/PID/ns/net: reaches both over loopback.
    wait_for curl_in "$path" http://127.0.0.1:81/cgi-bin/peer
    [ "$(curl_in "$path" http://127.0.0.1:81/cgi-bin/peer)" = 127.0.0.1 ] || die "third process not reached over 127.0.0.1"
    [ "$(curl_in "$path" http://127.0.0.1:80/cgi-bin/peer)" = 127.0.0.1 ] || die "first process not reached over 127.0.0.1"
    [ "$(netns_ipv4 "$path" eth0)" = "$ip" ]
    assert_peer_is_ext "$(http_get_from_ext "http://$NODE_ADDR:$port/cgi-bin/peer")"

    client "$tool" del docker-bridge "$path"
    assert_nothing_left "$CID" "$ip" "$E2E_TMP/cnicache/networks"
    kill "$third" "$first"
    in_node_mnt ip netns del "$pinned"
}

# docker network create --subnet 10.86.5.0/24 --ip-range 10.86.5.128/25 --gateway 10.86.5.254
scenario_custom() {
    local tool=$1
    local CID=e2e-custom-$tool ns ip result
    ns=$(new_netns "custom-$tool")
    result=$(client "$tool" add docker-custom "$ns")
    [ "$(json_get cniVersion <<<"$result")" = 0.4.0 ] || die "result is not in the conflist's version 0.4.0"
    ip=$(result_ip <<<"$result")
    [[ $ip == 10.86.5.* ]] && [ "${ip##*.}" -ge 128 ] && [ "${ip##*.}" -le 200 ] || die "address '$ip' outside the range"
    [ "$(json_get ips.0.gateway <<<"$result")" = 10.86.5.254 ] || die "gateway is not 10.86.5.254"
    in_node ip -4 -o addr show dev tscni-custom0 | grep -q '10.86.5.254/24' || die "bridge lacks the gateway address"
    in_node_mnt nsenter --net="$ns" busybox ping -c 1 -W 2 10.86.5.254 >/dev/null || die "gateway unreachable"
    client "$tool" check docker-custom "$ns"
    client "$tool" del docker-custom "$ns"
    assert_nothing_left "$CID" "$ip" "$E2E_TMP/cnicache/networks"
    in_node_mnt ip netns del "custom-$tool"
}

# docker network connect: one container on two networks, eth0 (default route) and net1.
scenario_two_networks() {
    local tool=$1 port=$2
    local CID=e2e-two-$tool CAP_ARGS ns ip0 ip1 httpd
    CAP_ARGS=$(port_mapping "$port")
    ns=$(new_netns "two-$tool")
    httpd=$(httpd_in "$ns" 0.0.0.0:80)
    ip0=$(IFNAME=eth0 client "$tool" add docker-bridge "$ns" | result_ip)
    ip1=$(IFNAME=net1 CAP_ARGS= client "$tool" add docker-custom "$ns" | result_ip)
    [ "$(netns_ipv4 "$ns" eth0)" = "$ip0" ] && [[ $ip0 == 10.87.* ]] || die "eth0: '$ip0'"
    [ "$(netns_ipv4 "$ns" net1)" = "$ip1" ] && [[ $ip1 == 10.86.5.* ]] || die "net1: '$ip1'"
    in_node_mnt nsenter --net="$ns" ip route show default | grep -q 'dev eth0' || die "default route not on eth0"
    in_node_mnt nsenter --net="$ns" ip route show 10.86.5.0/24 | grep -q 'dev net1' || die "no subnet route on net1"
    in_node_mnt nsenter --net="$ns" busybox ping -c 1 -W 2 10.86.5.254 >/dev/null || die "net1's gateway unreachable"
    assert_peer_is_ext "$(http_get_from_ext "http://$NODE_ADDR:$port/cgi-bin/peer")"
    IFNAME=eth0 client "$tool" check docker-bridge "$ns"
    IFNAME=net1 CAP_ARGS= client "$tool" check docker-custom "$ns"

    IFNAME=net1 CAP_ARGS= client "$tool" del docker-custom "$ns"
    [ -z "$(in_node_mnt nsenter --net="$ns" ip -o link show dev net1 2>/dev/null)" ] || die "net1 still there"
    [ "$(netns_ipv4 "$ns" eth0)" = "$ip0" ] || die "eth0 lost its address when net1 went"
    IFNAME=eth0 client "$tool" del docker-bridge "$ns"
    assert_nothing_left "$CID" "$ip0" "$E2E_TMP/cnicache/networks"
    assert_nothing_left "$CID" "$ip1" "$E2E_TMP/cnicache/networks"
    kill "$httpd"
    in_node_mnt ip netns del "two-$tool"
}

@test "docker modes: only the plugins under test are reachable (Debian's Go plugins hidden)" {
    assert_only_plugins_under_test
}

@test "[libcni] bridge mode: eth0 + lo, published port, masqueraded outbound, CHECK, DEL leaves nothing" {
    scenario_bridge libcni 8091
}

@test "[cnitool] bridge mode: eth0 + lo, published port, masqueraded outbound, CHECK, DEL leaves nothing" {
    scenario_bridge cnitool 8092
}

@test "[libcni] none mode: only lo, up" {
    scenario_none libcni
}

@test "[cnitool] none mode: only lo, up" {
    scenario_none cnitool
}

@test "[libcni] container mode: processes joining by /proc/PID/ns/net and by path share the address and 127.0.0.1" {
    scenario_container libcni 8093
}

@test "[cnitool] container mode: processes joining by /proc/PID/ns/net and by path share the address and 127.0.0.1" {
    scenario_container cnitool 8094
}

@test "[libcni] custom subnet, ip-range and gateway (0.4.0 conflist)" {
    scenario_custom libcni
}

@test "[cnitool] custom subnet, ip-range and gateway (0.4.0 conflist)" {
    scenario_custom cnitool
}

@test "[libcni] two networks on one container: eth0 and net1" {
    scenario_two_networks libcni 8095
}

@test "[cnitool] two networks on one container: eth0 and net1" {
    scenario_two_networks cnitool 8096
}
