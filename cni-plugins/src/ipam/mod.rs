//! host-local IPAM: hands out addresses from configured ranges and records them in files under
//! `<dataDir>/<network>`, compatible with the reference plugin's store.
//!
//! - [`ranges`]: ranges, range sets and the round-robin order (pure).
//! - [`config`]: the `ipam` section, requested addresses, resolv.conf (pure but for resolv.conf).
//! - [`store`]: the locked allocation directory.
//! - [`host_local`]: ADD, DEL, CHECK, GC and STATUS over a config and a store.
//!
//! Owns nothing outside the store directory; never touches network interfaces.
//!
//! Error codes: those the reference plugin returns for the same condition, which is libcni's
//! catch-all 999 for every config and allocation error, so a runtime sees the same codes from
//! either plugin; STATUS reports an exhausted range set with the spec's 50.

pub mod config;
pub mod host_local;
pub mod ranges;
pub mod store;

use std::net::IpAddr;
use std::path::PathBuf;

pub use config::IpamConfig;
pub use ranges::{Range, RangeError, RangeSet};
pub use store::{Allocation, Store};

/// The code of libcni's `ErrInternal`, what the reference plugins return for errors that carry
/// no spec code (invalid ranges, exhausted ranges, taken addresses, ...).
pub const CODE_INTERNAL: u32 = 999;

/// What went wrong in host-local.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("ipam config missing 'ipam' key")]
    NoIpam,
    #[error("invalid ipam config: {0}")]
    Decode(String),
    #[error("invalid network name {0:?} (the store directory is named after it)")]
    InvalidName(String),
    #[error("no ip ranges specified")]
    NoRanges,
    #[error("invalid range set {index}: {source}")]
    InvalidRangeSet { index: usize, source: RangeError },
    #[error("range set {a} overlaps with range set {b}")]
    RangeSetsOverlap { a: usize, b: usize },
    #[error("unknown CNI_ARGS {0:?} (without IgnoreUnknown=1)")]
    UnknownArgs(Vec<String>),
    #[error("invalid CNI_ARGS pair {0:?}")]
    InvalidArg(String),
    #[error("invalid requested ip {0:?}")]
    InvalidRequestedIp(String),
    #[error("requested ip {0} is not in any range set")]
    RequestedNotInRange(IpAddr),
    #[error("requested ips {0:?} could not all be allocated (one address per range set)")]
    RequestedUnfulfilled(Vec<IpAddr>),
    #[error("failed to allocate for range set {index}: requested ip {ip} is the subnet's gateway")]
    RequestedGateway { index: usize, ip: IpAddr },
    #[error(
        "failed to allocate for range set {index}: requested ip {ip} is not available in range set {ranges}"
    )]
    RequestedTaken {
        index: usize,
        ip: IpAddr,
        ranges: String,
    },
    #[error(
        "failed to allocate for range set {index}: {ip} has been allocated to {container_id}, duplicate allocation is not allowed"
    )]
    Duplicate {
        index: usize,
        ip: IpAddr,
        container_id: String,
    },
    #[error(
        "failed to allocate for range set {index}: no ip addresses available in range set {ranges}"
    )]
    Exhausted { index: usize, ranges: String },
    #[error("no address allocated to container {container_id} on {ifname}")]
    NotAllocated {
        container_id: String,
        ifname: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl Error {
    /// The CNI error code to report (see the module doc).
    pub fn code(&self) -> u32 {
        CODE_INTERNAL
    }
}

#[cfg(test)]
mod tests;
