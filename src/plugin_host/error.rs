//! What can go wrong with a policy module, as one typed error. The admission layer turns each
//! into an allow or a deny by the policy's `failurePolicy`; none of them is a server failure.

use std::time::Duration;

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum PolicyError {
    #[error("the module is not WebAssembly: {0}")]
    NotWasm(String),
    #[error("the module does not compile: {0}")]
    Compile(String),
    #[error("the module does not implement wkube:admission@0.1.0: {0}")]
    Contract(String),
    #[error("the policy could not be instantiated: {0}")]
    Instantiate(String),
    #[error("the policy did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the policy needed more memory than its limit of {0} bytes")]
    MemoryLimit(u64),
    #[error("the policy trapped: {0}")]
    Trap(String),
    #[error("the policy exited with status {code}{stderr}")]
    Exit { code: i32, stderr: String },
    #[error("the policy's response is malformed: {0}")]
    BadResponse(String),
    #[error("the plugin host failed: {0}")]
    Host(String),
}
