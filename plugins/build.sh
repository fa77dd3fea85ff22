#!/usr/bin/env bash
# Builds the example admission policies to wasm, into $WKUBE_PLUGINS_OUT (default:
# <target dir>/wasm-plugins):
#   require-labels.wasm      component (Rust, wit-bindgen, wasm32-wasip2)
#   default-resources.wasm   mutating component (Rust, wit-bindgen, wasm32-wasip2)
#   allowed-registries.wasm  WASI preview 1 command (C, clang + wasi-libc)
#   deny-privileged.wasm     component (Python, componentize-py from PyPI, in <target>/py-venv)
#   require-name-and-tag.wasm  component (JavaScript, componentize-js from npm, in <target>/js-build)
# and the example scheduler plugins (wit/scheduler):
#   zone-spread.wasm         component (Rust, wit-bindgen, wasm32-wasip2)
#   maintenance-filter.wasm  WASI preview 1 command (C, clang + wasi-libc)
#   prefer-labels.wasm       component (JavaScript, componentize-js, same <target>/js-build)
# Safe to run concurrently (a lock serialises builders) and cheap when nothing changed.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
target="${CARGO_TARGET_DIR:-$HOME/.cache/wkube-target}"
out="${WKUBE_PLUGINS_OUT:-$target/wasm-plugins}"
mkdir -p "$out"
exec 9>"$out/.lock"
flock 9

# Readers may be using the outputs right now: replace them atomically, and only when changed.
publish() {
  if ! cmp -s "$1" "$2"; then
    cp "$1" "$2.tmp.$$" && mv -f "$2.tmp.$$" "$2"
  fi
}

cargo build --quiet --release --target wasm32-wasip2 \
  --manifest-path "$here/rust/Cargo.toml" --target-dir "$target/wasm-guests"
for p in require-labels default-resources zone-spread; do
  publish "$target/wasm-guests/wasm32-wasip2/release/${p//-/_}.wasm" "$out/$p.wasm"
done

src="$here/c/allowed-registries/policy.c"
if [ "$src" -nt "$out/allowed-registries.wasm" ]; then
  clang --target=wasm32-wasi -O2 -Wall -o "$out/allowed-registries.wasm.tmp.$$" "$src"
  mv -f "$out/allowed-registries.wasm.tmp.$$" "$out/allowed-registries.wasm"
fi
src="$here/c/maintenance-filter/plugin.c"
if [ "$src" -nt "$out/maintenance-filter.wasm" ]; then
  clang --target=wasm32-wasi -O2 -Wall -o "$out/maintenance-filter.wasm.tmp.$$" "$src"
  mv -f "$out/maintenance-filter.wasm.tmp.$$" "$out/maintenance-filter.wasm"
fi
# True when $1 is missing or older than any file under the other arguments.
stale() {
  local built="$1"; shift
  [ ! -e "$built" ] || [ -n "$(find "$@" -type f -newer "$built" -not -path '*/__pycache__/*' | head -n1)" ]
}
wit="$here/../wit/admission"

# Python: componentize-py (pinned) in a venv of its own, made once.
py_version=0.25.0
venv="$target/py-venv"
if ! "$venv/bin/componentize-py" --version 2>/dev/null | grep -qx "componentize-py $py_version"; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "componentize-py==$py_version"
fi
if stale "$out/deny-privileged.wasm" "$here/python/deny-privileged" "$wit"; then
  (cd "$here/python/deny-privileged" && PYTHONDONTWRITEBYTECODE=1 "$venv/bin/componentize-py" \
    -d "$wit" -w policy componentize app -o "$out/deny-privileged.wasm.tmp.$$" >/dev/null)
  mv -f "$out/deny-privileged.wasm.tmp.$$" "$out/deny-privileged.wasm"
fi

# JavaScript: componentize-js at the versions of plugins/js/package-lock.json, installed once
# per lock file; build.mjs must sit beside that node_modules for node to resolve it.
js="$target/js-build"
mkdir -p "$js"
if ! cmp -s "$here/js/package-lock.json" "$js/.installed-lock"; then
  cp "$here/js/package.json" "$here/js/package-lock.json" "$js/"
  (cd "$js" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  cp "$here/js/package-lock.json" "$js/.installed-lock"
fi
cp "$here/js/build.mjs" "$js/build.mjs"
if stale "$out/require-name-and-tag.wasm" "$here/js/require-name-and-tag" "$here/js/build.mjs" "$wit"; then
  (cd "$js" && node build.mjs "$wit" "$here/js/require-name-and-tag/policy.js" \
    "$out/require-name-and-tag.wasm")
fi
# The scheduler plugin: same toolchain, against wit/scheduler and its `plugin` world.
sched_wit="$here/../wit/scheduler"
if stale "$out/prefer-labels.wasm" "$here/js/prefer-labels" "$here/js/build.mjs" "$sched_wit"; then
  (cd "$js" && node build.mjs "$sched_wit" "$here/js/prefer-labels/plugin.js" \
    "$out/prefer-labels.wasm" plugin)
fi
echo "$out"
