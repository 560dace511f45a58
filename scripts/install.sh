#!/usr/bin/env bash
# Installs the suite's executables into a CNI plugin directory, and optionally the example
# network configurations into a CNI configuration directory.
#
#   scripts/install.sh [options] [DIR]      DIR defaults to /opt/cni/bin
#
#   --conf            also copy conf/*.conflist into the configuration directory
#   --conf-dir DIR    configuration directory for --conf (default /etc/cni/net.d)
#   --from DIR        take the executables from DIR (default dist/bin, or $TSCNI_DIST/bin)
#   --copies          install independent copies instead of hard links to one file
#   --no-deps         do not install the runtime packages (iproute2, iptables, ...)
#
# Every executable is self-contained: any one of them also works when copied alone. Installed
# names: every plugin, cnitool and tscni-agent. Files are replaced by rename, so a runtime executing the old
# version while we install never sees a half-written file. Existing configuration files are left
# alone.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dest=/opt/cni/bin conf=0 conf_dir=/etc/cni/net.d from="" copies=0 deps=1

while [ $# -gt 0 ]; do
    case $1 in
    --conf) conf=1 ;;
    --conf-dir) conf_dir=$2; shift ;;
    --from) from=$2; shift ;;
    --copies) copies=1 ;;
    --no-deps) deps=0 ;;
    -h | --help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "install.sh: unknown option $1" >&2; exit 2 ;;
    *) dest=$1 ;;
    esac
    shift
done

# The plugins run ip, nsenter, iptables-restore, nft, sysctl and conntrack (the package list in test/setup.sh, "runtime").
if [ "$deps" -eq 1 ]; then
    bash "$root/test/setup.sh" --packages-for runtime
fi

if [ -z "$from" ]; then
    from="$root/${TSCNI_DIST:-dist}/bin"
    if [ ! -x "$from/tscni" ]; then
        echo "install.sh: no build in $from; building" >&2
        bash "$root/test/setup.sh" --demo
    fi
fi
if [ ! -x "$from/tscni" ]; then
    echo "install.sh: $from/tscni not found (run npm run build first)" >&2
    exit 1
fi

# The names to install: every hard link of the multicall executable except its own name.
inode=$(stat -c %i "$from/tscni")
names=()
for f in "$from"/*; do
    n=$(basename "$f")
    [ "$n" = tscni ] && continue
    [ -f "$f" ] && [ "$(stat -c %i "$f")" = "$inode" ] && names+=("$n")
done
if [ ${#names[@]} -eq 0 ]; then
    echo "install.sh: no plugin links found in $from" >&2
    exit 1
fi

mkdir -p "$dest"
tmp="$dest/.tscni-install.$$"
trap 'rm -f "$tmp" "$tmp".*' EXIT
cp "$from/tscni" "$tmp"
chmod 0755 "$tmp"
for n in "${names[@]}"; do
    if [ "$copies" -eq 1 ]; then
        cp "$tmp" "$tmp.$n"
    else
        ln -f "$tmp" "$tmp.$n"
    fi
    mv -f "$tmp.$n" "$dest/$n"
done
echo "installed into $dest: ${names[*]}"

if [ "$conf" -eq 1 ]; then
    mkdir -p "$conf_dir"
    for f in "$root"/conf/*.conflist; do
        target="$conf_dir/$(basename "$f")"
        if [ -e "$target" ]; then
            echo "kept existing $target"
        else
            cp "$f" "$target"
            echo "installed $target"
        fi
    done
fi
