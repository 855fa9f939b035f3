//! `ipMasq`: source NAT for traffic leaving a container's subnet. Not implemented yet: ADD with
//! `ipMasq: true` fails with code 2 (unsupported field) before touching the host, and DEL has
//! nothing to remove. The plan is a table of our own (`keel-cni`, families ip/ip6) written over
//! nf_tables netlink by keel-netkit, one rule per container keyed by its id.

use crate::plugin::PluginError;
use crate::spec::{CniResult, code};

/// The error ADD gives for `ipMasq: true`.
pub fn unsupported() -> PluginError {
    PluginError::new(
        code::UNSUPPORTED_FIELD,
        "ipMasq is not supported yet by Keel's bridge plugin (set ipMasq to false)",
    )
}

/// Adds the masquerade rules of a container.
pub fn setup(_container_id: &str, _network: &str, _result: &CniResult) -> Result<(), PluginError> {
    Err(unsupported())
}

/// Removes the masquerade rules of a container (none can exist yet).
pub fn teardown(_container_id: &str, _network: &str) -> Result<(), PluginError> {
    Ok(())
}
