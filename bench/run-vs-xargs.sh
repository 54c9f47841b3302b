#!/usr/bin/env bash
# `onyx run` of N steps of `true` (2 at a time) against the same N processes run by
# `xargs -P2`. Usage: bench/run-vs-xargs.sh [N] (default 1000). Needs a release build.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-1000}
onyx=./target/release/onyx
[ -x "$onyx" ] || cargo build --release -q -p onyx
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat >"$work/wf.yaml" <<YAML
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {generateName: bench-true-}
spec:
  entrypoint: main
  parallelism: 2
  templates:
  - name: main
    steps:
    - - name: t
        template: t
        withSequence: {count: "$n"}
  - name: t
    container: {image: debian, command: ["true"]}
YAML
t0=$(date +%s.%N)
seq "$n" | xargs -P2 -n1 true
t1=$(date +%s.%N)
ONYX_HOME="$work/home" "$onyx" run -o name "$work/wf.yaml" >/dev/null
t2=$(date +%s.%N)
ONYX_NO_SANDBOX=1 ONYX_HOME="$work/home2" "$onyx" run -o name "$work/wf.yaml" >/dev/null
t3=$(date +%s.%N)
awk -v n="$n" -v a="$t0" -v b="$t1" -v c="$t2" -v d="$t3" 'BEGIN {
  x = b - a; o = c - b; u = d - c;
  printf "steps=%d xargs=%.2fs onyx=%.2fs (%.1fx, %.1f ms/step) onyx-no-sandbox=%.2fs (%.1fx)\n", n, x, o, o / x, 1000 * o / n, u, u / x
}'
