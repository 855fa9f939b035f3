//! keel-cri: a CRI v1 runtime. See ARCHITECTURE.md for the module map.
pub mod config;
pub mod container;
pub mod daemon;
pub mod image;
pub mod monitor;
pub mod network;
pub mod oci_runtime;
pub mod runc;
pub mod runtime;
pub mod sandbox;
pub mod server;
pub mod stages;
pub mod store;
pub mod undo;
