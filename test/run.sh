#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12 machine (root) or a working tree: set-up (system
# packages, node_modules, build, libcni client), then lint (format, lint rules, import layers),
# typecheck, unit tests, integration tests in sandbox namespaces, and the end-to-end scripts. Every
# stage runs even if an earlier one failed; the exit status is non-zero if any did. A summary ends
# the output.
#
#   npm test                          # or: bash test/run.sh
#   TSCNI_DIST=dist-me bash test/run.sh    # build and test a separate tree
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

if [ "$(id -u)" -ne 0 ]; then
    echo "test/run.sh: the integration tests create network namespaces: run as root" >&2
    exit 1
fi

logs=$(mktemp -d /tmp/tscni-test-logs.XXXXXX)
export NO_COLOR=1 FORCE_COLOR=0

if ! bash test/setup.sh; then
    echo "test/run.sh: set-up failed (see above); no tests ran" >&2
    echo "0 passed, 1 failed"
    exit 1
fi
export TSCNI_BIN="$root/${TSCNI_DIST:-dist}/bin"
TSCNI_LIBCNI_CLIENT=$(bash test/setup.sh --libcni-client-path)
export TSCNI_LIBCNI_CLIENT

stages=()
declare -A status passed failed skipped seconds

strip_ansi() { sed -e 's/\x1b\[[0-9;]*[A-Za-z]//g'; }

# run_stage NAME KIND COMMAND...: KIND says how to count (uvu, tap, check).
run_stage() {
    local name=$1 kind=$2
    shift 2
    local log="$logs/$name.log" start rc
    stages+=("$name")
    printf '\n=== %s: %s\n' "$name" "$*"
    start=$(date +%s)
    "$@" 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    seconds[$name]=$(($(date +%s) - start))
    status[$name]=$rc
    local clean
    clean=$(strip_ansi <"$log")
    case $kind in
    uvu)
        local total pass skip
        total=$(grep -Eo '^ *Total: +[0-9]+' <<<"$clean" | grep -Eo '[0-9]+' | tail -1)
        pass=$(grep -Eo '^ *Passed: +[0-9]+' <<<"$clean" | grep -Eo '[0-9]+' | tail -1)
        skip=$(grep -Eo '^ *Skipped: +[0-9]+' <<<"$clean" | grep -Eo '[0-9]+' | tail -1)
        passed[$name]=${pass:-0}
        skipped[$name]=${skip:-0}
        # uvu's Total counts the tests that ran: skipped ones are outside it.
        failed[$name]=$((${total:-0} - ${pass:-0}))
        # A crash before uvu's totals (a file that does not load) still counts as a failure.
        if [ "$rc" -ne 0 ] && [ "${failed[$name]}" -le 0 ]; then failed[$name]=1; fi
        ;;
    tap)
        passed[$name]=$(grep -Ec '^ok ' <<<"$clean")
        failed[$name]=$(grep -Ec '^not ok ' <<<"$clean")
        skipped[$name]=$(grep -Ec '^ok .*# skip' <<<"$clean")
        passed[$name]=$((passed[$name] - skipped[$name]))
        if [ "$rc" -ne 0 ] && [ "${failed[$name]}" -eq 0 ]; then failed[$name]=1; fi
        ;;
    check)
        if [ "$rc" -eq 0 ]; then passed[$name]=1 failed[$name]=0; else passed[$name]=0 failed[$name]=1; fi
        skipped[$name]=0
        ;;
    esac
}

bin=$root/node_modules/.bin
run_stage lint check npm run --silent lint
run_stage typecheck check "$bin/tsc" --noEmit -p .
run_stage unit uvu "$bin/uvu" -r tsx test/unit
# Integration files run one after another in one process (uvu runs suites sequentially), with a
# /run of their own (test/private-run.sh); the bound only stops a hung kernel call from stalling
# CI forever.
run_stage integration uvu timeout --kill-after=30 2400 test/private-run.sh "$bin/uvu" -r tsx test/integration
# The files that need link kinds this kernel lacks (they skip in the stage above) run again in
# User-Mode Linux, whose kernel has them; test/uml/run.sh bounds its own run.
run_stage uml uvu bash test/uml/run.sh
if [ -n "$(find test/e2e -name '*.bats' 2>/dev/null | head -1)" ]; then
    # The runtimes (containerd, Podman) and their tools are only needed by the e2e stage.
    bash test/e2e/setup.sh || echo "test/run.sh: e2e set-up failed; the e2e stage will report it" >&2
    run_stage e2e tap timeout --kill-after=30 2400 bats --tap -r test/e2e
    # The e2e files that need link kinds this kernel lacks (they skip above), inside User-Mode Linux.
    run_stage uml-e2e tap bash test/uml/run.sh --e2e
fi

total_pass=0 total_fail=0 total_skip=0 overall=0
printf '\n=== summary\n'
for s in "${stages[@]}"; do
    mark=ok
    if [ "${status[$s]}" -ne 0 ]; then mark=FAILED overall=1; fi
    printf '%-12s %-7s %4d passed, %d failed, %d skipped  (%ss)\n' "$s" "$mark" "${passed[$s]}" "${failed[$s]}" "${skipped[$s]}" "${seconds[$s]}"
    total_pass=$((total_pass + passed[$s]))
    total_fail=$((total_fail + failed[$s]))
    total_skip=$((total_skip + skipped[$s]))
done
echo "logs: $logs"
if [ "$overall" -ne 0 ] && [ "$total_fail" -eq 0 ]; then total_fail=1; fi
echo "$total_pass passed, $total_fail failed, $total_skip skipped"
exit $overall
