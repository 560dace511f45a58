#!/usr/bin/env bash
# npm run bench [-- --quick] [--bin DIR] [--ref DIR] [--out FILE] [--no-datapath] [--no-overlay]
# The benchmark is TypeScript run by tsx: make sure node_modules exist, then hand over to bench/run.ts,
# which sets up the rest (build, libcni client, worker) itself.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ ! -x "$root/node_modules/.bin/tsx" ]; then
    (cd "$root" && npm ci --no-audit --no-fund)
fi
# Packages first, in the machine's namespace; then the run in a mount namespace with a private /run
# (test/private-run.sh), so the plugins' fixed state paths (/run/tscni, /run/cni) are the
# benchmark's own and vanish with it, as in the integration tests.
bash "$root/test/setup.sh" --packages-for bench
exec "$root/test/private-run.sh" "$root/node_modules/.bin/tsx" "$root/bench/run.ts" "$@"
