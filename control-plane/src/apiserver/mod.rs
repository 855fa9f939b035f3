//! keel-apiserver: the Kubernetes API over HTTPS, above `storage`.

pub mod allocator;
pub mod cron;
pub mod defaults;
pub mod field_errors;
pub mod names;
pub mod quantity;
pub mod resources;
pub mod selectors;
pub mod validation;
