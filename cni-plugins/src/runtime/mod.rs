//! The runtime side of CNI (what libcni and containerd's go-cni do): load network configs
//! ([`conflist`]), run plugin binaries ([`invoke`]), run chains of them ([`chain`]: ADD, DEL,
//! CHECK, GC, STATUS) and remember what was attached ([`cache`]).
//!
//! Owns the result cache directory it is given; never touches the conf dir (read only) and never
//! does networking itself: every host change is made by a plugin.
//!
//! Architecture invariant: an ADD either returns a result that is cached on disk, or has run
//! DEL for every plugin it started (nothing leaked); a DEL that returns `Ok` has removed the
//! cache entry.

pub mod cache;
pub mod chain;
pub mod conflist;
pub mod invoke;

use std::path::PathBuf;

use serde_json::{Map, Value};

pub use cache::{CacheEntry, ResultCache};
pub use chain::Cni;
pub use conflist::{ConfDir, LoadError, Loaded};
pub use invoke::{Command, InvokeError, Invoker};

/// One attachment of a container to a network: what goes into `CNI_*` and `runtimeConfig`.
#[derive(Debug, Clone, Default)]
pub struct Attachment {
    pub container_id: String,
    /// The netns path (`CNI_NETNS`).
    pub netns: PathBuf,
    /// `CNI_IFNAME`, e.g. `eth0`.
    pub ifname: String,
    /// `CNI_ARGS` pairs, in order.
    pub args: Vec<(String, String)>,
    /// Capability name → value, injected as `runtimeConfig` only into plugins that declare the
    /// capability (`portMappings`, `ips`, `mac`, `bandwidth`, `dns`, ...).
    pub capability_args: Map<String, Value>,
}

impl Attachment {
    /// `CNI_ARGS`: `K=V;K=V`.
    pub fn cni_args(&self) -> String {
        self.args
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(";")
    }
}

/// How a chain operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("network {network}: plugin {plugin} {command} for container {container_id}: {source}")]
    Plugin {
        network: String,
        plugin: String,
        command: Command,
        container_id: String,
        #[source]
        source: Box<InvokeError>,
    },
    #[error(
        "network {network}: plugin {plugin} {command} for container {container_id}: bad result: {reason}"
    )]
    BadResult {
        network: String,
        plugin: String,
        command: Command,
        container_id: String,
        reason: String,
    },
    #[error("network {network}: result cache for container {container_id}: {source}")]
    Cache {
        network: String,
        container_id: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "network {network}: CHECK for container {container_id}: no cached result (no ADD was done)"
    )]
    NoCachedResult {
        network: String,
        container_id: String,
    },
    #[error("container {container_id}: {reason}")]
    InvalidAttachment {
        container_id: String,
        reason: String,
    },
    #[error("cached config of network {network} for container {container_id} is invalid: {reason}")]
    BadCachedConfig {
        network: String,
        container_id: String,
        reason: String,
    },
}

impl Error {
    /// Worth retrying the same operation later (the plugin asked for it, or timed out).
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Plugin { source, .. } => source.is_transient(),
            _ => false,
        }
    }

    /// The CNI error code the plugin returned, if any.
    pub fn code(&self) -> Option<u32> {
        match self {
            Error::Plugin { source, .. } => source.code(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;
