#!/usr/bin/env bats
# Podman 4.3 (Debian) with network_backend "cni" driving the plugins: `podman network create`
# writes a 0.4.0 conflist chaining bridge, portmap, firewall and tuning; `podman run -p` publishes
# a port reached from an external host; `-d macvlan` networks put containers on the parent's L2;
# networks with DNS (Podman's default) add dnsname, and containers find each other by name;
# `--opt isolate=true` networks are cut off from each other.

load lib
load podman

NET=e2enet
PORT=8084
MACVLAN_NET=e2emacvlan
DNS_NET=e2edns
OTHER_NET=e2eother
ISO_A=e2eisoa
ISO_B=e2eisob
ISO_PORT=8085

setup_file() {
    e2e_sandbox_up podman
    podman_setup
    podman_ load -q -i "$(e2e_image)" >/dev/null
}

teardown_file() {
    if [ -n "${PODMAN_DIR:-}" ]; then
        podman_ rm -a -f -t 0 >/dev/null 2>&1
        podman_ network rm -f "$NET" "$MACVLAN_NET" "$DNS_NET" "$OTHER_NET" "$ISO_A" "$ISO_B" >/dev/null 2>&1
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

# A macvlan network on the node's link to the external host: containers sit on that L2 segment with
# their own MAC and address, reach the external host directly, and it sees their own address (no
# NAT). The range leaves out the node's and the external host's addresses.
@test "podman network create -d macvlan: containers on the parent's segment, seen by their own address" {
    podman_ network create -d macvlan -o parent="$E2E_EXT_IF" --subnet 192.0.2.0/24 --ip-range 192.0.2.128/25 \
        --gateway "$NODE_ADDR" "$MACVLAN_NET" >/dev/null
    local conf=$PODMAN_DIR/net.d/$MACVLAN_NET.conflist
    [ "$(node -e 'const c=JSON.parse(require("fs").readFileSync(process.argv[1]));console.log(c.plugins[0].type, c.plugins[0].master)' "$conf")" = "macvlan $E2E_EXT_IF" ]
    podman_ network ls --format '{{.Name}}' | grep -qx "$MACVLAN_NET" || die "podman does not list $MACVLAN_NET"

    local www
    www=$(e2e_www)
    in_ext_mnt_bg busybox httpd -f -p "$EXT_ADDR:80" -h "$www" &

    podman_ run -d --name mv1 --network "$MACVLAN_NET" "$E2E_IMAGE_NAME" >/dev/null
    podman_ run -d --name mv2 --network "$MACVLAN_NET" "$E2E_IMAGE_NAME" >/dev/null
    local id1 pid1 pid2 ip1 ip2
    id1=$(podman_ inspect --format '{{.Id}}' mv1)
    pid1=$(podman_ inspect --format '{{.State.Pid}}' mv1)
    pid2=$(podman_ inspect --format '{{.State.Pid}}' mv2)
    ip1=$(netns_ipv4 "/proc/$pid1/ns/net" eth0)
    ip2=$(netns_ipv4 "/proc/$pid2/ns/net" eth0)
    [[ $ip1 == 192.0.2.* ]] && [ "${ip1##*.}" -ge 128 ] || die "mv1 address '$ip1' not from the ip range"
    [ "$ip1" != "$ip2" ] || die "both containers got $ip1"
    in_node_mnt nsenter --net="/proc/$pid1/ns/net" ip -d -o link show dev eth0 | grep -q 'macvlan mode bridge' ||
        die "mv1's eth0 is not a macvlan link in bridge mode"

    assert_no_nat "$pid1" "$ip1" "$pid2" "$ip2"

    podman_ rm -f -t 0 mv1 mv2 >/dev/null
    [ -z "$(find "$E2E_TMP/cnicache/networks/$MACVLAN_NET" -type f -name '192.0.2.*' 2>/dev/null)" ] ||
        die "host-local reservations left after podman rm"
    [ -z "$(grep -rlF "$id1" "$E2E_TMP/cnicache/results" 2>/dev/null)" ] || die "libcni cache entry left for mv1"
    podman_ network rm "$MACVLAN_NET" >/dev/null
}

# A network created with DNS (Podman's default): its conflist chains our dnsname, and containers
# on it resolve each other by name and --network-alias through the dnsmasq on their bridge, bare
# and under dns.podman; a container on another network does not. Lookups with Debian's dig from
# the containers' namespaces at the server their resolv.conf names; HTTP by name with the image's
# own resolver.
@test "podman network create with DNS: db and web find each other by name; rm takes the name; the last rm stops dnsmasq" {
    podman_ network create --subnet 10.244.41.0/24 "$DNS_NET" >/dev/null
    podman_ network create --subnet 10.244.42.0/24 "$OTHER_NET" >/dev/null
    local conf=$PODMAN_DIR/net.d/$DNS_NET.conflist
    node -e 'const c=JSON.parse(require("fs").readFileSync(process.argv[1]));process.exit(c.plugins.some(p=>p.type==="dnsname"&&p.domainName==="dns.podman")?0:1)' "$conf" ||
        die "podman wrote no dnsname plugin into $conf"
    podman_ network ls --format '{{.Name}}' | grep -qx "$DNS_NET" || die "podman does not list $DNS_NET"

    podman_ run -d --name db --network "$DNS_NET" "$E2E_IMAGE_NAME" >/dev/null
    podman_ run -d --name web --network "$DNS_NET" --network-alias www "$E2E_IMAGE_NAME" >/dev/null
    podman_ run -d --name stranger --network "$OTHER_NET" "$E2E_IMAGE_NAME" >/dev/null
    local pid_db pid_web pid_stranger ip_db ip_web gw=10.244.41.1 resolv
    pid_db=$(podman_ inspect --format '{{.State.Pid}}' db)
    pid_web=$(podman_ inspect --format '{{.State.Pid}}' web)
    pid_stranger=$(podman_ inspect --format '{{.State.Pid}}' stranger)
    ip_db=$(netns_ipv4 "/proc/$pid_db/ns/net" eth0)
    ip_web=$(netns_ipv4 "/proc/$pid_web/ns/net" eth0)

    resolv=$(podman_ exec web cat /etc/resolv.conf)
    grep -qx "nameserver $gw" <<<"$resolv" || die "web's resolv.conf does not name $gw: $resolv"
    grep -q "^search.*dns.podman" <<<"$resolv" || die "web's resolv.conf does not search dns.podman: $resolv"

    lookup() { in_node_mnt nsenter --net="/proc/$1/ns/net" dig +short +time=2 +tries=3 "@$2" "$3"; }
    [ "$(lookup "$pid_web" $gw db)" = "$ip_db" ] || die "web: db does not resolve to $ip_db"
    [ "$(lookup "$pid_web" $gw db.dns.podman)" = "$ip_db" ] || die "web: db.dns.podman does not resolve"
    [ "$(lookup "$pid_db" $gw www.dns.podman)" = "$ip_web" ] || die "db: the alias www does not resolve to $ip_web"
    [ "$(lookup "$pid_db" $gw web)" = "$ip_web" ] || die "db: web does not resolve"
    # The image's own resolver (busybox nslookup, reading the container's resolv.conf) finds db too,
    # and db answers HTTP from web at the address the name gave.
    podman_ exec web nslookup db | grep -qx "Address: $ip_db" || die "web's own resolver does not find db"
    in_web() { in_node_mnt nsenter --net="/proc/$pid_web/ns/net" curl -sS --fail --max-time 2 "$1"; }
    local body
    wait_for in_web "http://$(lookup "$pid_web" $gw db)/cgi-bin/peer"
    body=$(in_web "http://$(lookup "$pid_web" $gw db)/cgi-bin/peer")
    [ "$body" = "$ip_web" ] || die "db saw web as '$body', expected $ip_web"
    # A container in web's namespace (its own httpd could not bind there: it sleeps) shares web's resolver.
    podman_ run -d --name side --network container:web "$E2E_IMAGE_NAME" sleep 300 >/dev/null
    podman_ exec side nslookup db | grep -qx "Address: $ip_db" || die "side (container:web) does not find db"
    podman_ rm -f -t 0 side >/dev/null
    # Another network's server does not know them.
    [ -z "$(lookup "$pid_stranger" 10.244.42.1 db.dns.podman)" ] || die "stranger resolves db"

    local pidfile=/run/containers/cni/dnsname/$DNS_NET/pidfile dnsmasq
    dnsmasq=$(in_node_mnt cat "$pidfile")
    podman_ rm -f -t 0 db >/dev/null
    [ -z "$(lookup "$pid_web" $gw db.dns.podman)" ] || die "db still resolves after podman rm db"
    # Running: not gone, and not a zombie (the machine's init may be slow to reap an orphan).
    running() { [ -r "/proc/$1/stat" ] && ! grep -q ') Z ' "/proc/$1/stat"; }
    running "$dnsmasq" || die "dnsmasq stopped while web is still there"
    podman_ rm -f -t 0 web >/dev/null
    ! running "$dnsmasq" || die "dnsmasq $dnsmasq still runs after the network's last container"
    in_node_mnt test ! -e "/run/containers/cni/dnsname/$DNS_NET" || die "the network's dnsname files are left"
    podman_ rm -f -t 0 stranger >/dev/null
    podman_ network rm "$DNS_NET" "$OTHER_NET" >/dev/null
}

# Two networks created with --opt isolate=true: Podman's CNI backend writes our firewall with
# ingressPolicy same-bridge into both conflists, and containers on one cannot reach the other's
# (ping and TCP, both ways), while each still reaches its gateway, its neighbours, the external host
# (masqueraded: it sees the node's address) and the other network's published port through the
# node's address (DNATed connections are exempt from isolation, as with netavark).
@test "podman network create --opt isolate=true: networks are cut off from each other, not from the rest" {
    podman_ network create --disable-dns --opt isolate=true --subnet 10.244.43.0/24 "$ISO_A" >/dev/null
    podman_ network create --disable-dns --opt isolate=true --subnet 10.244.44.0/24 "$ISO_B" >/dev/null
    local net pid
    for net in "$ISO_A" "$ISO_B"; do
        node -e 'const c=JSON.parse(require("fs").readFileSync(process.argv[1]));process.exit(c.plugins.some(p=>p.type==="firewall"&&p.ingressPolicy==="same-bridge")?0:1)' "$PODMAN_DIR/net.d/$net.conflist" ||
            die "podman wrote no firewall with ingressPolicy same-bridge into $net's conflist"
        podman_ network ls --format '{{.Name}}' | grep -qx "$net" || die "podman does not list $net"
    done

    podman_ run -d --name a1 --network "$ISO_A" "$E2E_IMAGE_NAME" >/dev/null
    podman_ run -d --name a2 --network "$ISO_A" "$E2E_IMAGE_NAME" >/dev/null
    podman_ run -d --name b1 --network "$ISO_B" -p "$ISO_PORT:80" "$E2E_IMAGE_NAME" >/dev/null
    local pid_a1 pid_a2 pid_b1 ip_a1 ip_a2 ip_b1 body
    pid_a1=$(podman_ inspect --format '{{.State.Pid}}' a1)
    pid_a2=$(podman_ inspect --format '{{.State.Pid}}' a2)
    pid_b1=$(podman_ inspect --format '{{.State.Pid}}' b1)
    ip_a1=$(netns_ipv4 "/proc/$pid_a1/ns/net" eth0)
    ip_a2=$(netns_ipv4 "/proc/$pid_a2/ns/net" eth0)
    ip_b1=$(netns_ipv4 "/proc/$pid_b1/ns/net" eth0)

    pings() { in_node_mnt nsenter --net="/proc/$1/ns/net" busybox ping -c 1 -W 1 "$2" >/dev/null 2>&1; }
    get() { in_node_mnt nsenter --net="/proc/$1/ns/net" curl -sS --fail --max-time 2 "$2"; }
    local www
    www=$(e2e_www)
    in_ext_mnt_bg busybox httpd -f -p "$EXT_ADDR:80" -h "$www" &

    # What stays open, first (the servers are up once these answer).
    wait_for get "$pid_a2" "http://$ip_a1/cgi-bin/peer"
    [ "$(get "$pid_a2" "http://$ip_a1/cgi-bin/peer")" = "$ip_a2" ] || die "a1 saw its neighbour a2 by another address"
    pings "$pid_a1" "$ip_a2" || die "a1 cannot ping its neighbour a2"
    pings "$pid_a1" 10.244.43.1 || die "a1 cannot ping its gateway"
    pings "$pid_b1" 10.244.44.1 || die "b1 cannot ping its gateway"
    for pid in "$pid_a1" "$pid_b1"; do
        wait_for get "$pid" "http://$EXT_ADDR/cgi-bin/peer"
        [ "$(get "$pid" "http://$EXT_ADDR/cgi-bin/peer")" = "$NODE_ADDR" ] ||
            die "the external host did not see the node's address (no masquerade)"
    done
    # b1's published port, through the node's address, from the other isolated network.
    wait_for get "$pid_a1" "http://$NODE_ADDR:$ISO_PORT/cgi-bin/peer"
    body=$(get "$pid_a1" "http://$NODE_ADDR:$ISO_PORT/cgi-bin/peer")
    # a1's network masquerades what leaves its subnet (the bridge's ipMasq), so b1 sees its own gateway.
    [ "$body" = 10.244.44.1 ] || die "b1 saw a1 through its published port as '$body', expected 10.244.44.1"
    body=$(http_get_from_ext "http://$NODE_ADDR:$ISO_PORT/cgi-bin/peer")
    assert_peer_is_ext "$body"

    # What isolation cuts: each container address of the other network, both ways, ping and TCP.
    ! pings "$pid_a1" "$ip_b1" || die "a1 pings b1 across isolated networks"
    ! pings "$pid_b1" "$ip_a1" || die "b1 pings a1 across isolated networks"
    ! get "$pid_a1" "http://$ip_b1/cgi-bin/peer" >/dev/null 2>&1 || die "a1 connects to b1 across isolated networks"
    ! get "$pid_b1" "http://$ip_a1/cgi-bin/peer" >/dev/null 2>&1 || die "b1 connects to a1 across isolated networks"

    podman_ rm -f -t 0 a1 a2 b1 >/dev/null
    podman_ network rm "$ISO_A" "$ISO_B" >/dev/null
}
