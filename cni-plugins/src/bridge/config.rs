//! The bridge plugin's network configuration: the fields of the reference plugin that Keel
//! reads, their defaults, and the checks that need no kernel. Unknown fields are ignored (the
//! runtime's `name`, `cniVersion`, `prevResult`, ... and other plugins' keys).
//!
//! A config that cannot be decoded fails with code 999, as the reference plugin's does, so that
//! runtimes see the same codes from both.

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::plugin::{INTERNAL, PluginError};
use crate::spec::code;

/// The bridge used when the config names none.
pub const DEFAULT_BRIDGE: &str = "cni0";

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetConf {
    #[serde(default = "default_bridge")]
    pub bridge: String,
    #[serde(default)]
    pub is_gateway: bool,
    /// Implies `is_gateway`.
    #[serde(default)]
    pub is_default_gateway: bool,
    /// Replace a different address of the same family on the bridge instead of failing.
    #[serde(default)]
    pub force_address: bool,
    #[serde(default)]
    pub ip_masq: bool,
    #[serde(default)]
    pub mtu: Option<u32>,
    #[serde(default)]
    pub hairpin_mode: bool,
    #[serde(default)]
    pub promisc_mode: bool,
    #[serde(default)]
    pub vlan: Option<i64>,
    #[serde(default)]
    pub macspoofchk: Option<bool>,
    /// Duplicate address detection for IPv6 in the container; off by default so that nothing
    /// waits for it (IFA_F_NODAD and `accept_dad = 0`).
    #[serde(default, rename = "enabledad")]
    pub enable_dad: bool,
    #[serde(default)]
    pub ipam: Option<Map<String, Value>>,
}

fn default_bridge() -> String {
    DEFAULT_BRIDGE.to_string()
}

/// Smallest MTU the kernel accepts for IPv4 on Ethernet.
pub const MIN_MTU: u32 = 68;
/// Largest MTU a veth takes.
pub const MAX_MTU: u32 = 65535;

impl NetConf {
    /// Reads and checks the config of an invocation.
    pub fn from_config(config: &Map<String, Value>) -> Result<NetConf, PluginError> {
        let mut conf = NetConf::deserialize(Value::Object(config.clone()))
            .map_err(|e| PluginError::new(INTERNAL, format!("failed to load netconf: {e}")))?;
        if conf.is_default_gateway {
            conf.is_gateway = true;
        }
        if conf.bridge.is_empty() {
            conf.bridge = default_bridge();
        }
        if conf.bridge.len() > 15 || conf.bridge.contains(['/', ':', ' ']) {
            return Err(PluginError::new(
                INTERNAL,
                format!("invalid bridge name {:?}", conf.bridge),
            ));
        }
        if let Some(mtu) = conf.mtu
            && !(MIN_MTU..=MAX_MTU).contains(&mtu)
        {
            return Err(PluginError::new(
                INTERNAL,
                format!("invalid mtu {mtu}: must be between {MIN_MTU} and {MAX_MTU}"),
            ));
        }
        if conf.vlan.is_some_and(|v| v != 0) {
            return Err(PluginError::new(
                code::UNSUPPORTED_FIELD,
                "vlan is not supported by Keel's bridge plugin",
            ));
        }
        if conf.macspoofchk == Some(true) {
            return Err(PluginError::new(
                code::UNSUPPORTED_FIELD,
                "macspoofchk is not supported by Keel's bridge plugin",
            ));
        }
        Ok(conf)
    }

    /// The IPAM plugin's `type`, when the config has an `ipam` section (without one the bridge
    /// only wires layer 2, as the reference plugin does).
    pub fn ipam_type(&self) -> Result<Option<&str>, PluginError> {
        match &self.ipam {
            None => Ok(None),
            Some(ipam) => match ipam.get("type") {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(t)) if t.is_empty() => Ok(None),
                Some(Value::String(t)) => Ok(Some(t)),
                Some(_) => Err(PluginError::new(
                    INTERNAL,
                    "failed to load netconf: ipam.type must be a string",
                )),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(v: Value) -> Result<NetConf, PluginError> {
        match v {
            Value::Object(m) => NetConf::from_config(&m),
            _ => panic!("test config must be an object"),
        }
    }

    #[test]
    fn defaults_and_implications() {
        let c = conf(serde_json::json!({"name": "n", "type": "bridge", "isDefaultGateway": true}))
            .expect("valid");
        assert_eq!(c.bridge, "cni0");
        assert!(c.is_gateway && !c.enable_dad && !c.ip_masq);
        assert_eq!(c.ipam_type().expect("ipam"), None);
    }

    #[test]
    fn rejections_carry_the_reference_codes() {
        let cases = [
            (serde_json::json!({"mtu": "abc"}), INTERNAL),
            (serde_json::json!({"mtu": -5}), INTERNAL),
            (serde_json::json!({"mtu": 70000}), INTERNAL),
            (
                serde_json::json!({"bridge": "a-very-long-bridge-name"}),
                INTERNAL,
            ),
            (serde_json::json!({"vlan": 100}), code::UNSUPPORTED_FIELD),
            (
                serde_json::json!({"macspoofchk": true}),
                code::UNSUPPORTED_FIELD,
            ),
            (serde_json::json!({"ipam": {"type": 5}}), INTERNAL),
        ];
        for (v, want) in cases {
            let got = conf(v.clone()).and_then(|c| c.ipam_type().map(|_| ()));
            assert_eq!(got.map_err(|e| e.code), Err(want), "{v}");
        }
        assert!(conf(serde_json::json!({"vlan": 0, "macspoofchk": false})).is_ok());
    }
}
