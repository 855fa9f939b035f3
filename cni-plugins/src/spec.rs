//! CNI spec types shared by the runtime side and (later) the plugin binaries: versions, network
//! configuration lists, results, the error object and the runtime-config capabilities.
//!
//! Plugin configs stay `serde_json::Value` maps so that fields Keel does not know pass through
//! to the plugin untouched. This module does no I/O: reading directories and running binaries
//! belong to `runtime`.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Versions a network config list may declare (what libcni accepts for lists).
pub const SUPPORTED_VERSIONS: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// Well-known error codes of the spec (100 and up belong to the plugin).
pub mod code {
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    pub const UNSUPPORTED_FIELD: u32 = 2;
    pub const UNKNOWN_CONTAINER: u32 = 3;
    pub const INVALID_ENVIRONMENT: u32 = 4;
    pub const IO_FAILURE: u32 = 5;
    pub const DECODE_FAILURE: u32 = 6;
    pub const INVALID_CONFIG: u32 = 7;
    pub const TRY_AGAIN_LATER: u32 = 11;
    pub const PLUGIN_NOT_AVAILABLE: u32 = 50;
    pub const PLUGIN_NOT_AVAILABLE_LIMITED: u32 = 51;
}

/// A `major.minor.patch` version, ordered numerically.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub u32, pub u32, pub u32);

impl Version {
    pub const V0_4_0: Version = Version(0, 4, 0);
    pub const V1_1_0: Version = Version(1, 1, 0);

    pub fn parse(s: &str) -> Option<Version> {
        let mut parts = s.split('.').map(|p| p.parse::<u32>().ok());
        let v = Version(parts.next()??, parts.next()??, parts.next()??);
        parts.next().is_none().then_some(v)
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// Why a network configuration was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid JSON: {0}")]
    Json(String),
    #[error("not a JSON object")]
    NotObject,
    #[error("no cniVersion")]
    NoVersion,
    #[error("unsupported cniVersion {0:?} (supported: {supported})", supported = SUPPORTED_VERSIONS.join(", "))]
    UnsupportedVersion(String),
    #[error("no name")]
    NoName,
    #[error(
        "invalid name {0:?}: must start with a letter or digit, then letters, digits, '_', '.' or '-'"
    )]
    InvalidName(String),
    #[error("no plugins")]
    NoPlugins,
    #[error("plugin {index} is not a JSON object")]
    PluginNotObject { index: usize },
    #[error("plugin {index} has no type")]
    NoType { index: usize },
    #[error("plugin {index} has an invalid type {plugin_type:?}")]
    InvalidType { index: usize, plugin_type: String },
    #[error("field {field} must be a {expected}")]
    FieldType {
        field: &'static str,
        expected: &'static str,
    },
}

/// A network configuration list (`.conflist`), or a single `.conf` turned into a one-plugin list.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkConfigList {
    pub cni_version: String,
    pub name: String,
    pub disable_check: bool,
    pub disable_gc: bool,
    /// Each plugin's config as written (with `type`), without the list's `name`/`cniVersion`.
    pub plugins: Vec<Map<String, Value>>,
}

/// True for names the spec allows for networks and container ids (safe in file names, too).
pub fn valid_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

fn get_str<'a>(
    obj: &'a Map<String, Value>,
    field: &'static str,
) -> Result<Option<&'a str>, ConfigError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ConfigError::FieldType {
            field,
            expected: "string",
        }),
    }
}

/// `disableCheck`/`disableGC`: a bool, or (as libcni accepts) the strings "true"/"false".
fn get_flag(obj: &Map<String, Value>, field: &'static str) -> Result<bool, ConfigError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(true),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(false),
        Some(_) => Err(ConfigError::FieldType {
            field,
            expected: "boolean",
        }),
    }
}

