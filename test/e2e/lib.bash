# Shared helpers for the end-to-end tests (sourced by test/e2e/*.bats).
#
# Every test file gets its own sandbox:
#   - a "node" network namespace where runtimes, plugins, bridges and iptables rules live;
#   - an "external host" namespace linked to the node by a veth pair (node 192.0.2.1, ext 192.0.2.2),
#     from which HTTP requests reach published ports;
#   - one persistent private mount namespace (held by a sleeping process, entered with nsenter) with
#     a private /run, /var/lib/cni and /etc/cni/net.d redirected to the sandbox's temp dir, our
#     plugin directory mounted on /opt/cni/bin and /usr/lib/cni (Debian's Go plugins) hidden, so a
#     plugin we lack can never be silently replaced by the reference one.
# Nothing is created in the machine's own network namespace.

E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$E2E_DIR/../.." && pwd)
# The plugin directory under test: our build unless TSCNI_E2E_BIN (or TSCNI_BIN) says otherwise.
E2E_BIN=$(cd "${TSCNI_E2E_BIN:-${TSCNI_BIN:-$REPO/dist/bin}}" && pwd)
E2E_IMAGE_NAME=localhost/tscni-e2e/busybox:latest
NODE_ADDR=192.0.2.1
EXT_ADDR=192.0.2.2

# Fails the current test with a message (bats shows stderr of failing tests).
die() {
    echo "$*" >&2
    return 1
}

# Sets up the sandbox; call from setup_file. Exports E2E_TMP, E2E_NODE, E2E_EXT, E2E_HOLDER.
e2e_sandbox_up() {
    local label=$1 id ifname
    id=$(printf '%08x%04x' $$ "$RANDOM")
    ifname=e2e${id: -8}
    export E2E_TMP
    E2E_TMP=$(mktemp -d "/tmp/tscni-e2e-$label.XXXXXX")
    export E2E_NODE=tc-e2e-$label-node-$id E2E_EXT=tc-e2e-$label-ext-$id
    ip netns add "$E2E_NODE"
    ip netns add "$E2E_EXT"
    ip -n "$E2E_NODE" link set lo up
    ip -n "$E2E_EXT" link set lo up
    export E2E_EXT_IF=$ifname
    ip link add "$ifname" netns "$E2E_NODE" type veth peer name eth0 netns "$E2E_EXT"
    ip -n "$E2E_NODE" addr add $NODE_ADDR/24 dev "$ifname"
    ip -n "$E2E_NODE" link set "$ifname" up
    ip -n "$E2E_EXT" addr add $EXT_ADDR/24 dev eth0
    ip -n "$E2E_EXT" link set eth0 up

    mkdir -p "$E2E_TMP"/{netconf,cnicache,empty,run,opt} /var/lib/cni /etc/cni/net.d /opt
    # The holder: a process living in the node netns and a fresh private mount namespace.
    nsenter --net="/run/netns/$E2E_NODE" unshare --mount --propagation private sleep infinity \
        </dev/null >/dev/null 2>&1 3>&- 4>&- 5>&- 6>&- 7>&- 8>&- 9>&- &
    export E2E_HOLDER=$!
    echo "$E2E_HOLDER" >"$E2E_TMP/holder.pid"
    local i
    for i in $(seq 100); do
        [ "$(readlink "/proc/$E2E_HOLDER/ns/mnt")" != "$(readlink /proc/self/ns/mnt)" ] && break
        sleep 0.05
    done
    [ "$(readlink "/proc/$E2E_HOLDER/ns/mnt")" != "$(readlink /proc/self/ns/mnt)" ] || die "mount namespace holder did not start"
    in_node_mnt mount -t tmpfs -o mode=0755 tmpfs /run
    in_node_mnt mkdir -p /run/netns /run/lock
    in_node_mnt mount -t tmpfs -o mode=0755 tmpfs /opt
    in_node_mnt mkdir -p /opt/cni/bin
    in_node_mnt mount --bind "$E2E_BIN" /opt/cni/bin
    in_node_mnt mount --bind "$E2E_TMP/empty" /usr/lib/cni
    in_node_mnt mount --bind "$E2E_TMP/cnicache" /var/lib/cni
    in_node_mnt mount --bind "$E2E_TMP/netconf" /etc/cni/net.d
}

