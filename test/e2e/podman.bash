# Podman helpers for the e2e tests: Podman 4 with the CNI network backend, run inside the sandbox
# (node netns and the private mount namespace, which gives it a private /run and /var/lib/cni),
# with storage, config and network configs in the sandbox's temp dir.

podman_setup() {
    export PODMAN_DIR=$E2E_TMP/podman
    mkdir -p "$PODMAN_DIR"/{root,tmp,net.d}
    # Without CAP_SYS_RESOURCE Podman's default ulimits (above the current hard limits) cannot be set:
    # use the current ones. Podman itself lowers its RLIMIT_NPROC to 32768 at start (seen with
    # strace), and the container's runtime inherits that, so nproc may not exceed it either.
    local nproc_soft nproc_hard
    nproc_soft=$(ulimit -Su) nproc_hard=$(ulimit -Hu)
    [ "$nproc_soft" = unlimited ] || [ "$nproc_soft" -gt 32768 ] && nproc_soft=32768
    [ "$nproc_hard" = unlimited ] || [ "$nproc_hard" -gt 32768 ] && nproc_hard=32768
    cat >"$PODMAN_DIR/containers.conf" <<TOML
[containers]
default_ulimits = ["nofile=$(ulimit -Sn):$(ulimit -Hn)", "nproc=$nproc_soft:$nproc_hard"]
log_driver = "k8s-file"

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$PODMAN_DIR/events.log"
runtime = "runc"
tmp_dir = "$PODMAN_DIR/tmp"

[network]
network_backend = "cni"
cni_plugin_dirs = ["/opt/cni/bin"]
network_config_dir = "$PODMAN_DIR/net.d"
TOML
}

# Storage in the sandbox's temp dir; overlay unless E2E_PODMAN_STORAGE says otherwise (the
# User-Mode Linux stage uses vfs: its root file system is hostfs, which overlay cannot build on).
podman_() {
    in_node_mnt env CONTAINERS_CONF="$PODMAN_DIR/containers.conf" CONTAINERS_REGISTRIES_CONF=/dev/null \
        podman --root "$PODMAN_DIR/root" --runroot /run/tscni-e2e-podman --storage-driver "${E2E_PODMAN_STORAGE:-overlay}" "$@"
}
