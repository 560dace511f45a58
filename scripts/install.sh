#!/usr/bin/env bash
# Installs the suite's executables into a CNI plugin directory, and optionally network
# configurations into a CNI configuration directory.
#
#   scripts/install.sh [options] [DIR]      DIR defaults to /opt/cni/bin
#
#   --conf            also copy the single-node example configs (conf/*.conflist except the
#                     overlay's 10-tscni-flannel.conflist) into the configuration directory
#   --overlay         for a node of the overlay (tscni-agent): copy conf/10-tscni-flannel.conflist
#                     instead of the single-node examples (whose 10-tscni-bridge would sort first)
#   --conf-file FILE  install FILE into the configuration directory under its own name, replacing
#                     the one there (a deployment's own config, as the Kubernetes DaemonSet's)
#   --conf-dir DIR    configuration directory (default /etc/cni/net.d)
#   --from DIR        take the executables from DIR (default dist/bin, or $TSCNI_DIST/bin)
#   --copies          install independent copies instead of hard links to one file
#   --no-deps         do not install the runtime packages (iproute2, iptables, ...)
#
# Every executable is self-contained: any one of them also works when copied alone. Installed
# names: every plugin, cnitool and tscni-agent. Executables first, configuration last (a runtime
# that sees a config at once must find its plugins), each written under a temporary dot-name in
# its directory and renamed over the target, so a runtime executing the old version or loading
# the directory while we install never sees a half-written file. Example configs that exist are
# left alone (they are the operator's to edit); a --conf-file is always replaced (an upgrade).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dest=/opt/cni/bin conf="" conf_dir=/etc/cni/net.d conf_file="" from="" copies=0 deps=1

while [ $# -gt 0 ]; do
    case $1 in
    --conf) conf=${conf:-examples} ;;
    --overlay) conf=overlay ;;
    --conf-file) conf_file=$2; shift ;;
    --conf-dir) conf_dir=$2; shift ;;
    --from) from=$2; shift ;;
    --copies) copies=1 ;;
    --no-deps) deps=0 ;;
    -h | --help) sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
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
if [ -n "$conf_file" ]; then
    if [ ! -f "$conf_file" ]; then
        echo "install.sh: --conf-file $conf_file not found" >&2
        exit 1
    fi
    case $conf_file in
    *.conflist | *.conf | *.json) ;;
    *) echo "install.sh: --conf-file $conf_file: a runtime loads only names ending in .conflist, .conf or .json" >&2; exit 2 ;;
    esac
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
tmp="$dest/.tscni-install.$$" part=""
trap 'rm -f "$tmp" "$tmp".* ${part:+"$part"}' EXIT
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

# put_conf SRC NAME keep|replace: SRC as NAME in the configuration directory, through a temporary
# name that does not end in .conf, .conflist or .json (libcni would load it half-written).
put_conf() {
    local src=$1 name=$2 mode=$3 target="$conf_dir/$2"
    part="$conf_dir/.$name.$$.tmp"
    if [ "$mode" = keep ] && [ -e "$target" ]; then
        echo "kept existing $target"
        return
    fi
    cp "$src" "$part"
    chmod 0644 "$part"
    mv -f "$part" "$target"
    part=""
    echo "installed $target"
}

if [ -n "$conf" ] || [ -n "$conf_file" ]; then
    mkdir -p "$conf_dir"
fi
if [ -n "$conf" ]; then
    for f in "$root"/conf/*.conflist; do
        n=$(basename "$f")
        # The overlay's list on overlay nodes only: elsewhere no agent writes its subnet.env.
        if [ "$n" = 10-tscni-flannel.conflist ]; then
            [ "$conf" = overlay ] || continue
        elif [ "$conf" = overlay ]; then
            continue
        fi
        put_conf "$f" "$n" keep
    done
fi
if [ -n "$conf_file" ]; then
    put_conf "$conf_file" "$(basename "$conf_file")" replace
fi