# Runs a command in the node network namespace and the sandbox's private mount namespace, with the
# holder's root and working directory (entering a mount namespace otherwise lands at its real root,
# outside a chroot the tests may run in).
in_node_mnt() {
    nsenter --target "$E2E_HOLDER" --mount --net --root --wd -- "$@"
}

# The same, for a long-running process started in the background: `in_node_mnt_bg CMD... &` leaves
# in $! the pid of CMD itself (nsenter execs it), not of a subshell, with no fd held open for bats.
in_node_mnt_bg() {
    exec nsenter --target "$E2E_HOLDER" --mount --net --root --wd -- "$@" </dev/null >/dev/null 2>&1 3>&- 4>&- 5>&- 6>&- 7>&- 8>&- 9>&-
}

# Runs a command in the node network namespace only (the machine's mounts).
in_node() {
    nsenter --net="/run/netns/$E2E_NODE" -- "$@"
}

in_ext() {
    nsenter --net="/run/netns/$E2E_EXT" -- "$@"
}

# Runs a command in the external host's netns and the sandbox's mount namespace (so that sandbox
# teardown ends it if it is a server). nsenter opens both namespace files before entering either.
in_ext_mnt() {
    nsenter --mount="/proc/$E2E_HOLDER/ns/mnt" --root="/proc/$E2E_HOLDER/root" --wd="/proc/$E2E_HOLDER/cwd" --net="/run/netns/$E2E_EXT" -- "$@"
}
in_ext_mnt_bg() {
    exec nsenter --mount="/proc/$E2E_HOLDER/ns/mnt" --root="/proc/$E2E_HOLDER/root" --wd="/proc/$E2E_HOLDER/cwd" --net="/run/netns/$E2E_EXT" -- "$@" </dev/null >/dev/null 2>&1 3>&- 4>&- 5>&- 6>&- 7>&- 8>&- 9>&-
}

# A web root with /cgi-bin/peer (answers the client's address), for servers run from the host's
# busybox inside namespaces (the image has the same one).
e2e_www() {
    local www=$E2E_TMP/www
    if [ ! -x "$www/cgi-bin/peer" ]; then
        mkdir -p "$www/cgi-bin"
        cat >"$www/cgi-bin/peer" <<'CGI'
#!/bin/sh
printf 'Content-Type: text/plain\r\n\r\n%s\n' "$REMOTE_ADDR"
CGI
        chmod 0755 "$www/cgi-bin/peer"
    fi
    echo "$www"
}

# start_httpd NSPATH ADDR:PORT: busybox httpd in the network namespace at NSPATH (inside the
# sandbox's mount namespace); prints its pid.
start_httpd() {
    local nspath=$1 listen=$2 www
    www=$(e2e_www)
    in_node_mnt_bg nsenter --net="$nspath" busybox httpd -f -p "$listen" -h "$www" &
    echo $!
}

