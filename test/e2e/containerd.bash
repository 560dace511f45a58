# containerd helpers for the e2e tests: one daemon per test file, inside the sandbox (node netns and
# private mount namespace), with its root, state and socket in the sandbox's temp dir.

CTRD_NS_CTR=tscni-e2e   # containerd namespace used by ctr tests
CTRD_NS_CRI=k8s.io      # the CRI plugin's namespace

# containerd_up CRI_CONF_DIR [CONF_TEMPLATE]: writes the config (with the CRI plugin's
# conf_template when given), starts the daemon and waits for its socket.
containerd_up() {
    local cri_conf_dir=$1 conf_template=${2:-}
    export CTRD_DIR=$E2E_TMP/containerd
    export CTRD_SOCK=$CTRD_DIR/containerd.sock
    mkdir -p "$CTRD_DIR"/{root,state} "$cri_conf_dir"
    cat >"$CTRD_DIR/config.toml" <<TOML
version = 2
root = "$CTRD_DIR/root"
state = "$CTRD_DIR/state"
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing",
]

[grpc]
  address = "$CTRD_SOCK"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$E2E_IMAGE_NAME"
  # Without CAP_SYS_RESOURCE (containers here) the sandbox's oom_score_adj cannot be lowered.
  restrict_oom_score_adj = true
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/opt/cni/bin"
    conf_dir = "$cri_conf_dir"
    max_conf_num = 1
    conf_template = "$conf_template"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
TOML
    (exec nsenter --target "$E2E_HOLDER" --mount --net --root --wd -- containerd --config "$CTRD_DIR/config.toml" \
        </dev/null >"$CTRD_DIR/containerd.log" 2>&1 3>&- 4>&- 5>&- 6>&- 7>&- 8>&- 9>&-) &
    export CTRD_PID=$!
    # A busy CI machine may take a while to start the daemon and load its plugins.
    WAIT_TRIES=600 wait_for test -S "$CTRD_SOCK"
    WAIT_TRIES=600 wait_for ctr_ version
}

# ctr against the sandbox's daemon, run in the sandbox (ctr itself runs the CNI plugins for --cni).
ctr_() {
    in_node_mnt ctr --address "$CTRD_SOCK" --namespace "$CTRD_NS_CTR" "$@"
}

# ctr in the CRI plugin's containerd namespace (where CRI looks for the sandbox image).
ctr_cri() {
    in_node_mnt ctr --address "$CTRD_SOCK" --namespace "$CTRD_NS_CRI" "$@"
}

# The CRI client (test/e2e/cri/client.ts); it only needs the socket, so it runs outside the sandbox.
cri() {
    "$REPO/node_modules/.bin/tsx" "$E2E_DIR/cri/client.ts" "$CTRD_SOCK" "$@"
}

containerd_down() {
    local -
    set +e
    if [ -n "${CTRD_PID:-}" ]; then
        kill "$CTRD_PID" 2>/dev/null
        local i
        for i in $(seq 50); do kill -0 "$CTRD_PID" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$CTRD_PID" 2>/dev/null
    fi
    # Shims outlive the daemon on purpose; end the ones this daemon started (they name its socket).
    local pid
    for pid in $(pgrep -f "containerd-shim-runc-v2 .*-address $CTRD_SOCK" || true); do
        kill -9 "$pid" 2>/dev/null
    done
    return 0
}
