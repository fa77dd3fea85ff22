#!/usr/bin/env bash
# Builds the example workloads to wasm, into $WKUBE_WASM_OUT (default: <target dir>/wasm-examples):
#   hello-rust.wasm       WASI preview1 command (Rust, wasm32-wasip1)
#   hello-c.wasm          WASI preview1 command (C, clang + wasi-libc)
#   hello-component.wasm  WASI preview2 component (Rust, wasm32-wasip2)
# Safe to run concurrently (a lock serialises builders) and cheap when nothing changed.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
target="${CARGO_TARGET_DIR:-$HOME/.cache/wkube-target}"
out="${WKUBE_WASM_OUT:-$target/wasm-examples}"
mkdir -p "$out"
exec 9>"$out/.lock"
flock 9

# Readers may be using the outputs right now: replace them atomically, and only when changed.
publish() {
  if ! cmp -s "$1" "$2"; then
    cp "$1" "$2.tmp.$$" && mv -f "$2.tmp.$$" "$2"
  fi
}

cargo build --quiet --release --target wasm32-wasip1 \
  --manifest-path "$here/hello-rust/Cargo.toml" --target-dir "$target/wasm-guests"
publish "$target/wasm-guests/wasm32-wasip1/release/hello-rust.wasm" "$out/hello-rust.wasm"

cargo build --quiet --release --target wasm32-wasip2 \
  --manifest-path "$here/hello-component/Cargo.toml" --target-dir "$target/wasm-guests"
publish "$target/wasm-guests/wasm32-wasip2/release/hello-component.wasm" "$out/hello-component.wasm"

if [ "$here/hello-c/hello.c" -nt "$out/hello-c.wasm" ]; then
  clang --target=wasm32-wasi -O2 -o "$out/hello-c.wasm.tmp.$$" "$here/hello-c/hello.c"
  mv -f "$out/hello-c.wasm.tmp.$$" "$out/hello-c.wasm"
fi
echo "$out"
