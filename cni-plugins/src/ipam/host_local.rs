//! The operations of host-local over an [`IpamConfig`]: each opens (and so locks) the store once,
//! which makes a whole ADD atomic with respect to concurrent runs.
//!
//! ADD takes one address per range set (the requested one if it falls in the set, else the next
//! free one in round-robin order) and gives back everything it took if any set fails. DEL frees
//! the attachment's addresses and is idempotent. CHECK wants at least one. GC frees every
//! allocation whose attachment is not listed as valid. STATUS fails when a range set is full.
//! [`HostLocal`] is the same behind the plugin skeleton's [`Plugin`] trait.

use std::net::IpAddr;

use ipnet::IpNet;

use super::config::{IpamConfig, valid_attachments};
use super::store::Store;
use super::{Error, RangeSet};
use crate::plugin::{Invocation, Plugin, PluginError};
use crate::spec::{CniResult, IpConfig, code};

/// The spec version results are built in (the plugin skeleton converts for older configs).
const RESULT_VERSION: &str = "1.1.0";

/// Releases what an unfinished ADD reserved, unless disarmed.
struct Undo<'a> {
    store: &'a Store,
    reserved: Vec<IpAddr>,
}

impl Drop for Undo<'_> {
    fn drop(&mut self) {
        for ip in &self.reserved {
            if let Err(e) = self.store.release(*ip) {
                tracing::warn!("host-local: rolling back {ip}: {e}");
            }
        }
    }
}

/// Assigns each requested address to the first range set holding it (one per set).
fn requested_per_set(cfg: &IpamConfig) -> Result<Vec<Option<IpAddr>>, Error> {
    let mut per_set = vec![None; cfg.range_sets.len()];
    let mut left = Vec::new();
    for ip in &cfg.requested {
        let idx = cfg
            .range_sets
            .iter()
            .position(|s| s.contains(*ip))
            .ok_or(Error::RequestedNotInRange(*ip))?;
        match &mut per_set[idx] {
            slot @ None => *slot = Some(*ip),
            Some(_) => left.push(*ip),
        }
    }
    if left.is_empty() {
        Ok(per_set)
    } else {
        Err(Error::RequestedUnfulfilled(left))
    }
}

fn ip_config(set: &RangeSet, ip: IpAddr) -> Option<IpConfig> {
    let range = set.range_for(ip)?;
    Some(IpConfig {
        address: IpNet::new(ip, range.subnet.prefix_len()).ok()?,
        gateway: Some(range.gateway),
        interface: None,
    })
}

/// ADD: one address from each range set, plus the configured routes and DNS.
pub fn add(cfg: &IpamConfig, container_id: &str, ifname: &str) -> Result<CniResult, Error> {
    let requested = requested_per_set(cfg)?;
    let store = Store::open(&cfg.store_dir())?;
    let held = store.find(container_id, ifname)?;
    let mut undo = Undo {
        store: &store,
        reserved: Vec::new(),
    };
    let mut ips = Vec::new();
    for (index, set) in cfg.range_sets.iter().enumerate() {
        let ip = match requested[index] {
            Some(ip) => {
                if set.range_for(ip).is_some_and(|r| r.gateway == ip) {
                    return Err(Error::RequestedGateway { index, ip });
                }
                if !store.reserve(container_id, ifname, ip, index)? {
                    return Err(Error::RequestedTaken {
                        index,
                        ip,
                        ranges: set.to_string(),
                    });
                }
                ip
            }
            None => {
                if let Some(ip) = held.iter().find(|ip| set.contains(**ip)) {
                    return Err(Error::Duplicate {
                        index,
                        ip: *ip,
                        container_id: container_id.to_string(),
                    });
                }
                let mut got = None;
                for (ip, _) in set.candidates(store.last_reserved(index)) {
                    if store.reserve(container_id, ifname, ip, index)? {
                        got = Some(ip);
                        break;
                    }
                }
                got.ok_or_else(|| Error::Exhausted {
                    index,
                    ranges: set.to_string(),
                })?
            }
        };
        undo.reserved.push(ip);
        ips.extend(ip_config(set, ip));
    }
    undo.reserved.clear();
    Ok(CniResult {
        cni_version: RESULT_VERSION.to_string(),
        interfaces: Vec::new(),
        ips,
        routes: cfg.routes.clone(),
        dns: cfg.dns.clone(),
    })
}

/// DEL: frees whatever the attachment holds (nothing held is fine).
pub fn del(cfg: &IpamConfig, container_id: &str, ifname: &str) -> Result<Vec<IpAddr>, Error> {
    Store::open(&cfg.store_dir())?.release_attachment(container_id, ifname)
}

/// CHECK: the attachment holds at least one address.
pub fn check(cfg: &IpamConfig, container_id: &str, ifname: &str) -> Result<(), Error> {
    if Store::open(&cfg.store_dir())?
        .find(container_id, ifname)?
        .is_empty()
    {
        return Err(Error::NotAllocated {
            container_id: container_id.to_string(),
            ifname: ifname.to_string(),
        });
    }
    Ok(())
}

/// GC: frees every allocation whose `(containerID, ifname)` is not in `valid`; returns them.
pub fn gc(cfg: &IpamConfig, valid: &[(String, String)]) -> Result<Vec<IpAddr>, Error> {
    let store = Store::open(&cfg.store_dir())?;
    let mut freed = Vec::new();
    for a in store.allocations()? {
        if !valid.iter().any(|(id, ifname)| a.is_for(id, ifname)) {
            store.release(a.ip)?;
            freed.push(a.ip);
        }
    }
    Ok(freed)
}

/// STATUS: every range set still has a free address (else [`Error::Exhausted`]).
pub fn status(cfg: &IpamConfig) -> Result<(), Error> {
    let store = Store::open(&cfg.store_dir())?;
    for (index, set) in cfg.range_sets.iter().enumerate() {
        if set
            .candidates(store.last_reserved(index))
            .all(|(ip, _)| store.is_reserved(ip))
        {
            return Err(Error::Exhausted {
                index,
                ranges: set.to_string(),
            });
        }
    }
    Ok(())
}

/// The host-local plugin for [`crate::plugin::run`].
#[derive(Debug, Default)]
pub struct HostLocal;

impl From<Error> for PluginError {
    fn from(e: Error) -> PluginError {
        PluginError::new(e.code(), e.to_string())
    }
}

fn config(inv: &Invocation) -> Result<IpamConfig, Error> {
    IpamConfig::from_config(&inv.config, &inv.args)
}

impl Plugin for HostLocal {
    fn add(&self, inv: &Invocation) -> Result<CniResult, PluginError> {
        Ok(add(&config(inv)?, &inv.container_id, &inv.ifname)?)
    }

    fn del(&self, inv: &Invocation) -> Result<(), PluginError> {
        del(&config(inv)?, &inv.container_id, &inv.ifname)?;
        Ok(())
    }

    fn check(&self, inv: &Invocation) -> Result<(), PluginError> {
        Ok(check(&config(inv)?, &inv.container_id, &inv.ifname)?)
    }

    fn status(&self, inv: &Invocation) -> Result<(), PluginError> {
        status(&config(inv)?).map_err(|e| match e {
            // The spec's "cannot service ADD requests".
            Error::Exhausted { .. } => PluginError::new(code::PLUGIN_NOT_AVAILABLE, e.to_string()),
            e => e.into(),
        })
    }

    fn gc(&self, inv: &Invocation) -> Result<(), PluginError> {
        let valid = valid_attachments(&inv.config)?;
        gc(&config(inv)?, &valid)?;
        Ok(())
    }
}
