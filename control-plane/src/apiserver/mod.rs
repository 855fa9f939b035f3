//! keel-apiserver: the Kubernetes API over HTTPS, above `storage`.

pub mod field_errors;
pub mod resources;
pub mod allocator;
pub mod cron;
pub mod names;
pub mod quantity;
pub mod selectors;
pub mod defaults;
