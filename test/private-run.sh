#!/usr/bin/env bash
# Runs a command (an integration run) in a mount namespace of its own whose /run is a fresh tmpfs:
# the plugins keep fixed state paths there (/run/tscni attachment locks and notices, /run/cni
# tuning originals, the xtables lock) and the sandbox namespaces are bound under /run/netns, and a
# test must not write the machine's. All of it is gone when the command ends.
#
#   test/private-run.sh ./node_modules/.bin/uvu -r tsx test/integration [pattern]
set -euo pipefail
if [ "${TSCNI_PRIVATE_RUN:-}" != 1 ]; then
    # Propagation private: nothing mounted inside (netns bind mounts included) reaches the machine.
    exec unshare --mount --propagation private env TSCNI_PRIVATE_RUN=1 "$0" "$@"
fi
mount -t tmpfs -o mode=0755,size=64m tscni-test-run /run
exec "$@"
