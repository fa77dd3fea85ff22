#!/usr/bin/env bash
# Runs every test of wkube, installing first what the tests need (idempotent).
#   bash tests/run.sh            # everything
#   bash tests/run.sh e2e_kubectl  # extra args go to `cargo test`
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v kubectl >/dev/null 2>&1 || need_apt+=(kubectl)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "==> installing apt packages: ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# One target dir shared by every test binary (and kept between runs as a cache).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/wkube-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

echo "==> building"
cargo build --tests --bins --quiet
echo "==> testing"
cargo test --no-fail-fast "$@"
