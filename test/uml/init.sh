#!/bin/sh
# PID 1 of the User-Mode Linux kernel test/uml/run.sh boots (the machine's file system as its root,
# through hostfs): a minimal system for the integration tests, then the tests, then power off.
# Its only input is the job directory run.sh made, named on the kernel command line
# (tscni_uml_job=DIR, which the kernel hands to init as an environment variable); it holds the
# working tree (cwd), the test files to run (files, one a line; pattern, their names as uvu's
# pattern), how to run them (kind: uvu or bats) and TSCNI_BIN (bin). Output goes to
# DIR/output, the exit status to DIR/status.
set -u
job=${tscni_uml_job:?tscni_uml_job not set on the kernel command line}

mount -t proc proc /proc
mount -t sysfs sysfs /sys
# A /run of its own: the plugins' state and the sandbox namespaces' /run/netns stay in this kernel.
mount -t tmpfs -o mode=0755 tmpfs /run
mkdir -p /run/netns /dev/pts /tmp
mount -t devpts devpts /dev/pts
# What a container runtime needs (the e2e files): shared memory for Podman's locks, and cgroups.
mkdir -p /dev/shm
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mount -t cgroup2 cgroup2 /sys/fs/cgroup
[ -e /dev/fd ] || ln -s /proc/self/fd /dev/fd
ip link set lo up

# modprobe -d wants DIR/lib/modules/<version>; the package keeps them under /usr/lib/uml/modules.
version=$(uname -r)
mkdir -p /run/uml-modules/lib/modules
ln -s "/usr/lib/uml/modules/$version" "/run/uml-modules/lib/modules/$version"
# veth and macvlan are modules here too: the tests wire their namespaces with veth pairs (and
# bridge, which the vrf tests chain after).
for m in veth macvlan dummy ipvlan 8021q vrf bridge; do
    modprobe -d /run/uml-modules "$m" >>"$job/output" 2>&1 || echo "init.sh: modprobe $m failed" >>"$job/output"
done

cd "$(cat "$job/cwd")" || exit 1
export TSCNI_BIN
TSCNI_BIN=$(cat "$job/bin")
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin NO_COLOR=1 FORCE_COLOR=0 HOME=/root
if [ "$(cat "$job/kind")" = bats ]; then
    # Podman's overlay storage cannot use hostfs (this kernel's root) as a layer: vfs copies.
    export E2E_PODMAN_STORAGE=vfs
    set --
    while read -r f; do set -- "$@" "test/e2e/$f"; done <"$job/files"
    bats --tap --timing "$@" >>"$job/output" 2>&1
    echo $? >"$job/status"
else
    # uvu takes one directory and one pattern: the files are matched by an anchored alternation of
    # their names (run.sh checks they are plain file names).
    pattern=$(cat "$job/pattern")
    node_modules/.bin/uvu -r tsx test/integration "$pattern" >>"$job/output" 2>&1
    echo $? >"$job/status"
fi
sync
echo o >/proc/sysrq-trigger
# Power-off is asynchronous: init must not exit (the kernel would panic) before it happens.
sleep 60
