#!/usr/bin/env bats
# containerd 1.6 (Debian) driving the plugins: `ctr run --cni` and the CRI plugin through a minimal
# CRI client, each with a published port reached from an external host; and the CRI plugin's
# conf_template rendered from the pod CIDRs kubelet sends.

load lib
load containerd

CTR_PORT=8081
CRI_PORT=8082

setup_file() {
    e2e_sandbox_up ctrd
    export CTR_DATA=$E2E_TMP/ipam-ctr CRI_DATA=$E2E_TMP/ipam-cri CRI_CONF=$E2E_TMP/cri-net.d
    mkdir -p "$CRI_CONF"
    # ctr reads /etc/cni/net.d (the sandbox's netconf dir) and passes no capability arguments, so
    # the port mapping is written into the conflist as runtimeConfig. ctr adds no loopback network:
    # loopback is chained.
    cat >"$E2E_TMP/netconf/10-e2e-ctr.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "e2e-ctr",
  "plugins": [
    {"type": "bridge", "bridge": "cni-ctr0", "isGateway": true, "ipMasq": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.244.10.0/24"}]],
              "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "$CTR_DATA"}},
    {"type": "portmap", "capabilities": {"portMappings": true},
     "runtimeConfig": {"portMappings": [{"hostPort": $CTR_PORT, "containerPort": 80, "protocol": "tcp"}]}},
    {"type": "loopback"}
  ]
}
EOF
    # The CRI plugin adds its own loopback network (cni-loopback, 0.3.1) and sends portMappings.
    cat >"$CRI_CONF/10-e2e-cri.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "e2e-cri",
  "plugins": [
    {"type": "bridge", "bridge": "cni-cri0", "isGateway": true, "ipMasq": true, "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.244.20.0/24"}]],
              "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "$CRI_DATA"}},
    {"type": "portmap", "capabilities": {"portMappings": true}},
    {"type": "bandwidth", "capabilities": {"bandwidth": true}}
  ]
}
EOF
    containerd_up "$CRI_CONF"
    local image
    image=$(e2e_image)
    ctr_ images import "$image" >/dev/null
    ctr_cri images import "$image" >/dev/null
}

teardown_file() {
    containerd_down
    e2e_sandbox_down
}

task_running() {
    ctr_ task ls | awk -v id="$1" '$1 == id && $3 == "RUNNING" { found = 1 } END { exit !found }'
}

@test "containerd: only the plugins under test are reachable (Debian's Go plugins hidden)" {
    assert_only_plugins_under_test
}

@test "ctr run --cni: published port reaches the container, which sees the client's address; exit tears down" {
    ctr_ run --cni --rm "$E2E_IMAGE_NAME" web1 >"$E2E_TMP/ctr-web1.log" 2>&1 3>&- &
    local ctr_pid=$!
    wait_for task_running web1
    local pid ip body
    pid=$(ctr_ task ls | awk '$1 == "web1" { print $2 }')
    ip=$(netns_ipv4 "/proc/$pid/ns/net" eth0)
    [[ $ip == 10.244.10.* ]] || die "container address '$ip' not from the conflist's subnet"
    assert_lo_up "/proc/$pid/ns/net"
    [ -f "$CTR_DATA/e2e-ctr/$ip" ] || die "no host-local reservation for $ip"

    body=$(http_get_from_ext "http://$NODE_ADDR:$CTR_PORT/cgi-bin/peer")
    assert_peer_is_ext "$body"

    # When the task exits, ctr (not -d) sends DEL, with an empty CNI_NETNS (the netns is gone).
    ctr_ task kill -s SIGKILL web1
    wait "$ctr_pid" || true
    if task_running web1; then die "task still running"; fi
    assert_nothing_left tscni-e2e-web1 "$ip" "$CTR_DATA"
}

