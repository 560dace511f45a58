#!/usr/bin/env bash
# The end-to-end tests' Debian packages (containerd, Podman, busybox-static, curl, ...) are in the
# one list, the package list in test/setup.sh, which test/setup.sh installs before the first stage; this
# only makes sure they are there when the e2e tests are run alone. Installed daemons are not
# started: the tests start their own, inside sandbox namespaces.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
bash "$root/test/setup.sh" --packages-for test
