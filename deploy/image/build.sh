#!/usr/bin/env bash
# ONYX's image, as an OCI image archive, from an `onyx` binary and nothing pulled: the binary at
# /usr/local/bin/onyx (the entrypoint), the shared libraries it loads (as `ldd` lists them, at
# their paths), the CA certificates, and a non-root user 65532. One image serves both uses:
# the server's (deploy/kubernetes/onyx.yaml: `onyx server …`) and the executor's (the config's
# `[kubernetes] executor_image`: a step pod's init container runs `onyx install-executor`).
#
#   deploy/image/build.sh [BINARY [ARCHIVE]]    # default target/release/onyx, target/onyx-image.tar
#
# Then push it with `skopeo copy oci-archive:target/onyx-image.tar docker://REGISTRY/onyx:0.1.0`,
# or import it on a node with `ctr -n k8s.io images import --base-name REGISTRY/onyx ARCHIVE`.
# The tag is ONYX_IMAGE_TAG (default 0.1.0). Needs umoci (Debian: apt-get install umoci).
set -euo pipefail
bin=${1:-target/release/onyx}
out=${2:-target/onyx-image.tar}
tag=${ONYX_IMAGE_TAG:-0.1.0}
command -v umoci >/dev/null 2>&1 || { echo "build.sh: umoci is needed (apt-get install umoci)" >&2; exit 1; }
[ -x "$bin" ] || { echo "build.sh: $bin is not an executable (cargo build --release -p onyx)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/rootfs
mkdir -p "$root/usr/local/bin" "$root/etc/ssl/certs" "$root/tmp" "$root/var/lib/onyx"
chmod 1777 "$root/tmp"
install -m 0755 "$bin" "$root/usr/local/bin/onyx"
# Every library the binary loads, and the loader itself, where the binary looks for them.
ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' | sort -u | while read -r lib; do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
[ -f /etc/ssl/certs/ca-certificates.crt ] && cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
printf 'root:x:0:0::/root:/sbin/nologin\nonyx:x:65532:65532::/var/lib/onyx:/sbin/nologin\n' > "$root/etc/passwd"
printf 'root:x:0:\nonyx:x:65532:\n' > "$root/etc/group"
chown 65532:65532 "$root/var/lib/onyx"
umoci init --layout "$work/oci"
umoci new --image "$work/oci:$tag"
umoci insert --image "$work/oci:$tag" "$root" /
umoci config --image "$work/oci:$tag" \
  --config.entrypoint /usr/local/bin/onyx \
  --config.user 65532:65532 \
  --config.env PATH=/usr/local/bin:/usr/bin:/bin \
  --config.workingdir /var/lib/onyx
mkdir -p "$(dirname "$out")"
tar -C "$work/oci" -cf "$out" .
echo "build.sh: $out (OCI image archive, tag $tag)" >&2
