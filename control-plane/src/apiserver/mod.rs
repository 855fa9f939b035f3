//! keel-apiserver: the Kubernetes API over HTTPS, above `storage`.

#[cfg(test)]
mod describe_kubectl;
pub mod discovery;
pub mod field_errors;
pub mod openapi;
pub mod openapi_proto;
pub mod resources;
pub mod table;
