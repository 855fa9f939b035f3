//! keel-apiserver: the Kubernetes API over HTTPS, above `storage`.

pub mod discovery;
pub mod field_errors;
pub mod openapi;
pub mod resources;