@test "CRI: RunPodSandbox with a published port, StopPodSandbox and RemovePodSandbox leave nothing" {
    local id status ip netns body
    id=$(cri run web2 "$CRI_PORT:80")
    status=$(cri status "$id")
    [ "$(json_get state <<<"$status")" = SANDBOX_READY ]
    ip=$(json_get ip <<<"$status")
    netns=$(json_get netns <<<"$status")
    [[ $ip == 10.244.20.* ]] || die "pod address '$ip' not from the conflist's subnet"
    [ "$(netns_ipv4 "$netns" eth0)" = "$ip" ] || die "pod eth0 does not hold $ip"
    assert_lo_up "$netns" # the CRI plugin's own cni-loopback network
    [ -f "$CRI_DATA/e2e-cri/$ip" ] || die "no host-local reservation for $ip"

    body=$(http_get_from_ext "http://$NODE_ADDR:$CRI_PORT/cgi-bin/peer")
    assert_peer_is_ext "$body"

    # Stop sends DEL (and a second one with an empty CNI_NETNS once the netns is gone).
    cri stop "$id"
    assert_nothing_left "$id" "$ip" "$CRI_DATA"
    cri stop "$id" # kubelet stops more than once; it must stay a success
    cri remove "$id"
    assert_nothing_left "$id" "$ip" "$CRI_DATA"
    if cri status "$id" 2>/dev/null; then die "sandbox $id still exists after RemovePodSandbox"; fi
}

@test "CRI: a second pod after the first gets a working network again" {
    local id ip body
    id=$(cri run web3 "$CRI_PORT:80")
    ip=$(cri status "$id" | json_get ip)
    body=$(http_get_from_ext "http://$NODE_ADDR:$CRI_PORT/cgi-bin/peer")
    assert_peer_is_ext "$body"
    cri stop "$id"
    cri remove "$id"
    assert_nothing_left "$id" "$ip" "$CRI_DATA"
}

# The node end of the pod's eth0 (its veth peer), by the peer index the pod side reports.
host_end_of() {
    local netns=$1 peer
    peer=$(in_node_mnt nsenter --net="$netns" ip -j link show dev eth0 | json_get .0.link_index)
    in_node ip -j link show | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const l=JSON.parse(s).find(x=>x.ifindex===Number(process.argv[1]));process.stdout.write(l?l.ifname:"")})' "$peer"
}

# The tbf rate (bytes/s, as tc -j reports it) of the root qdisc of IFNAME in the node, or nothing.
tbf_rate() {
    in_node tc -j qdisc show dev "$1" root | json_get .0.options.rate
}

@test "CRI: the pod's kubernetes.io/ingress-bandwidth and egress-bandwidth annotations shape it (bandwidth)" {
    local id netns host ifb
    # As kubelet passes them: containerd turns them into the bandwidth capability (rates in bit/s,
    # bursts of 2^32-1 bits, which the plugin caps to what tbf holds).
    id=$(cri run web4 --annotation=kubernetes.io/ingress-bandwidth=10M --annotation=kubernetes.io/egress-bandwidth=20M)
    netns=$(cri status "$id" | json_get netns)
    host=$(host_end_of "$netns")
    [ -n "$host" ] || die "no node end for the pod's eth0"
    # Into the pod: the node end's egress, 10 Mbit/s = 1250000 bytes/s.
    [ "$(tbf_rate "$host")" = 1250000 ] ||
        die "node end $host: tbf rate '$(tbf_rate "$host")', want 1250000 B/s; qdiscs: $(in_node tc qdisc show dev "$host")"
    # Out of the pod: redirected from the node end's ingress to an ifb device shaped at 20 Mbit/s.
    ifb=$(in_node ip -j link show type ifb | json_get .0.ifname)
    [ -n "$ifb" ] || die "no ifb device for the pod's egress"
    [ "$(tbf_rate "$ifb")" = 2500000 ] || die "ifb $ifb: tbf rate '$(tbf_rate "$ifb")', want 2500000 B/s"
    in_node tc filter show dev "$host" parent ffff: | grep -q "Redirect to device $ifb" ||
        die "node end $host does not redirect its ingress to $ifb"
    cri stop "$id"
    [ -z "$(in_node ip -o link show type ifb)" ] || die "ifb left after StopPodSandbox"
    cri remove "$id"
}

