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
    /// The VLAN of the container's port (0: none): the bridge filters by VLAN, the host-side
    /// veth is in this VLAN as PVID, untagged, and so is the bridge itself when it is the
    /// gateway.
    #[serde(default)]
    pub vlan: i64,
    /// Keep the host-side veth in the bridge's default VLAN (1) besides `vlan`/`vlanTrunk`.
    #[serde(default = "default_true")]
    pub preserve_default_vlan: bool,
    /// Tagged VLANs the container's port also carries: `{"id": N}` or `{"minID": A, "maxID": B}`.
    #[serde(default)]
    pub vlan_trunk: Vec<TrunkEntry>,
    /// Drop frames from the container whose source MAC is not the container interface's.
    #[serde(default)]
    pub macspoofchk: bool,
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

fn default_true() -> bool {
    true
}

/// One `vlanTrunk` entry, as the reference plugin spells it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TrunkEntry {
    #[serde(default)]
    pub id: Option<i64>,
    #[serde(default, rename = "minID")]
    pub min_id: Option<i64>,
    #[serde(default, rename = "maxID")]
    pub max_id: Option<i64>,
}

/// Largest VLAN ID (4095 is reserved).
pub const MAX_VLAN: i64 = 4094;

fn vlan_id(v: i64, what: &str) -> Result<u16, PluginError> {
    if (1..=MAX_VLAN).contains(&v) {
        Ok(v as u16)
    } else {
        Err(PluginError::new(
            code::INVALID_CONFIG,
            format!("invalid {what} {v} (must be between 1 and {MAX_VLAN})"),
        ))
    }
}

impl TrunkEntry {
    /// The entry as an inclusive range of VLAN IDs.
    pub fn range(&self) -> Result<(u16, u16), PluginError> {
        match (self.id, self.min_id, self.max_id) {
            (Some(id), None, None) => {
                let id = vlan_id(id, "vlanTrunk id")?;
                Ok((id, id))
            }
            (None, Some(min), Some(max)) => {
                let (min, max) = (
                    vlan_id(min, "vlanTrunk minID")?,
                    vlan_id(max, "vlanTrunk maxID")?,
                );
                if min > max {
                    return Err(PluginError::new(
                        code::INVALID_CONFIG,
                        format!("invalid vlanTrunk range: minID {min} is above maxID {max}"),
                    ));
                }
                Ok((min, max))
            }
            _ => Err(PluginError::new(
                code::INVALID_CONFIG,
                "invalid vlanTrunk entry: give either \"id\" or both \"minID\" and \"maxID\"",
            )),
        }
    }
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
        if !(0..=MAX_VLAN).contains(&conf.vlan) {
            return Err(PluginError::new(
                code::INVALID_CONFIG,
                format!(
                    "invalid VLAN ID {} (must be between 0 and {MAX_VLAN})",
                    conf.vlan
                ),
            ));
        }
        for t in &conf.vlan_trunk {
            t.range()?;
        }
        Ok(conf)
    }

    /// The container port's VLAN (None for 0, no VLAN).
    pub fn vlan_id(&self) -> Option<u16> {
        u16::try_from(self.vlan).ok().filter(|v| *v != 0)
    }

    /// The `vlanTrunk` ranges (checked by [`NetConf::from_config`]).
    pub fn trunk(&self) -> Vec<(u16, u16)> {
        self.vlan_trunk
            .iter()
            .filter_map(|t| t.range().ok())
            .collect()
    }

    /// Whether the bridge must filter by VLAN.
    pub fn vlan_filtering(&self) -> bool {
        self.vlan_id().is_some() || !self.vlan_trunk.is_empty()
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
            (serde_json::json!({"vlan": -1}), code::INVALID_CONFIG),
            (serde_json::json!({"vlan": 4095}), code::INVALID_CONFIG),
            (serde_json::json!({"vlan": "ten"}), INTERNAL),
            (
                serde_json::json!({"vlanTrunk": [{"id": 0}]}),
                code::INVALID_CONFIG,
            ),
            (
                serde_json::json!({"vlanTrunk": [{"minID": 20, "maxID": 10}]}),
                code::INVALID_CONFIG,
            ),
            (
                serde_json::json!({"vlanTrunk": [{"minID": 20}]}),
                code::INVALID_CONFIG,
            ),
            (
                serde_json::json!({"vlanTrunk": [{"id": 5000}]}),
                code::INVALID_CONFIG,
            ),
            (serde_json::json!({"macspoofchk": "yes"}), INTERNAL),
            (serde_json::json!({"ipam": {"type": 5}}), INTERNAL),
        ];
        for (v, want) in cases {
            let got = conf(v.clone()).and_then(|c| c.ipam_type().map(|_| ()));
            assert_eq!(got.map_err(|e| e.code), Err(want), "{v}");
        }
        assert!(conf(serde_json::json!({"vlan": 0, "macspoofchk": false})).is_ok());
    }

    #[test]
    fn vlans() {
        let c = conf(serde_json::json!({"vlan": 0})).expect("valid");
        assert_eq!((c.vlan_id(), c.vlan_filtering()), (None, false));
        assert!(c.preserve_default_vlan);
        let c = conf(serde_json::json!({
            "vlan": 100, "preserveDefaultVlan": false, "macspoofchk": true,
            "vlanTrunk": [{"id": 7}, {"minID": 200, "maxID": 210}]
        }))
        .expect("valid");
        assert_eq!(c.vlan_id(), Some(100));
        assert!(c.vlan_filtering() && c.macspoofchk && !c.preserve_default_vlan);
        assert_eq!(c.trunk(), vec![(7, 7), (200, 210)]);
        let trunk_only = conf(serde_json::json!({"vlanTrunk": [{"id": 4094}]})).expect("valid");
        assert!(trunk_only.vlan_filtering() && trunk_only.vlan_id().is_none());
    }
}
