//! Hostile and well-behaved tiny modules, written in WAT: every failure is a typed error that
//! arrives promptly, and a spinning policy does not hold the executor.

use std::time::{Duration, Instant};

use serde_json::json;

use super::*;

fn host() -> PluginHost {
    let cfg = PluginHostConfig {
        max_concurrent_calls: 8,
        max_memory_bytes: 64 << 20,
    };
    PluginHost::new(&cfg).expect("plugin host")
}

fn limits() -> CallLimits {
    CallLimits {
        timeout: Duration::from_millis(300),
        memory_bytes: 16 << 20,
    }
}

fn request() -> AdmissionRequest {
    AdmissionRequest::for_pod(Operation::Create, json!({"metadata": {"name": "p"}}))
}

/// A preview 1 command whose `_start` runs `body`, with `fd_write` and `proc_exit` imported and
/// `data` at offset 64 of its memory.
fn command(body: &str, data: &str) -> Vec<u8> {
    let escaped = data.replace('\\', "\\\\").replace('"', "\\\"");
    let wat = format!(
        r#"(module
          (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
          (memory (export "memory") 1)
          (data (i32.const 64) "{escaped}")
          (func $print
            (i32.store (i32.const 0) (i32.const 64))
            (i32.store (i32.const 4) (i32.const {len}))
            (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))))
          (func (export "_start") {body}))"#,
        len = data.len()
    );
    wat::parse_str(wat).expect("valid WAT")
}

async fn validate(bytes: Vec<u8>) -> Result<PolicyResponse, PolicyError> {
    let host = host();
    let module = host.load(bytes).await?;
    module
        .call(Call::Validate, &json!({}), &request(), &limits())
        .await
}

#[tokio::test]
async fn an_answering_command_is_heard() {
    let r = validate(command(
        "(call $print)",
        r#"{"allowed": false, "message": "no", "code": 422, "warnings": ["w"]}"#,
    ))
    .await
    .expect("answer");
    assert!(!r.allowed);
    assert_eq!(r.message.as_deref(), Some("no"));
    assert_eq!(r.code, Some(422));
    assert_eq!(r.warnings, vec!["w".to_string()]);
}

#[tokio::test]
async fn settings_are_checked_through_the_command() {
    let host = host();
    let module = host
        .load(command(
            "(call $print)",
            r#"{"valid": false, "message": "bad"}"#,
        ))
        .await
        .expect("load");
    let answer = module
        .validate_settings(&json!({"x": 1}), &limits())
        .await
        .expect("call");
    assert_eq!(answer, Err("bad".to_string()));
}

#[tokio::test]
async fn not_wasm_is_refused() {
    let host = host();
    let err = host.load(b"#!/bin/sh\necho hi\n".to_vec()).await.err();
    assert!(matches!(err, Some(PolicyError::NotWasm(_))), "{err:?}");
    let mut garbage = b"\0asm\x01\0\0\0".to_vec();
    garbage.extend_from_slice(&[0xff; 32]);
    let err = host.load(garbage).await.err();
    assert!(matches!(err, Some(PolicyError::Compile(_))), "{err:?}");
}

#[tokio::test]
async fn a_module_without_the_contract_is_refused() {
    let host = host();
    let lib = wat::parse_str("(module (func (export \"f\")))").expect("wat");
    let err = host.load(lib).await.err();
    assert!(matches!(err, Some(PolicyError::Contract(_))), "{err:?}");
    let empty = wat::parse_str("(component)").expect("wat");
    let err = host.load(empty).await.err();
    assert!(matches!(err, Some(PolicyError::Contract(_))), "{err:?}");
}

#[tokio::test]
async fn an_infinite_loop_times_out_without_holding_the_executor() {
    let started = Instant::now();
    let ticker = async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        started.elapsed()
    };
    // A long deadline, so that "the timer fired before the deadline" cannot be luck.
    let limits = CallLimits {
        timeout: Duration::from_secs(3),
        ..limits()
    };
    let spin = async {
        let module = host().load(command("(loop (br 0))", "")).await?;
        module
            .call(Call::Validate, &json!({}), &request(), &limits)
            .await
    };
    let (result, ticked_after) = tokio::join!(spin, ticker);
    assert!(matches!(result, Err(PolicyError::Timeout(_))), "{result:?}");
    assert!(started.elapsed() < Duration::from_secs(30));
    // On this single-threaded runtime the timer only fires if the guest yields.
    assert!(ticked_after < Duration::from_secs(2), "{ticked_after:?}");
}

#[tokio::test]
async fn a_memory_bomb_hits_the_limit() {
    let bomb = "(loop (br_if 0 (i32.ne (memory.grow (i32.const 16)) (i32.const -1)))) unreachable";
    let result = validate(command(bomb, "")).await;
    assert!(
        matches!(result, Err(PolicyError::MemoryLimit(_))),
        "{result:?}"
    );
}

#[tokio::test]
async fn a_trap_is_an_error() {
    let result = validate(command("unreachable", "")).await;
    assert!(matches!(result, Err(PolicyError::Trap(_))), "{result:?}");
}

#[tokio::test]
async fn garbage_output_is_a_bad_response() {
    let result = validate(command("(call $print)", "allowed, I think")).await;
    assert!(
        matches!(result, Err(PolicyError::BadResponse(_))),
        "{result:?}"
    );
    let patch_from_validate = r#"{"allowed": true, "patch": []}"#;
    let result = validate(command("(call $print)", patch_from_validate)).await;
    assert!(
        matches!(result, Err(PolicyError::BadResponse(_))),
        "{result:?}"
    );
    let bad_code = r#"{"allowed": false, "code": 200}"#;
    let result = validate(command("(call $print)", bad_code)).await;
    assert!(
        matches!(result, Err(PolicyError::BadResponse(_))),
        "{result:?}"
    );
}

#[tokio::test]
async fn a_non_zero_exit_is_an_error() {
    let result = validate(command(
        "(call $print) (call $proc_exit (i32.const 3))",
        "x",
    ))
    .await;
    assert!(
        matches!(result, Err(PolicyError::Exit { code: 3, .. })),
        "{result:?}"
    );
}

#[tokio::test]
async fn modules_are_compiled_once_per_digest() {
    let host = host();
    let bytes = command("(call $print)", r#"{"allowed": true}"#);
    let a = host.load(bytes.clone()).await.expect("load");
    let b = host.load(bytes).await.expect("load");
    assert!(Arc::ptr_eq(&a, &b));
    assert!(a.digest().starts_with("sha256:"));
}
