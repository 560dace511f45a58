#!/usr/bin/env bats
# containerd 1.6 (Debian) driving the plugins: `ctr run --cni` and the CRI plugin through a minimal
# CRI client, each with a published port reached from an external host.

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
    {"type": "portmap", "capabilities": {"portMappings": true}}
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
