//! The `portmap` CNI plugin: forwards host ports to a container (the `portMappings`
//! capability), chained after an interface plugin whose result (`prevResult`) gives the
//! container IPs. It writes nf_tables rules over netlink through keel-netkit, in tables of its
//! own (`ip keel-portmap`, `ip6 keel-portmap`; the rule shapes are in [`rules`]); no iptables.
//!
//! - ADD: no `portMappings` → nothing is done. Otherwise the container's rules (comment
//!   `<network>:<container id>`) are replaced in one transaction per family, and, when `snat`
//!   is on, `net.ipv4.conf.<if>.route_localnet = 1` is set on the host-side interfaces of
//!   `prevResult` (the bridge): the kernel refuses to route a 127.0.0.1 source out of a
//!   non-loopback interface otherwise, so `127.0.0.1:<hostPort>` would not reach the container.
//!   The reference plugin does the same. The output is `prevResult`, unchanged.
//! - DEL: removes the rules with the container's comment, in both families; idempotent and
//!   needs no `prevResult`. The tables and chains stay (shared by all containers).
//! - CHECK: every rule the mappings need is there (counted per family and chain).
//!
//! Owns only the rules it tags; never deletes the tables, never touches other tables.

pub mod config;
pub mod rules;

use std::collections::BTreeMap;
use std::net::IpAddr;

use keel_netkit::nft::{Family, Nft};
use keel_netkit::sysctl;

use crate::bridge::masq::comment;
use crate::plugin::{INTERNAL, Invocation, Plugin, PluginError};
use crate::spec::{CniResult, code};
use config::NetConf;

/// The plugin, for `plugin::run`.
#[derive(Debug, Default)]
pub struct Portmap;

fn nft_err(context: &'static str) -> impl Fn(keel_netkit::Error) -> PluginError {
    move |e| PluginError::new(INTERNAL, format!("{context}: {e}"))
}

fn container_ips(prev: &CniResult) -> Vec<IpAddr> {
    prev.ips.iter().map(|ip| ip.address.addr()).collect()
}

fn prev_result(inv: &Invocation) -> Result<CniResult, PluginError> {
    inv.prev_result()?.ok_or_else(|| {
        PluginError::new(
            code::INVALID_CONFIG,
            "portmap is a chained plugin: the config has no prevResult (the container IPs)",
        )
    })
}

/// Removes the container's rules in both families.
fn teardown(nft: &mut Nft, comment: &str) -> Result<(), PluginError> {
    for family in [Family::Ipv4, Family::Ipv6] {
        nft.delete_rules_with_comment(family, rules::TABLE, comment)
            .map_err(nft_err("failed to remove the port mapping rules"))?;
    }
    Ok(())
}

/// `route_localnet = 1` on the host-side interfaces of the result that exist.
fn enable_localnet_routing(prev: &CniResult) -> Result<(), PluginError> {
    for iface in prev.interfaces.iter().filter(|i| i.sandbox.is_empty()) {
        let key = format!("net/ipv4/conf/{}/route_localnet", iface.name);
        if std::path::Path::new("/proc/sys").join(&key).exists() {
            sysctl::ensure(&key, "1").map_err(|e| {
                PluginError::new(
                    INTERNAL,
                    format!("failed to enable route_localnet on {}: {e}", iface.name),
                )
            })?;
        }
    }
    Ok(())
}

impl Plugin for Portmap {
    fn add(&self, inv: &Invocation) -> Result<CniResult, PluginError> {
        let conf = NetConf::parse(&inv.config)?;
        let prev = prev_result(inv)?;
        if conf.mappings.is_empty() {
            return Ok(prev);
        }
        let planned = rules::plan(&conf, &container_ips(&prev));
        let comment = comment(inv.network_name(), &inv.container_id);
        let mut nft = Nft::open().map_err(nft_err("failed to open nf_tables"))?;
        // A repeated ADD replaces the rules instead of doubling them.
        teardown(&mut nft, &comment)?;
        for batch in rules::batches(&planned, &comment) {
            if let Err(e) = nft.apply(&batch) {
                let _ = teardown(&mut nft, &comment);
                return Err(nft_err("failed to add the port mapping rules")(e));
            }
        }
        if conf.snat
            && planned.iter().any(|r| r.family == Family::Ipv4)
            && let Err(e) = enable_localnet_routing(&prev)
        {
            let _ = teardown(&mut nft, &comment);
            return Err(e);
        }
        Ok(prev)
    }

    fn del(&self, inv: &Invocation) -> Result<(), PluginError> {
        // The config is read so that a broken one is reported, but DEL needs nothing from it.
        NetConf::parse(&inv.config)?;
        let mut nft = Nft::open().map_err(nft_err("failed to open nf_tables"))?;
        teardown(&mut nft, &comment(inv.network_name(), &inv.container_id))
    }

    fn check(&self, inv: &Invocation) -> Result<(), PluginError> {
        let conf = NetConf::parse(&inv.config)?;
        let prev = prev_result(inv)?;
        let comment = comment(inv.network_name(), &inv.container_id);
        let mut want: BTreeMap<(&str, &str), usize> = BTreeMap::new();
        for r in rules::plan(&conf, &container_ips(&prev)) {
            *want.entry((r.family.name(), r.chain)).or_default() += 1;
        }
        let mut nft = Nft::open().map_err(nft_err("failed to open nf_tables"))?;
        let mut have: BTreeMap<(&str, String), usize> = BTreeMap::new();
        for family in [Family::Ipv4, Family::Ipv6] {
            for r in nft
                .rules(family, rules::TABLE)
                .map_err(nft_err("failed to list the port mapping rules"))?
            {
                if r.comment.as_deref() == Some(comment.as_str()) {
                    *have.entry((family.name(), r.chain)).or_default() += 1;
                }
            }
        }
        for ((family, chain), n) in want {
            let found = have.get(&(family, chain.to_string())).copied().unwrap_or(0);
            if found != n {
                return Err(PluginError::new(
                    INTERNAL,
                    format!(
                        "container {}: {family} {} {chain} has {found} port mapping rules, want {n}",
                        inv.container_id,
                        rules::TABLE
                    ),
                ));
            }
        }
        Ok(())
    }
}
