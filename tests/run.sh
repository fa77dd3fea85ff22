#!/usr/bin/env bash
# Runs every test of wkube, installing first what the tests need (idempotent).
#   bash tests/run.sh                 # everything
#   bash tests/run.sh --test e2e_wasm_pods   # extra args go to `cargo test`
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages: kubectl (the client under test), a C toolchain for wasm guests, an OCI
# registry and skopeo for image tests, libseccomp and pkg-config to build libcontainer, and
# busybox-static for the Linux container tests' images.
need_apt=()
command -v kubectl >/dev/null 2>&1 || need_apt+=(kubectl)
command -v clang >/dev/null 2>&1 || need_apt+=(clang)
command -v wasm-ld >/dev/null 2>&1 || need_apt+=(lld)
[ -d /usr/lib/wasm32-wasi ] || [ -d /usr/share/wasi-sysroot ] || need_apt+=(wasi-libc)
ls /usr/lib/llvm-14/lib/clang/14*/lib/wasi/libclang_rt.builtins-wasm32.a >/dev/null 2>&1 || need_apt+=(libclang-rt-14-dev-wasm32)
command -v docker-registry >/dev/null 2>&1 || need_apt+=(docker-registry)
command -v skopeo >/dev/null 2>&1 || need_apt+=(skopeo)
command -v pkg-config >/dev/null 2>&1 || need_apt+=(pkg-config)
pkg-config --exists libseccomp 2>/dev/null || need_apt+=(libseccomp-dev)
[ -x /bin/busybox ] || need_apt+=(busybox-static)
# Reference runtimes the container_runtime benchmark compares with.
command -v runc >/dev/null 2>&1 || need_apt+=(runc)
command -v crun >/dev/null 2>&1 || need_apt+=(crun)
# The Python and JavaScript example policies: plugins/build.sh makes a venv (componentize-py)
# and runs npm (componentize-js); both then come from their registries, pinned.
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
python3 -c 'import ensurepip' >/dev/null 2>&1 || need_apt+=(python3-venv)
command -v node >/dev/null 2>&1 || need_apt+=(nodejs)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "==> installing apt packages: ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# Rust targets for the wasm guests in examples/.
installed_targets="$(rustup target list --installed)"
for t in wasm32-wasip1 wasm32-wasip2; do
  grep -qx "$t" <<<"$installed_targets" || rustup target add "$t"
done

# One target dir shared by every test binary (and kept between runs as a cache).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/wkube-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

echo "==> building the wasm example workloads"
bash examples/build.sh >/dev/null
echo "==> building the example admission policies"
bash plugins/build.sh >/dev/null
echo "==> building"
cargo build --tests --bins --quiet
echo "==> testing"
cargo test --no-fail-fast "$@"
