#!/usr/bin/env bash
# Before/after figures for a change that must not cost: the engine (`dag`), the scheduler
# cycle (`pending`) and `onyx server` (`submit`, `run`) benches, for COMMIT and for the working
# tree, built into one target directory and run back to back on this machine.
#
#   bench/before-after.sh COMMIT [RUN_COUNT]     # RUN_COUNT one-step workflows (default 1000)
#
# Each side's benches run right after its build (the server bench starts that side's
# `onyx`). Compare figures only within one run of this script.
set -euo pipefail
cd "$(dirname "$0")/.."
before=${1:?usage: bench/before-after.sh COMMIT [RUN_COUNT]}
runs=${2:-1000}
tree=$(mktemp -d)/before
git worktree add --quiet --detach "$tree" "$before"
trap 'git worktree remove --force "$tree"' EXIT
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
for side in before after; do
  dir=$PWD
  [ "$side" = before ] && dir=$tree
  echo "== $side: $(git -C "$dir" log -1 --format='%h %s' | cut -c1-80)"
  (cd "$dir" && cargo bench -q -p workflow-engine --bench dag -- 10000 100000)
  (cd "$dir" && cargo bench -q -p scheduler --bench pending)
  (cd "$dir" && cargo bench -q -p onyx --bench server -- submit 20000)
  (cd "$dir" && cargo bench -q -p onyx --bench server -- run "$runs")
done