# The processes this sandbox started: those in its private mount namespace (the holder, daemons,
# shims, conmon) and their descendants (container processes, which live in mount namespaces of
# their own). Only the sandbox can see that namespace, so nothing else matches.
e2e_sandbox_pids() {
    local -
    set +e
    local mnt
    mnt=$(readlink "/proc/$E2E_HOLDER/ns/mnt" 2>/dev/null) || return 0
    local -A ours=() parent=()
    local p pid stat rest
    for p in /proc/[0-9]*; do
        pid=${p#/proc/}
        stat=$(cat "$p/stat" 2>/dev/null) || continue
        rest=${stat##*) }          # fields after "(comm) ": state ppid ...
        rest=${rest#* }
        parent[$pid]=${rest%% *}
        [ "$(readlink "$p/ns/mnt" 2>/dev/null)" = "$mnt" ] && ours[$pid]=1
    done
    local grew=1
    while [ $grew = 1 ]; do
        grew=0
        for pid in "${!parent[@]}"; do
            if [ -z "${ours[$pid]:-}" ] && [ -n "${ours[${parent[$pid]}]:-}" ]; then
                ours[$pid]=1
                grew=1
            fi
        done
    done
    echo "${!ours[@]}"
}

# Ends every process the sandbox started (see e2e_sandbox_pids): TERM, then KILL what is left.
e2e_kill_sandbox_processes() {
    local -
    set +e # teardown: a process that ends between listing and kill is no failure
    [ -n "${E2E_HOLDER:-}" ] || return 0
    local pids sig i p alive
    read -r -a pids <<<"$(e2e_sandbox_pids)"
    [ ${#pids[@]} -gt 0 ] || return 0
    for sig in TERM KILL; do
        kill -s "$sig" "${pids[@]}" 2>/dev/null
        for i in $(seq 30); do
            alive=()
            for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive+=("$p"); done
            [ ${#alive[@]} -eq 0 ] && return 0
            pids=("${alive[@]}")
            sleep 0.1
        done
    done
    return 0
}

# Tears the sandbox down; call from teardown_file.
e2e_sandbox_down() {
    local -
    set +e
    e2e_kill_sandbox_processes
    [ -n "${E2E_NODE:-}" ] && ip netns del "$E2E_NODE" 2>/dev/null
    [ -n "${E2E_EXT:-}" ] && ip netns del "$E2E_EXT" 2>/dev/null
    if [ -n "${E2E_TMP:-}" ] && [ -d "$E2E_TMP" ]; then
        # Mounts made inside the sandbox went away with its mount namespace; what is left are files.
        rm -rf "$E2E_TMP" 2>/dev/null || { chmod -R u+w "$E2E_TMP" 2>/dev/null; rm -rf "$E2E_TMP"; }
    fi
    return 0
}

# The image tarball, built once per test file.
e2e_image() {
    local tar=$E2E_TMP/busybox-oci.tar
    [ -f "$tar" ] || bash "$E2E_DIR/image.sh" "$tar" "$E2E_IMAGE_NAME"
    echo "$tar"
}

# HTTP GET from the external host; prints the body. Retries briefly while a server starts.
http_get_from_ext() {
    local url=$1 i out
    for i in $(seq 50); do
        if out=$(in_ext curl -sS --fail --max-time 2 "$url" 2>/dev/null); then
            printf '%s\n' "$out"
            return 0
        fi
        sleep 0.2
    done
    die "GET $url from the external host failed"
}

# GET from inside the network namespace of process PID; prints the body, with a client address that
# busybox httpd reports v4-mapped given bare.
get_from_container() {
    local out
    out=$(in_node_mnt nsenter --net="/proc/$1/ns/net" curl -sS --fail --max-time 2 "$2") || return 1
    sed -e 's/^\[\?::ffff:\([0-9.]*\)\]\?$/\1/' <<<"$out"
}

# assert_no_nat PID_A IP_A PID_B IP_B: the external host sees container A by its own address, and A
# sees container B by B's (no NAT on either path). Needs a /cgi-bin/peer server on the external host
# (e2e_www) and in A (the image's).
assert_no_nat() {
    local pid_a=$1 ip_a=$2 pid_b=$3 ip_b=$4 body
    wait_for get_from_container "$pid_a" "http://$EXT_ADDR/cgi-bin/peer"
    body=$(get_from_container "$pid_a" "http://$EXT_ADDR/cgi-bin/peer")
    [ "$body" = "$ip_a" ] || die "the external host saw $ip_a as '$body'"
    wait_for get_from_container "$pid_b" "http://$ip_a/cgi-bin/peer"
    body=$(get_from_container "$pid_b" "http://$ip_a/cgi-bin/peer")
    [ "$body" = "$ip_b" ] || die "$ip_a saw $ip_b as '$body'"
}

# Waits until a command succeeds (at most WAIT_TRIES tenths of a second, default 100).
wait_for() {
    local i
    for i in $(seq "${WAIT_TRIES:-100}"); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    die "timed out waiting for: $*"
}

# A JSON field from stdin: json_get '.a.b' (a tiny jq; node is always here).
json_get() {
    node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{let v=JSON.parse(s);for(const k of process.argv[1].split(".").filter(Boolean))v=v?.[k];process.stdout.write(v===undefined?"":typeof v==="string"?v:JSON.stringify(v))})' "$1"
}

# The IPv4 address (without prefix) of IFNAME in the network namespace at NSPATH.
netns_ipv4() {
    local nspath=$1 ifname=$2
    in_node_mnt nsenter --net="$nspath" ip -4 -o addr show dev "$ifname" | awk '{print $4}' | cut -d/ -f1 | head -n1
}

# Asserts that `lo` is up in the network namespace at NSPATH (the loopback plugin ran).
assert_lo_up() {
    in_node_mnt nsenter --net="$1" ip -o link show dev lo | grep -q '[<,]UP[,>]' || die "lo is not up in $1"
}

# Asserts that the body of a GET through a published port names the external host: the container
# saw the client's real address, not a masqueraded one. busybox httpd may report it v4-mapped.
assert_peer_is_ext() {
    local body=$1
    case "$body" in
    "$EXT_ADDR" | "[::ffff:$EXT_ADDR]" | "::ffff:$EXT_ADDR") ;;
    *) die "container saw the client as '$body', expected $EXT_ADDR" ;;
    esac
}

# Asserts that the sandbox node holds nothing of container ID with address IP any more: no veth
# besides the external host's link, no iptables or nftables rule naming the ID or the IP, no
# host-local reservation under DATADIR, no libcni cache entry. (Bridges and the shared portmap
# chains stay by design, as with the reference plugins.)
assert_nothing_left() {
    local id=$1 ip=$2 datadir=$3 out
    out=$(in_node ip -o link show type veth | grep -v "$E2E_EXT_IF" || true)
    [ -z "$out" ] || die "veth left on the node: $out"
    out=$({ in_node iptables-save; in_node ip6tables-save; } 2>/dev/null | grep -F -e "$id" -e "$ip/" -e "$ip:" -e "$ip " || true)
    [ -z "$out" ] || die "iptables rules left: $out"
    out=$(in_node nft list ruleset 2>/dev/null | grep -F -e "$id" -e "$ip " || true)
    [ -z "$out" ] || die "nftables rules left: $out"
    if [ -d "$datadir" ]; then
        out=$(find "$datadir" -type f -name "$ip"; grep -rlF "$id" "$datadir" 2>/dev/null || true)
        [ -z "$out" ] || die "IP reservation left: $out"
    fi
    out=$(grep -rlF "$id" "$E2E_TMP/cnicache/results" 2>/dev/null || true)
    [ -z "$out" ] || die "libcni cache entry left: $out"
}

# Asserts that what runs is the suite under test and nothing else: /opt/cni/bin in the sandbox is
# E2E_BIN, E2E_BIN's plugins are links of our one multicall executable, and Debian's Go plugins in
# /usr/lib/cni (where Debian's containerd also looks) are hidden.
assert_only_plugins_under_test() {
    local hidden p
    hidden=$(in_node_mnt ls -A /usr/lib/cni)
    [ -z "$hidden" ] || die "/usr/lib/cni is visible to the runtimes: $hidden"
    [ -x "$E2E_BIN/tscni" ] || die "$E2E_BIN is not a tscni build (no tscni executable)"
    for p in bridge host-local portmap loopback firewall tuning; do
        [ "$(in_node_mnt stat -L -c %d:%i "/opt/cni/bin/$p")" = "$(stat -L -c %d:%i "$E2E_BIN/$p")" ] ||
            die "/opt/cni/bin/$p in the sandbox is not $E2E_BIN/$p"
        [ "$(stat -L -c %d:%i "$E2E_BIN/$p")" = "$(stat -L -c %d:%i "$E2E_BIN/tscni")" ] ||
            die "$E2E_BIN/$p is not our multicall executable"
    done
}
