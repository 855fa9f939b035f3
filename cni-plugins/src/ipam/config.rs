//! host-local's configuration: the `ipam` section of a network config (both the `ranges` form
//! and the legacy single `subnet` form), the addresses a runtime asks for (`IP=` in CNI_ARGS,
//! `args.cni.ips`, the `ips` capability in `runtimeConfig.ips`), and `resolvConf`. CNI_ARGS
//! keys other than `IP` are refused unless `IgnoreUnknown` is set, as the reference does.
//!
//! Reads at most the resolv.conf file it is pointed at; never touches the allocation store.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Map, Value};

use super::Error;
use super::ranges::{Range, RangeSet};
use crate::spec::{Dns, Route, valid_name};

/// Where allocations live when the config names no `dataDir`.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/cni/networks";

/// A validated host-local configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct IpamConfig {
    /// The network's name: the store is `<data_dir>/<name>`.
    pub name: String,
    pub data_dir: PathBuf,
    pub range_sets: Vec<RangeSet>,
    pub routes: Vec<Route>,
    pub dns: Dns,
    /// Addresses the runtime asked for, in the order given.
    pub requested: Vec<IpAddr>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawRange {
    #[serde(default)]
    subnet: String,
    range_start: Option<String>,
    range_end: Option<String>,
    gateway: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawIpam {
    /// The legacy single-range form.
    #[serde(flatten)]
    legacy: RawRange,
    #[serde(default)]
    ranges: Vec<Vec<RawRange>>,
    #[serde(default)]
    routes: Vec<Route>,
    data_dir: Option<String>,
    resolv_conf: Option<String>,
}

impl RawRange {
    fn to_range(&self) -> Result<Range, super::RangeError> {
        Range::new(
            &self.subnet,
            self.range_start.as_deref(),
            self.range_end.as_deref(),
            self.gateway.as_deref(),
        )
    }
}

fn parse_ip(s: &str) -> Result<IpAddr, Error> {
    // The `ips` capability may carry a prefix length (`10.1.0.5/24`); only the address counts.
    let addr = s.trim().split('/').next().unwrap_or_default();
    addr.parse()
        .map_err(|_| Error::InvalidRequestedIp(s.to_string()))
}

fn string_list(v: Option<&Value>, field: &'static str) -> Result<Vec<String>, Error> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| Error::Decode(format!("{field} must be a list of strings")))
            })
            .collect(),
        Some(_) => Err(Error::Decode(format!("{field} must be a list of strings"))),
    }
}

impl IpamConfig {
    /// Reads the plugin config (stdin, parsed) and the CNI_ARGS pairs.
    pub fn from_config(
        config: &Map<String, Value>,
        cni_args: &[(String, String)],
    ) -> Result<IpamConfig, Error> {
        let ipam = config.get("ipam").ok_or(Error::NoIpam)?;
        let raw = RawIpam::deserialize(ipam).map_err(|e| Error::Decode(e.to_string()))?;
        let name = config
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if !valid_name(&name) {
            return Err(Error::InvalidName(name));
        }

        let mut raw_sets: Vec<Vec<&RawRange>> = Vec::new();
        if !raw.legacy.subnet.is_empty() {
            raw_sets.push(vec![&raw.legacy]);
        }
        raw_sets.extend(raw.ranges.iter().map(|set| set.iter().collect()));
        if raw_sets.is_empty() {
            return Err(Error::NoRanges);
        }
        let mut range_sets: Vec<RangeSet> = Vec::new();
        for (index, set) in raw_sets.iter().enumerate() {
            let ranges = set
                .iter()
                .map(|r| r.to_range())
                .collect::<Result<Vec<_>, _>>()
                .and_then(RangeSet::new)
                .map_err(|source| Error::InvalidRangeSet { index, source })?;
            if let Some(other) = range_sets.iter().position(|s| s.overlaps(&ranges)) {
                return Err(Error::RangeSetsOverlap { a: other, b: index });
            }
            range_sets.push(ranges);
        }

        let mut requested = Vec::new();
        let mut unknown = Vec::new();
        let mut ignore_unknown = false;
        for (k, v) in cni_args {
            match k.as_str() {
                "IP" => {
                    for ip in v.split(',').filter(|s| !s.trim().is_empty()) {
                        requested.push(parse_ip(ip)?);
                    }
                }
                "IgnoreUnknown" => {
                    ignore_unknown = match v.to_ascii_lowercase().as_str() {
                        "1" | "true" => true,
                        "0" | "false" => false,
                        _ => return Err(Error::InvalidArg(format!("{k}={v}"))),
                    }
                }
                _ => unknown.push(format!("{k}={v}")),
            }
        }
        // Like the reference: other keys only with IgnoreUnknown (runtimes always set it).
        if !unknown.is_empty() && !ignore_unknown {
            return Err(Error::UnknownArgs(unknown));
        }
        let args_ips = config
            .get("args")
            .and_then(|a| a.get("cni"))
            .and_then(|c| c.get("ips"));
        for ip in string_list(args_ips, "args.cni.ips")? {
            requested.push(parse_ip(&ip)?);
        }
        let runtime_ips = config.get("runtimeConfig").and_then(|r| r.get("ips"));
        for ip in string_list(runtime_ips, "runtimeConfig.ips")? {
            requested.push(parse_ip(&ip)?);
        }
        let mut seen = std::collections::HashSet::new();
        requested.retain(|ip| seen.insert(*ip));

        let dns = match raw.resolv_conf.as_deref() {
            Some(path) if !path.is_empty() => {
                let path = Path::new(path);
                let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
                    path: path.to_path_buf(),
                    source,
                })?;
                parse_resolv_conf(&text)
            }
            _ => Dns::default(),
        };

        Ok(IpamConfig {
            name,
            data_dir: PathBuf::from(
                raw.data_dir
                    .filter(|d| !d.is_empty())
                    .unwrap_or_else(|| DEFAULT_DATA_DIR.to_string()),
            ),
            range_sets,
            routes: raw.routes,
            dns,
            requested,
        })
    }

    /// `<data_dir>/<name>`.
    pub fn store_dir(&self) -> PathBuf {
        self.data_dir.join(&self.name)
    }
}

/// The DNS settings of a resolv.conf: `nameserver`, `domain`, `search` and `options` lines.
pub fn parse_resolv_conf(text: &str) -> Dns {
    let mut dns = Dns::default();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let mut fields = line.split_whitespace();
        let values = |f: std::str::SplitWhitespace<'_>| f.map(str::to_string).collect::<Vec<_>>();
        match fields.next() {
            Some("nameserver") => dns.nameservers.extend(values(fields)),
            Some("domain") => dns.domain = fields.next().unwrap_or_default().to_string(),
            Some("search") => dns.search.extend(values(fields)),
            Some("options") => dns.options.extend(values(fields)),
            _ => {}
        }
    }
    dns
}

/// The `cni.dev/valid-attachments` of a GC config: `(containerID, ifname)` pairs.
pub fn valid_attachments(config: &Map<String, Value>) -> Result<Vec<(String, String)>, Error> {
    #[derive(Deserialize)]
    struct Attachment {
        #[serde(rename = "containerID")]
        container_id: String,
        ifname: String,
    }
    match config.get("cni.dev/valid-attachments") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(v) => Vec::<Attachment>::deserialize(v)
            .map(|list| {
                list.into_iter()
                    .map(|a| (a.container_id, a.ifname))
                    .collect()
            })
            .map_err(|e| Error::Decode(format!("cni.dev/valid-attachments: {e}"))),
    }
}