@test "CRI: a pod without bandwidth annotations is not shaped" {
    local id netns host
    id=$(cri run web5)
    netns=$(cri status "$id" | json_get netns)
    host=$(host_end_of "$netns")
    # Without the node end the checks below would pass for want of a device to look at.
    [ -n "$host" ] || die "no node end for the pod's eth0"
    [ -z "$(tbf_rate "$host")" ] || die "node end $host shaped without annotations"
    [ -z "$(in_node ip -o link show type ifb)" ] || die "an ifb device without annotations"
    cri stop "$id"
    cri remove "$id"
}

network_ready() {
    [ "$(cri runtime-status | json_get networkReady)" = true ]
}

# Last in this file: it restarts the daemon with an empty conf dir and our conf_template.
@test "CRI conf_template: kubelet's UpdateRuntimeConfig renders conf/containerd-net.conflist.tmpl; a pod gets addresses on the pod CIDRs and reaches its gateways" {
    local conf=$E2E_TMP/tmpl-net.d rendered id status ip ip6 netns
    containerd_down
    containerd_up "$conf" "$REPO/conf/containerd-net.conflist.tmpl"
    # No config yet: the runtime is up but its network is not, and kubelet would keep the node
    # NotReady ("cni config uninitialized").
    status=$(cri runtime-status)
    [ "$(json_get runtimeReady <<<"$status")" = true ] && [ "$(json_get networkReady <<<"$status")" = false ] ||
        die "before any config: $status"
    # As kubelet does once the node has its podCIDRs (dual stack, joined by a comma).
    cri update-runtime-config "10.244.30.0/24,fd00:10:244:30::/64"
    rendered=$conf/10-containerd-net.conflist
    [ -f "$rendered" ] || die "no $rendered after UpdateRuntimeConfig: $(ls -A "$conf")"
    [ "$(json_get name <"$rendered")" = tscni-pods ] || die "rendered: $(cat "$rendered")"
    [ "$(json_get plugins.0.type <"$rendered")" = bridge ] || die "rendered: $(cat "$rendered")"
    [ "$(json_get plugins.0.ipam.ranges <"$rendered")" = '[[{"subnet":"10.244.30.0/24"}],[{"subnet":"fd00:10:244:30::/64"}]]' ] ||
        die "ranges: $(json_get plugins.0.ipam.ranges <"$rendered")"
    [ "$(json_get plugins.0.ipam.routes <"$rendered")" = '[{"dst":"0.0.0.0/0"},{"dst":"::/0"}]' ] ||
        die "routes: $(json_get plugins.0.ipam.routes <"$rendered")"
    [ "$(json_get plugins.1.type <"$rendered")" = portmap ] || die "rendered: $(cat "$rendered")"
    # containerd picks the new file up by itself (it watches conf_dir).
    wait_for network_ready

    id=$(cri run web6)
    status=$(cri status "$id")
    ip=$(json_get ip <<<"$status")
    netns=$(json_get netns <<<"$status")
    [[ $ip == 10.244.30.* ]] || die "pod address '$ip' not on the pod CIDR 10.244.30.0/24"
    [ "$(netns_ipv4 "$netns" eth0)" = "$ip" ] || die "pod eth0 does not hold $ip"
    ip6=$(in_node_mnt nsenter --net="$netns" ip -6 -o addr show dev eth0 scope global | awk '{print $4}' | cut -d/ -f1)
    [[ $ip6 == fd00:10:244:30:* ]] || die "pod IPv6 address '$ip6' not on fd00:10:244:30::/64"
    # The gateways are the bridge's addresses on the node.
    in_node ip -o addr show dev cni0 | grep -q ' 10.244.30.1/24 ' || die "cni0: $(in_node ip -o addr show dev cni0)"
    in_node_mnt nsenter --net="$netns" busybox ping -c 1 -W 2 10.244.30.1 >/dev/null || die "pod cannot reach 10.244.30.1"
    # IPv6 duplicate address detection may hold the addresses for a moment.
    wait_for in_node_mnt nsenter --net="$netns" busybox ping6 -c 1 -W 1 fd00:10:244:30::1

    cri stop "$id"
    cri remove "$id"
    assert_nothing_left "$id" "$ip" "$E2E_TMP/cnicache/networks"
}
