//! keel-cni: CNI 1.1 spec types, the plugin skeleton, and the runtime side that invokes plugin chains.
//!
//! - [`spec`]: the types shared by runtimes and plugins (config lists, results, error objects).
//! - [`runtime`]: what libcni does for a container runtime (load configs, run chains, cache).
//! - [`plugin`]: the plugin skeleton every Keel plugin binary runs (env + stdin in, result or
//!   error object out, IPAM delegation).
//! - [`fuzz`]: the fuzz bodies over config and result parsing (cargo-fuzz targets in
//!   `cni-plugins/fuzz/`, and a stable test over a corpus).

pub mod bridge;
pub mod fuzz;
pub mod ipam;
pub mod plugin;
pub mod portmap;
pub mod runtime;
pub mod spec;
