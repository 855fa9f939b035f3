//! Pod sandboxes: their namespaces, shared files, network, and lifecycle.
pub mod files;
pub mod lifecycle;
pub mod namespaces;
pub mod orphans;
pub mod pidns;
