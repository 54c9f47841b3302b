#!/usr/bin/env bash
# ONYX's tests: formatting, lints, unit and integration tests, and Argo's example corpus.
# The corpus run mostly waits on sleeping steps, so it runs alongside the Rust tests.
set -euo pipefail
cd "$(dirname "$0")"
export PATH="$PATH:/usr/games"

cargo fmt --all -- --check
cargo build --quiet -p onyx

corpus=../shared/conformance/argo-v3.5.6
conformance_log=target/conformance.log
conformance_pid=
if [ -d "$corpus" ]; then
  rm -rf target/onyx-conformance
  ONYX_HOME="$PWD/target/onyx-conformance" ./target/debug/onyx conformance "$corpus" >"$conformance_log" 2>&1 &
  conformance_pid=$!
else
  echo "conformance: $corpus is not here (it comes from the project's shared folder); corpus run skipped"
fi

cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo test --workspace --quiet

# Argo's Python client against `onyx server` (.ci/run installs hera and pytest from PyPI).
if python3 -c 'import hera, pytest' 2>/dev/null; then
  ONYX_BIN="$PWD/target/debug/onyx" python3 -m pytest -q -p no:cacheprovider tests/hera
else
  echo "hera tests: the Python packages hera and pytest are not installed (pip install hera pytest); skipped" >&2
  [ -z "${CI:-}" ] || exit 1
fi

# Argo's official Python SDK (argo-workflows 6.5, from Argo v3.5's swagger) against `onyx server`.
if python3 -c 'import argo_workflows, pytest' 2>/dev/null; then
  ONYX_BIN="$PWD/target/debug/onyx" python3 -m pytest -q -p no:cacheprovider tests/argo_sdk
else
  echo "Argo SDK tests: the Python packages argo-workflows (6.5) and pytest are not installed (pip install 'argo-workflows>=6.5,<6.6' pytest); skipped" >&2
  [ -z "${CI:-}" ] || exit 1
fi

# The web UI in Debian's headless Chromium, driven by Playwright (.ci/run installs both).
if python3 -c 'import playwright, pytest' 2>/dev/null && [ -x "${CHROMIUM:-/usr/bin/chromium}" ]; then
  ONYX_BIN="$PWD/target/debug/onyx" python3 -m pytest -q -p no:cacheprovider tests/ui
else
  echo "UI tests: need the Python package playwright and Debian's chromium (apt-get install chromium; pip install playwright); skipped" >&2
  [ -z "${CI:-}" ] || exit 1
fi

if [ -n "$conformance_pid" ]; then
  status=0
  wait "$conformance_pid" || status=$?
  sort -k3 "$conformance_log" | grep -E '^(PASS|FAIL|SKIP) ' || true
  grep -E '^host: ' "$conformance_log" || true
  grep -E '^conformance: ' "$conformance_log" || true
  grep -E '^examples: [0-9]+ passed, [0-9]+ failed' "$conformance_log" | tail -n 1
  exit "$status"
fi
