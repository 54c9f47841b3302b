#!/usr/bin/env bash
# Build the Kubernetes control plane the tests run against (etcd, kube-apiserver) from the Go
# module proxy, by the versions in go.mod, into a cache outside the repository keyed by those
# versions and this recipe: a second run with the same ones does nothing. Prints the directory
# (crates/test-kubernetes runs this to find it).
#   ONYX_TESTENV_CACHE  where the cache lives (default: ~/.cache/onyx-testenv)
set -euo pipefail
cd "$(dirname "$0")"

k8s=$(awk '$1 == "k8s.io/kubernetes" {print $2}' go.mod)
etcd=$(awk '$1 == "go.etcd.io/etcd/server/v3" {print $2}' go.mod)
recipe=$(cat build.sh go.mod go.sum | sha256sum | cut -c1-12)
out="${ONYX_TESTENV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/onyx-testenv}/kubernetes-$k8s-etcd-$etcd-$recipe"
if [ -x "$out/kube-apiserver" ] && [ -x "$out/etcd" ]; then
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
go build -trimpath -ldflags "-s -w" -o "$out.partial/etcd" go.etcd.io/etcd/server/v3
rm -rf "$out"
mv "$out.partial" "$out"
echo "build.sh: built kube-apiserver $k8s and etcd $etcd in $(( $(date +%s) - started )) s" >&2
echo "$out"
