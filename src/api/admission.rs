//! The admission hook of the write path: what [`super::rest::Rest`] asks before it stores a
//! create, update or delete. The API only defines the question; the wasm policies that answer
//! it live in `crate::plugin_host`, installed at start-up with [`super::rest::Rest::install_admission`].
//!
//! Order in a write: mutating admission -> schema validation -> validating admission -> store.

use serde_json::Value;

use super::auth::UserInfo;
use super::registry::{ResourceInfo, Subresource};
use super::status::ApiResult;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdmissionOperation {
    Create,
    Update,
    Delete,
}

/// What is being written, by whom.
#[derive(Debug, Clone)]
pub struct AdmissionAttributes<'a> {
    pub resource: &'a ResourceInfo,
    pub subresource: Option<Subresource>,
    pub operation: AdmissionOperation,
    pub namespace: Option<String>,
    pub name: String,
    /// The stored object, for update and delete.
    pub old_object: Option<&'a Value>,
    pub user: Option<&'a UserInfo>,
    pub dry_run: bool,
}

/// Admission control. Errors are the `Status` the client gets; the `Vec`s are warnings for it.
#[async_trait::async_trait]
pub trait AdmissionHook: Send + Sync {
    /// Mutating admission of a create or update: may change `object`.
    async fn mutate(
        &self,
        attrs: &AdmissionAttributes<'_>,
        object: &mut Value,
    ) -> ApiResult<Vec<String>>;

    /// Validating admission of the final object (`None` for a delete).
    async fn validate(
        &self,
        attrs: &AdmissionAttributes<'_>,
        object: Option<&Value>,
    ) -> ApiResult<Vec<String>>;
}
