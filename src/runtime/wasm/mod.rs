//! The wasm runtime (wasmtime).
