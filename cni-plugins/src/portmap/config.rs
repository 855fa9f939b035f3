//! The portmap plugin's configuration: the fields of the reference plugin that Keel reads
//! (`snat`, `masqAll`, `markMasqBit`, `externalSetMarkChain`, `conditionsV4/V6`) and the
//! `runtimeConfig.portMappings` the runtime injects for the `portMappings` capability, checked
//! without touching the kernel.
//!
//! Keel writes nf_tables rules, not iptables ones, and needs no packet mark: `markMasqBit` is
//! accepted and ignored; `externalSetMarkChain` and `conditionsV4/V6` (iptables chain names and
//! match arguments) cannot be honoured and are refused as unsupported fields (code 2).

use std::net::IpAddr;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::plugin::PluginError;
use crate::spec::{PortMapping, code};

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    #[serde(default)]
    snat: Option<bool>,
    #[serde(default)]
    masq_all: bool,
    #[serde(default)]
    mark_masq_bit: Option<i64>,
    #[serde(default)]
    external_set_mark_chain: Option<String>,
    #[serde(default, rename = "conditionsV4")]
    conditions_v4: Option<Vec<String>>,
    #[serde(default, rename = "conditionsV6")]
    conditions_v6: Option<Vec<String>>,
    #[serde(default)]
    runtime_config: RuntimeConfig,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RuntimeConfig {
    #[serde(default)]
    port_mappings: Vec<PortMapping>,
}

/// Layer 4 protocols a mapping can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// The IP protocol number (`meta l4proto`).
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::Sctp => 132,
        }
    }
}

/// One checked port mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mapping {
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: Protocol,
    /// `None`: every local address of the host.
    pub host_ip: Option<IpAddr>,
}

/// The checked config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetConf {
    /// Masquerade hairpin (container to its own mapping) and localhost (127.0.0.0/8) traffic.
    pub snat: bool,
    /// Masquerade all traffic to the mapped ports.
    pub masq_all: bool,
    pub mappings: Vec<Mapping>,
}

fn invalid(msg: String) -> PluginError {
    PluginError::new(code::INVALID_CONFIG, msg)
}

fn port(what: &str, p: i32) -> Result<u16, PluginError> {
    u16::try_from(p)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| invalid(format!("invalid {what} {p}: want 1 to 65535")))
}

impl NetConf {
    /// Reads and checks the config of an invocation.
    pub fn parse(config: &Map<String, Value>) -> Result<NetConf, PluginError> {
        let raw: Raw = serde_json::from_value(Value::Object(config.clone())).map_err(|e| {
            PluginError::new(
                code::DECODE_FAILURE,
                format!("failed to parse the portmap config: {e}"),
            )
        })?;
        if raw.external_set_mark_chain.is_some() {
            return Err(PluginError::new(
                code::UNSUPPORTED_FIELD,
                "externalSetMarkChain is not supported: keel's portmap writes nf_tables rules and uses no mark",
            ));
        }
        if raw.conditions_v4.is_some() || raw.conditions_v6.is_some() {
            return Err(PluginError::new(
                code::UNSUPPORTED_FIELD,
                "conditionsV4/conditionsV6 are not supported: they are iptables match arguments",
            ));
        }
        // Kept only to accept configs written for the reference plugin.
        let _ = raw.mark_masq_bit;
        let mut mappings = Vec::new();
        for m in &raw.runtime_config.port_mappings {
            let protocol = match m.protocol.to_ascii_lowercase().as_str() {
                "" | "tcp" => Protocol::Tcp,
                "udp" => Protocol::Udp,
                "sctp" => Protocol::Sctp,
                other => {
                    return Err(invalid(format!(
                        "invalid protocol {other:?} of host port {}: want tcp, udp or sctp",
                        m.host_port
                    )));
                }
            };
            let host_ip = match m.host_ip.as_str() {
                "" => None,
                s => Some(s.parse::<IpAddr>().map_err(|_| {
                    invalid(format!("invalid hostIP {s:?} of host port {}", m.host_port))
                })?),
            };
            // An unspecified address (0.0.0.0, ::) means every address, as for a bind.
            let host_ip = host_ip.filter(|ip| !ip.is_unspecified());
            mappings.push(Mapping {
                host_port: port("hostPort", m.host_port)?,
                container_port: port("containerPort", m.container_port)?,
                protocol,
                host_ip,
            });
        }
        Ok(NetConf {
            snat: raw.snat.unwrap_or(true),
            masq_all: raw.masq_all,
            mappings,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: Value) -> Result<NetConf, PluginError> {
        match v {
            Value::Object(m) => NetConf::parse(&m),
            _ => unreachable!("test configs are objects"),
        }
    }

    #[test]
    fn defaults_and_mappings() {
        let c = parse(serde_json::json!({
            "type": "portmap",
            "runtimeConfig": {"portMappings": [
                {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
                {"hostPort": 5353, "containerPort": 53, "protocol": "UDP", "hostIP": "10.0.0.1"},
                {"hostPort": 9, "containerPort": 9, "protocol": "sctp", "hostIP": "0.0.0.0"},
            ]}
        }))
        .expect("config");
        assert!(c.snat);
        assert!(!c.masq_all);
        assert_eq!(c.mappings.len(), 3);
        assert_eq!(c.mappings[1].protocol, Protocol::Udp);
        assert_eq!(c.mappings[1].host_ip, "10.0.0.1".parse().ok());
        assert_eq!(c.mappings[2].host_ip, None);
        let none = parse(serde_json::json!({"type": "portmap", "snat": false})).expect("config");
        assert!(none.mappings.is_empty());
        assert!(!none.snat);
    }

    #[test]
    fn bad_mappings_name_what_is_wrong() {
        for (m, want) in [
            (
                serde_json::json!({"hostPort": 0, "containerPort": 80, "protocol": "tcp"}),
                "hostPort 0",
            ),
            (
                serde_json::json!({"hostPort": 80, "containerPort": 70000, "protocol": "tcp"}),
                "containerPort 70000",
            ),
            (
                serde_json::json!({"hostPort": 80, "containerPort": 80, "protocol": "icmp"}),
                "\"icmp\"",
            ),
            (
                serde_json::json!({"hostPort": 80, "containerPort": 80, "protocol": "tcp", "hostIP": "x"}),
                "hostIP \"x\"",
            ),
        ] {
            let e = parse(serde_json::json!({"runtimeConfig": {"portMappings": [m]}}))
                .expect_err("invalid mapping");
            assert_eq!(e.code, code::INVALID_CONFIG);
            assert!(e.msg.contains(want), "{} lacks {want}", e.msg);
        }
        let e = parse(serde_json::json!({"externalSetMarkChain": "KUBE-MARK-MASQ"}))
            .expect_err("unsupported");
        assert_eq!(e.code, code::UNSUPPORTED_FIELD);
    }
}
