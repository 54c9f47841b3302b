#!/usr/bin/env bash
# Build what the Kubernetes tests run against from the Go module proxy, by the versions in the
# go.mod files here: the control plane (etcd, kube-apiserver, kube-controller-manager for node
# lifecycle and garbage collection; go.mod), the kubelet of the same release for the real node
# (crates/test-kubernetes/src/real_node.rs runs it against Debian's containerd; go.mod) and
# kwok for fake nodes (kwok/go.mod), into a cache outside the repository keyed by those
# versions and this recipe: a second run with the same ones does nothing. Prints the directory
# (crates/test-kubernetes runs this to find it).
#   ONYX_TESTENV_CACHE  where the cache lives (default: ~/.cache/onyx-testenv)
set -euo pipefail
cd "$(dirname "$0")"

# The version FILE requires of MODULE (inside a require block, or on a require line).
version_of() {
  awk -v m="$2" '$1 == m {print $2; exit} $1 == "require" && $2 == m {print $3; exit}' "$1"
}
k8s=$(version_of go.mod k8s.io/kubernetes)
etcd=$(version_of go.mod go.etcd.io/etcd/server/v3)
kwok=$(version_of kwok/go.mod sigs.k8s.io/kwok)
recipe=$(cat build.sh go.mod go.sum kwok/go.mod kwok/go.sum | sha256sum | cut -c1-12)
out="${ONYX_TESTENV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/onyx-testenv}/kubernetes-$k8s-etcd-$etcd-kwok-$kwok-$recipe"
cached() {
  [ -x "$out/kube-apiserver" ] && [ -x "$out/kube-controller-manager" ] && [ -x "$out/kubelet" ] &&
    [ -x "$out/etcd" ] && [ -x "$out/kwok" ]
}
if cached; then
  echo "$out"
  exit 0
fi
# Test processes that start at once (cargo runs several) build once: the others wait here and
# then find the cache.
mkdir -p "$(dirname "$out")"
exec 9>"$out.lock"
flock 9
if cached; then
  echo "$out"
  exit 0
fi
command -v go >/dev/null 2>&1 || {
  echo "build.sh: Go is not installed; the Kubernetes tests need it to build kube-apiserver and etcd" >&2
  exit 1
}
mkdir -p "$out.partial"
started=$(date +%s)
# The version the binaries report (`--version`, `/version`), stamped into both packages that
# hold it, as Kubernetes' own build (hack/lib/version.sh) does.
minor=$(echo "$k8s" | cut -d. -f2)
stamp="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  stamp="$stamp -X $pkg.gitVersion=$k8s -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
done
go build -trimpath -ldflags "$stamp" -o "$out.partial/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver
go build -trimpath -ldflags "$stamp" -o "$out.partial/kube-controller-manager" k8s.io/kubernetes/cmd/kube-controller-manager
go build -trimpath -ldflags "$stamp" -o "$out.partial/kubelet" k8s.io/kubernetes/cmd/kubelet
go build -trimpath -ldflags "-s -w" -o "$out.partial/etcd" go.etcd.io/etcd/server/v3
(cd kwok && go build -trimpath -ldflags "-s -w" -o "$out.partial/kwok" sigs.k8s.io/kwok/cmd/kwok)
rm -rf "$out"
mv "$out.partial" "$out"
echo "build.sh: built kube-apiserver, kube-controller-manager and kubelet $k8s, etcd $etcd and kwok $kwok in $(( $(date +%s) - started )) s" >&2
echo "$out"
