//! The patch library of keel-apiserver: pure functions on `serde_json::Value` that turn a stored
//! object and a PATCH body into the new object, and keep `metadata.managedFields` honest.
//!
//! - [`json_patch`]: RFC 6902 (`application/json-patch+json`), atomic.
//! - [`merge_patch`]: RFC 7386 (`application/merge-patch+json`); the patch must be an object.
//! - [`strategic_merge_patch`]: `application/strategic-merge-patch+json`, driven by the
//!   built-in schema facts in `merge_keys`; see `strategic` for the directives supported.
//! - [`server_side_apply`] and [`track_update`]: `application/apply-patch+yaml` and the
//!   managedFields bookkeeping of ordinary writes; see `apply` for exactly what is modelled.
//!
//! Nothing here does I/O, and no input can make these functions panic.

mod apply;
mod fields;
mod json_patch;
mod merge_keys;
mod merge_patch;
mod strategic;

pub use apply::{ApplyConflict, ApplyError, ApplyOptions, server_side_apply, track_update};
pub use json_patch::json_patch;
pub use merge_keys::supports_strategic_merge;
pub use merge_patch::merge_patch;
pub use strategic::strategic_merge_patch;

/// Why a patch could not be applied; each maps to a 422 (or 400 for malformed documents) in
/// the HTTP layer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// The patch body is not a valid patch of its type.
    #[error("invalid patch document: {0}")]
    InvalidDocument(String),
    /// A JSON pointer in a JSON patch is malformed.
    #[error("invalid json pointer {0:?}")]
    InvalidPointer(String),
    /// A JSON patch operation names a location that does not exist.
    #[error("json patch {op} operation does not apply: doc is missing path: {path}")]
    PathNotFound { op: String, path: String },
    /// A JSON patch "test" operation found a different value.
    #[error("json patch \"test\" operation failed: value at {path} differs")]
    TestFailed { path: String },
    /// A strategic merge patch list element lacks the merge key of its list.
    #[error("map {item} does not contain declared merge key: {key}")]
    MissingMergeKey { key: String, item: String },
    /// A strategic merge patch carries a `$...` directive that is not known or is malformed.
    #[error("invalid strategic merge patch directive {directive:?}: {reason}")]
    BadDirective { directive: String, reason: String },
}

/// Which type an object is, as the patch functions need to know it: the group ("" for core),
/// version and kind.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TypeRef {
    pub group: String,
    pub version: String,
    pub kind: String,
}

impl TypeRef {
    pub fn new(group: &str, version: &str, kind: &str) -> TypeRef {
        TypeRef {
            group: group.to_string(),
            version: version.to_string(),
            kind: kind.to_string(),
        }
    }

    /// "apps/v1", or "v1" for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}
