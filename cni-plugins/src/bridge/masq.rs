//! `ipMasq`: source NAT for traffic a container sends outside its subnet, in nftables tables
//! of Keel's own (`ip keel-cni` and `ip6 keel-cni`, chain `postrouting`, NAT hook at srcnat
//! priority), written over netlink by keel-netkit: no `nft` or `iptables` process.
//!
//! Each container IP gets two rules, both commented `<network>:<container id>`: traffic to its
//! own subnet returns unchanged, anything else but multicast is masqueraded. DEL removes the
//! rules carrying the comment, in one transaction. The tables and chains stay (shared, like the
//! bridge).

use keel_netkit::nft::{Family, Nft, masquerade_batch};

use crate::plugin::{INTERNAL, PluginError};
use crate::spec::CniResult;

/// The nftables table (in both the ip and ip6 families) holding the masquerade rules.
pub const TABLE: &str = "keel-cni";

/// nft shows comments of up to 128 bytes.
const MAX_COMMENT: usize = 127;

/// The comment that keys a container's rules.
pub fn comment(network: &str, container_id: &str) -> String {
    let room = MAX_COMMENT.saturating_sub(container_id.len() + 1);
    let network: String = network.chars().take(room).collect();
    format!("{network}:{container_id}")
}

fn err(e: keel_netkit::Error) -> PluginError {
    PluginError::new(INTERNAL, format!("failed to set up IP masquerading: {e}"))
}

/// Adds the masquerade rules of a container's IPs.
pub fn setup(container_id: &str, network: &str, result: &CniResult) -> Result<(), PluginError> {
    let mut nft = Nft::open().map_err(err)?;
    let comment = comment(network, container_id);
    for ip in &result.ips {
        nft.apply(&masquerade_batch(
            TABLE,
            ip.address.addr(),
            &ip.address,
            &comment,
        ))
        .map_err(err)?;
    }
    Ok(())
}

/// Removes the masquerade rules of a container (none is fine).
pub fn teardown(container_id: &str, network: &str) -> Result<(), PluginError> {
    let mut nft = Nft::open().map_err(err)?;
    let comment = comment(network, container_id);
    for family in [Family::Ipv4, Family::Ipv6] {
        nft.delete_rules_with_comment(family, TABLE, &comment)
            .map_err(|e| {
                PluginError::new(
                    INTERNAL,
                    format!("failed to tear down IP masquerading: {e}"),
                )
            })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn comments_fit_nft() {
        let id = "a".repeat(64);
        assert_eq!(super::comment("net", &id), format!("net:{id}"));
        assert!(super::comment(&"n".repeat(200), &id).len() <= super::MAX_COMMENT);
    }
}
