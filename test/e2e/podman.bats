#!/usr/bin/env bats
# Podman 4.3 (Debian) with network_backend "cni" driving the plugins: `podman network create`
# writes a 0.4.0 conflist chaining bridge, portmap, firewall and tuning; `podman run -p` publishes
# a port reached from an external host.

load lib
load podman

NET=e2enet
PORT=8084

setup_file() {
    e2e_sandbox_up podman
    podman_setup
    podman_ load -q -i "$(e2e_image)" >/dev/null
}

teardown_file() {
    if [ -n "${PODMAN_DIR:-}" ]; then
        podman_ rm -a -f -t 0 >/dev/null 2>&1
        podman_ network rm -f "$NET" >/dev/null 2>&1
    fi
    e2e_sandbox_down
}

@test "podman: only the plugins under test are reachable (Debian's Go plugins hidden)" {
    assert_only_plugins_under_test
}

@test "podman network create: the network exists, its plugins answer VERSION" {
    podman_ network create --disable-dns --subnet 10.244.40.0/24 "$NET"
    local conf=$PODMAN_DIR/net.d/$NET.conflist
    [ "$(json_get cniVersion <$conf)" = 0.4.0 ]
    [ "$(node -e 'console.log(JSON.parse(require("fs").readFileSync(process.argv[1])).plugins.map(p=>p.type).join(","))' "$conf")" = bridge,portmap,firewall,tuning ]
    # Podman asks every plugin for VERSION when it loads networks and drops a network silently when
    # one fails: the network must still be listed.
    podman_ network ls --format '{{.Name}}' | grep -qx "$NET" || die "podman does not list $NET (a plugin failed VERSION?)"
    podman_ network inspect "$NET" >/dev/null
}

@test "podman run -p: published port reaches the container, which sees the client's address; rm tears down" {
    podman_ run -d --name web --network "$NET" -p "$PORT:80" "$E2E_IMAGE_NAME" >/dev/null
    local pid ip id body
    id=$(podman_ inspect --format '{{.Id}}' web)
    pid=$(podman_ inspect --format '{{.State.Pid}}' web)
    ip=$(netns_ipv4 "/proc/$pid/ns/net" eth0)
    [[ $ip == 10.244.40.* ]] || die "container address '$ip' not from the network's subnet"
    [ "$(podman_ inspect --format "{{(index .NetworkSettings.Networks \"$NET\").IPAddress}}" web)" = "$ip" ]
    [ -f "$E2E_TMP/cnicache/networks/$NET/$ip" ] || die "no host-local reservation for $ip"

    body=$(http_get_from_ext "http://$NODE_ADDR:$PORT/cgi-bin/peer")
    assert_peer_is_ext "$body"

    podman_ rm -f -t 0 web >/dev/null
    assert_nothing_left "$id" "$ip" "$E2E_TMP/cnicache/networks"
}

@test "podman network rm removes the network's config" {
    podman_ network rm "$NET" >/dev/null
    [ ! -e "$PODMAN_DIR/net.d/$NET.conflist" ]
}
