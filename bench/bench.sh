#!/usr/bin/env bash
# npm run bench [-- --quick] [--bin DIR] [--ref DIR] [--out FILE] [--no-datapath]
# The benchmark is TypeScript run by tsx: make sure node_modules exist, then hand over to bench/run.ts,
# which installs the rest (packages, build, libcni client) itself.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ ! -x "$root/node_modules/.bin/tsx" ]; then
    (cd "$root" && npm ci --no-audit --no-fund)
fi
exec "$root/node_modules/.bin/tsx" "$root/bench/run.ts" "$@"
