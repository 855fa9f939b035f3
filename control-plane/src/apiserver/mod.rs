//! keel-apiserver: the Kubernetes API over HTTPS, above `storage`.

pub mod field_errors;
pub mod patch;
pub mod resources;