impl NetworkConfigList {
    /// Parses a `.conflist`: `{cniVersion, name, plugins: [..], disableCheck?, disableGC?}`.
    pub fn from_list_bytes(bytes: &[u8]) -> Result<NetworkConfigList, ConfigError> {
        let obj = parse_object(bytes)?;
        let plugins = match obj.get("plugins") {
            None | Some(Value::Null) => return Err(ConfigError::NoPlugins),
            Some(Value::Array(a)) => a
                .iter()
                .enumerate()
                .map(|(index, p)| match p {
                    Value::Object(m) => Ok(m.clone()),
                    _ => Err(ConfigError::PluginNotObject { index }),
                })
                .collect::<Result<Vec<_>, _>>()?,
            Some(_) => {
                return Err(ConfigError::FieldType {
                    field: "plugins",
                    expected: "list",
                });
            }
        };
        let list = NetworkConfigList {
            cni_version: get_str(&obj, "cniVersion")?.unwrap_or_default().to_string(),
            name: get_str(&obj, "name")?.unwrap_or_default().to_string(),
            disable_check: get_flag(&obj, "disableCheck")?,
            disable_gc: get_flag(&obj, "disableGC")?,
            plugins,
        };
        list.validate()?;
        Ok(list)
    }

    /// Parses a single plugin `.conf` into a one-plugin list. A `.conf` that is really a list
    /// (has `plugins` and no `type`) is accepted as a list.
    pub fn from_conf_bytes(bytes: &[u8]) -> Result<NetworkConfigList, ConfigError> {
        let obj = parse_object(bytes)?;
        if obj.contains_key("plugins") && !obj.contains_key("type") {
            return Self::from_list_bytes(bytes);
        }
        let cni_version = get_str(&obj, "cniVersion")?.unwrap_or_default().to_string();
        let name = get_str(&obj, "name")?.unwrap_or_default().to_string();
        let disable_check = get_flag(&obj, "disableCheck")?;
        let mut plugin = obj;
        plugin.remove("cniVersion");
        plugin.remove("name");
        let list = NetworkConfigList {
            cni_version,
            name,
            disable_check,
            disable_gc: false,
            plugins: vec![plugin],
        };
        list.validate()?;
        Ok(list)
    }

    /// Checks what the runtime relies on: a supported version, a valid name, typed plugins.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.cni_version.is_empty() {
            return Err(ConfigError::NoVersion);
        }
        if !SUPPORTED_VERSIONS.contains(&self.cni_version.as_str()) {
            return Err(ConfigError::UnsupportedVersion(self.cni_version.clone()));
        }
        if self.name.is_empty() {
            return Err(ConfigError::NoName);
        }
        if !valid_name(&self.name) {
            return Err(ConfigError::InvalidName(self.name.clone()));
        }
        if self.plugins.is_empty() {
            return Err(ConfigError::NoPlugins);
        }
        for (index, p) in self.plugins.iter().enumerate() {
            match p.get("type") {
                None | Some(Value::Null) => return Err(ConfigError::NoType { index }),
                Some(Value::String(t)) if t.is_empty() => {
                    return Err(ConfigError::NoType { index });
                }
                Some(Value::String(t)) if t.contains('/') || t == "." || t == ".." => {
                    return Err(ConfigError::InvalidType {
                        index,
                        plugin_type: t.clone(),
                    });
                }
                Some(Value::String(_)) => {}
                Some(other) => {
                    return Err(ConfigError::InvalidType {
                        index,
                        plugin_type: other.to_string(),
                    });
                }
            }
        }
        Ok(())
    }

    /// The list's version, parsed (validated lists always have one).
    pub fn version(&self) -> Version {
        Version::parse(&self.cni_version).unwrap_or(Version(0, 0, 0))
    }

    /// The list as JSON, the shape it was read from (used by the result cache).
    pub fn to_value(&self) -> Value {
        let mut obj = Map::new();
        obj.insert("cniVersion".into(), self.cni_version.clone().into());
        obj.insert("name".into(), self.name.clone().into());
        if self.disable_check {
            obj.insert("disableCheck".into(), true.into());
        }
        if self.disable_gc {
            obj.insert("disableGC".into(), true.into());
        }
        obj.insert(
            "plugins".into(),
            Value::Array(self.plugins.iter().cloned().map(Value::Object).collect()),
        );
        Value::Object(obj)
    }
}

fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, ConfigError> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ConfigError::NotObject),
        Err(e) => Err(ConfigError::Json(e.to_string())),
    }
}

