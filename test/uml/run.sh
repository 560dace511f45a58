#!/usr/bin/env bash
# The User-Mode Linux stages: run the test files listed in test/uml/files.txt (those needing link
# kinds this kernel lacks: ipvlan, 802.1Q vlan, dummy, vrf) inside Debian's user-mode-linux kernel,
# which has them as modules: integration files (name.test.ts, under test/integration, with uvu) or,
# with --e2e, end-to-end files (name.bats, under test/e2e, with bats --tap). The kernel is an
# ordinary process with its own network stack and this machine's file system as its root (hostfs),
# so what the tests create stays inside it. test/uml/init.sh is its init; output and exit status come back through a job
# directory.
#
#   test/uml/run.sh [--e2e] [pattern]   only the listed files whose names match the pattern (grep -E)
#
# TSCNI_BIN as for the integration stage (default dist/bin); TSCNI_UML_TIMEOUT bounds the whole
# run in seconds (default 1200), so a hung kernel cannot stall CI.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
kind=uvu
if [ "${1:-}" = --e2e ]; then
    kind=bats
    shift
fi
pattern=${1:-.}
if [ $kind = bats ]; then suffix='\.bats$' dir=test/e2e; else suffix='\.test\.ts$' dir=test/integration; fi

if ! command -v linux.uml >/dev/null; then
    echo "test/uml/run.sh: linux.uml not found (Debian package user-mode-linux; bash test/setup.sh installs it)" >&2
    exit 1
fi

mapfile -t listed < <(grep -v -e '^#' -e '^[[:space:]]*$' test/uml/files.txt | grep -E -e "$suffix" || true)
if [ ${#listed[@]} -eq 0 ]; then
    echo "test/uml/run.sh: test/uml/files.txt lists no $dir file; nothing to run"
    exit 0
fi
mapfile -t files < <(printf '%s\n' "${listed[@]}" | grep -E -e "$pattern" || true)
if [ ${#files[@]} -eq 0 ]; then
    echo "test/uml/run.sh: no file in test/uml/files.txt matches '$pattern'" >&2
    exit 1
fi
# uvu takes one pattern: an anchored alternation of the names, each checked to be a plain name.
alternation=
for f in "${files[@]}"; do
    if ! [[ $f =~ ^[A-Za-z0-9._-]+$ ]] || [ ! -f "$dir/$f" ]; then
        echo "test/uml/run.sh: '$f' in test/uml/files.txt is not a file in $dir" >&2
        exit 1
    fi
    alternation+="${alternation:+|}${f//./\\.}"
done

job=$(mktemp -d /tmp/tscni-uml.XXXXXX)
trap 'rm -rf "$job"' EXIT
printf '%s\n' "$root" >"$job/cwd"
printf '%s\n' "${TSCNI_BIN:-$root/dist/bin}" >"$job/bin"
printf '^(%s)$\n' "$alternation" >"$job/pattern"
printf '%s\n' "$kind" >"$job/kind"
printf '%s\n' "${files[@]}" >"$job/files"
: >"$job/output"

echo "test/uml/run.sh: ${files[*]} in User-Mode Linux $(basename /usr/lib/uml/modules/*)"
# The kernel's own console is noise unless the run fails; the tests' output is in $job/output.
rc=0
timeout --kill-after=10 "${TSCNI_UML_TIMEOUT:-1200}" \
    linux.uml mem=1024M rootfstype=hostfs rw "init=$root/test/uml/init.sh" "tscni_uml_job=$job" \
    con=null con0=fd:0,fd:1 </dev/null >"$job/console" 2>&1 || rc=$?
cat "$job/output"
if [ ! -s "$job/status" ]; then
    echo "test/uml/run.sh: the kernel ended (exit $rc) before the tests did; its console's end:" >&2
    tail -n 30 "$job/console" >&2
    exit 1
fi
exit "$(cat "$job/status")"
