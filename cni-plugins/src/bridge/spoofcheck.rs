//! `macspoofchk`: frames that a container sends with a source MAC other than its interface's
//! are dropped where they enter the bridge. The rules live in an nftables table of Keel's own,
//! `bridge keel-cni`, base chain `prerouting` (filter, bridge prerouting hook, priority -300,
//! before anything else on the bridge), written over netlink by keel-netkit: no `nft` process.
//!
//! One rule per container, `iifname <host veth> ether saddr != <container MAC> drop`, commented
//! `<network>:<container id>` like the masquerade rules, so DEL removes it by comment in one
//! transaction and CHECK finds it. The table and chain stay (shared by all containers).
//!
//! The reference plugin keeps two chains per container in `bridge nat`; a single rule matches
//! the same frames and leaves one thing to delete.

use keel_netkit::nft::{Batch, ChainType, CmpOp, Expr, Family, Hook, Nft};

use crate::plugin::{INTERNAL, PluginError};

/// The nftables table (bridge family) holding the spoof check rules.
pub const TABLE: &str = "keel-cni";
/// Its base chain.
pub const CHAIN: &str = "prerouting";
/// The chain's priority: the bridge family's earliest (`NF_BR_PRI_NAT_DST_BRIDGED`).
const PRIORITY: i32 = -300;

fn err(what: &'static str) -> impl Fn(keel_netkit::Error) -> PluginError {
    move |e| PluginError::new(INTERNAL, format!("{what} the MAC spoof check: {e}"))
}

/// The transaction that adds a container's rule (creating the table and chain when missing).
pub fn setup_batch(host_veth: &str, container_mac: [u8; 6], comment: &str) -> Batch {
    let mut batch = Batch::new();
    batch.add_table(Family::Bridge, TABLE).add_base_chain(
        Family::Bridge,
        TABLE,
        CHAIN,
        ChainType::Filter,
        Hook::Prerouting,
        PRIORITY,
    );
    let mut rule = Expr::iifname(host_veth);
    rule.extend(Expr::ether_saddr(CmpOp::Neq, container_mac));
    rule.push(Expr::Drop);
    batch.add_rule(Family::Bridge, TABLE, CHAIN, &rule, Some(comment));
    batch
}

/// Adds the rule of a container whose host-side veth is `host_veth`.
pub fn setup(host_veth: &str, container_mac: [u8; 6], comment: &str) -> Result<(), PluginError> {
    let mut nft = Nft::open().map_err(err("setting up"))?;
    nft.apply(&setup_batch(host_veth, container_mac, comment))
        .map_err(err("setting up"))
}

/// Removes a container's rule (none is fine).
pub fn teardown(comment: &str) -> Result<(), PluginError> {
    let mut nft = Nft::open().map_err(err("tearing down"))?;
    nft.delete_rules_with_comment(Family::Bridge, TABLE, comment)
        .map(|_| ())
        .map_err(err("tearing down"))
}

/// Whether the container's rule is in place.
pub fn is_set_up(comment: &str) -> Result<bool, PluginError> {
    let mut nft = Nft::open().map_err(err("checking"))?;
    Ok(nft
        .rules(Family::Bridge, TABLE)
        .map_err(err("checking"))?
        .iter()
        .any(|r| r.chain == CHAIN && r.comment.as_deref() == Some(comment)))
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut mac {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs() {
        assert_eq!(
            parse_mac("0a:1B:00:ff:10:02"),
            Some([0x0a, 0x1b, 0, 0xff, 0x10, 2])
        );
        for bad in [
            "",
            "0a:1b:00:ff:10",
            "0a:1b:00:ff:10:02:03",
            "0a:1b:00:ff:10:2",
            "zz:1b:00:ff:10:02",
        ] {
            assert_eq!(parse_mac(bad), None, "{bad}");
        }
    }
}