/// The `type` of a plugin config (present in validated lists).
pub fn plugin_type(plugin: &Map<String, Value>) -> &str {
    plugin.get("type").and_then(Value::as_str).unwrap_or("")
}

/// The capabilities a plugin declares with `"capabilities": {"portMappings": true, ..}`.
pub fn capabilities(plugin: &Map<String, Value>) -> Vec<&str> {
    match plugin.get("capabilities") {
        Some(Value::Object(caps)) => caps
            .iter()
            .filter(|(_, v)| v.as_bool() == Some(true))
            .map(|(k, _)| k.as_str())
            .collect(),
        _ => Vec::new(),
    }
}

/// One `portMappings` entry of `runtimeConfig`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    pub host_port: i32,
    pub container_port: i32,
    /// Lowercase: `tcp`, `udp`, `sctp`.
    pub protocol: String,
    #[serde(rename = "hostIP", default, skip_serializing_if = "String::is_empty")]
    pub host_ip: String,
}

/// The result of ADD (and the `prevResult` of chained plugins), for versions 0.3.0 to 1.1.0.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CniResult {
    pub cni_version: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<Interface>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<IpConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    #[serde(default, skip_serializing_if = "Dns::is_empty")]
    pub dns: Dns,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Interface {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// The netns path for interfaces inside the container; empty for host interfaces.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sandbox: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IpConfig {
    /// Address with prefix length (`10.1.0.5/24`).
    pub address: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    /// Index into `interfaces`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Route {
    pub dst: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advmss: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Dns {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub domain: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

impl Dns {
    pub fn is_empty(&self) -> bool {
        self.nameservers.is_empty()
            && self.domain.is_empty()
            && self.search.is_empty()
            && self.options.is_empty()
    }
}

/// Why a plugin's result could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResultError {
    #[error("result has no cniVersion")]
    NoVersion,
    #[error(
        "result version {0} uses the pre-0.3.0 ip4/ip6 format, which is not supported (configure cniVersion 0.3.0 or later)"
    )]
    Legacy(String),
    #[error("result version {0:?} is not supported")]
    UnsupportedVersion(String),
    #[error("invalid result: {0}")]
    Invalid(String),
}

impl CniResult {
    /// Reads a result of version 0.3.0 to 1.1.0 (0.3.x/0.4.0 have the same shape, plus an
    /// `ips[].version` that is ignored). 0.1.0/0.2.0 results are rejected.
    pub fn from_value(v: &Value) -> Result<CniResult, ResultError> {
        let version = v
            .get("cniVersion")
            .and_then(Value::as_str)
            .ok_or(ResultError::NoVersion)?;
        match Version::parse(version) {
            Some(ver) if ver < Version(0, 3, 0) => {
                return Err(ResultError::Legacy(version.to_string()));
            }
            Some(ver) if ver <= Version(1, 1, 0) => {}
            _ => return Err(ResultError::UnsupportedVersion(version.to_string())),
        }
        CniResult::deserialize(v).map_err(|e| ResultError::Invalid(e.to_string()))
    }

    /// The addresses on the interface named `ifname` inside the sandbox (IPs without an
    /// interface index count as belonging to it).
    pub fn ips_of(&self, ifname: &str) -> Vec<&IpConfig> {
        self.ips
            .iter()
            .filter(|ip| match ip.interface {
                None => true,
                Some(i) => self
                    .interfaces
                    .get(i)
                    .is_some_and(|iface| iface.name == ifname),
            })
            .collect()
    }
}

/// The error object a plugin prints on failure.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorObject {
    #[serde(default)]
    pub cni_version: String,
    pub code: u32,
    #[serde(default)]
    pub msg: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub details: String,
}

impl ErrorObject {
    /// Reads an error object; `None` when `bytes` is not one (a result, or garbage).
    pub fn from_bytes(bytes: &[u8]) -> Option<ErrorObject> {
        let v: Value = serde_json::from_slice(bytes).ok()?;
        v.get("code")?;
        ErrorObject::deserialize(&v).ok()
    }
}

#[cfg(test)]
mod tests;
