#!/usr/bin/env bash
# Builds a tiny busybox image as an OCI image-layout archive, from Debian's busybox-static, with no
# registry: importable by `ctr images import` and `podman load`.
#
#   usage: image.sh OUTPUT.tar [IMAGE_NAME]
#
# The image runs busybox httpd on port 80 by default. /www/cgi-bin/peer answers with the client's
# address (REMOTE_ADDR), which is how the tests check that a container sees the real client address.
set -euo pipefail

out=${1:?usage: image.sh OUTPUT.tar [IMAGE_NAME]}
name=${2:-localhost/tscni-e2e/busybox:latest}
busybox=/bin/busybox
[ -x "$busybox" ] && "$busybox" --list >/dev/null 2>&1 || { echo "image.sh: $busybox missing (apt-get install busybox-static)" >&2; exit 1; }
file -L "$busybox" 2>/dev/null | grep -q dynamically && { echo "image.sh: $busybox is not static" >&2; exit 1; }

work=$(mktemp -d /tmp/tscni-image.XXXXXX)
trap 'rm -rf "$work"' EXIT
root=$work/rootfs
oci=$work/oci
mkdir -p "$root"/{bin,etc,proc,sys,dev,tmp,www/cgi-bin} "$oci/blobs/sha256"
cp "$busybox" "$root/bin/busybox"
for applet in $("$busybox" --list); do
    [ "$applet" = busybox ] || ln -s busybox "$root/bin/$applet"
done
printf 'root:x:0:0:root:/:/bin/sh\n' >"$root/etc/passwd"
printf 'root:x:0:\n' >"$root/etc/group"
printf 'tscni e2e\n' >"$root/www/index.html"
cat >"$root/www/cgi-bin/peer" <<'CGI'
#!/bin/sh
printf 'Content-Type: text/plain\r\n\r\n%s\n' "$REMOTE_ADDR"
CGI
chmod 0755 "$root/www/cgi-bin/peer"

# One uncompressed layer: its digest is also its diff_id.
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$root" -cf "$work/layer.tar" .

blob() { # blob FILE -> prints "sha256:HEX SIZE" after storing FILE under blobs/
    local hex size
    hex=$(sha256sum "$1" | cut -d' ' -f1)
    size=$(stat -c %s "$1")
    cp "$1" "$oci/blobs/sha256/$hex"
    echo "sha256:$hex $size"
}

arch=$(dpkg --print-architecture 2>/dev/null || echo amd64)
read -r layer_digest layer_size < <(blob "$work/layer.tar")
cat >"$work/config.json" <<JSON
{"architecture":"$arch","os":"linux","config":{"Env":["PATH=/bin"],"Cmd":["/bin/httpd","-f","-v","-p","0.0.0.0:80","-h","/www"],"WorkingDir":"/"},"rootfs":{"type":"layers","diff_ids":["$layer_digest"]},"history":[{"created_by":"tscni test/e2e/image.sh"}]}
JSON
read -r config_digest config_size < <(blob "$work/config.json")
cat >"$work/manifest.json" <<JSON
{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"$config_digest","size":$config_size},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"$layer_digest","size":$layer_size}]}
JSON
read -r manifest_digest manifest_size < <(blob "$work/manifest.json")
cat >"$oci/index.json" <<JSON
{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"$manifest_digest","size":$manifest_size,"platform":{"architecture":"$arch","os":"linux"},"annotations":{"io.containerd.image.name":"$name","org.opencontainers.image.ref.name":"$name"}}]}
JSON
printf '{"imageLayoutVersion":"1.0.0"}' >"$oci/oci-layout"

mkdir -p "$(dirname "$out")"
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$oci" -cf "$out.tmp.$$" oci-layout index.json blobs
mv -f "$out.tmp.$$" "$out"
