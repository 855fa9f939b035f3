//! keel-cri: a CRI v1 runtime. See ARCHITECTURE.md for the module map.
pub mod config;
pub mod container;
pub mod monitor;
pub mod sandbox;
pub mod store;
pub mod undo;
pub mod oci_runtime;
pub mod runtime;
pub mod server;
