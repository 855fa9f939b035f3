//! Fuzz bodies: what the `cargo fuzz` targets in `cni-plugins/fuzz/` run on each input, and what
//! the stable test `tests/fuzz.rs` runs over a corpus and seeded mutations, so that CI exercises
//! the same code without a nightly toolchain.
//!
//! Each body takes arbitrary bytes, must never panic on them, and panics (on purpose: that is
//! what a fuzzer reports) when an invariant breaks:
//! - [`network_config`]: `.conflist` and `.conf` parsing; an accepted list survives
//!   `to_value` and parsing again unchanged.
//! - [`plugin_config`]: the plugin side of one invocation: the skeleton's environment and
//!   stdin parsing, `prevResult`, and every plugin's config type (bridge, host-local's `ipam`
//!   section, portmap).
//! - [`result`]: results of every supported version and the error object; an accepted result
//!   converts to each supported version's format and reads back the same.
//!
//! Touches nothing outside memory: `ipam.resolvConf` (a file path) is dropped before the
//! host-local config is read.

use std::collections::HashMap;

use serde_json::{Map, Value};

use crate::plugin::{Invocation, result_json};
use crate::spec::{CniResult, ErrorObject, NetworkConfigList, SUPPORTED_VERSIONS, Version};

/// `.conflist` / `.conf` parsing and its round trip.
pub fn network_config(data: &[u8]) {
    if let Ok(list) = NetworkConfigList::from_list_bytes(data) {
        round_trip_list(&list);
    }
    if let Ok(list) = NetworkConfigList::from_conf_bytes(data) {
        round_trip_list(&list);
    }
}

fn round_trip_list(list: &NetworkConfigList) {
    let bytes = serde_json::to_vec(&list.to_value()).unwrap_or_default();
    match NetworkConfigList::from_list_bytes(&bytes) {
        Ok(again) => assert_eq!(&again, list, "conflist round trip"),
        Err(e) => panic!("an accepted list does not parse again: {e}"),
    }
    let _ = list.version();
    for p in &list.plugins {
        let _ = crate::spec::capabilities(p);
        let _ = crate::spec::plugin_type(p);
    }
}

/// The environment of an ADD, as a runtime sets it.
fn add_env() -> HashMap<String, String> {
    [
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "fuzz"),
        ("CNI_NETNS", "/run/netns/fuzz"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/opt/cni/bin"),
        ("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAME=fuzz"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// One plugin invocation's parsing: the skeleton, then every plugin's config type.
pub fn plugin_config(data: &[u8]) {
    let Ok(inv) = Invocation::from_parts(&add_env(), data.to_vec()) else {
        return;
    };
    let _ = inv.network_name();
    if let Ok(Some(prev)) = inv.prev_result() {
        round_trip_result(&prev);
    }
    let _ = crate::bridge::config::NetConf::from_config(&inv.config).map(|c| {
        let _ = (c.ipam_type(), c.vlan_id(), c.trunk(), c.vlan_filtering());
    });
    let _ = crate::portmap::config::NetConf::parse(&inv.config);
    let mut config: Map<String, Value> = inv.config.clone();
    if let Some(Value::Object(ipam)) = config.get_mut("ipam") {
        ipam.remove("resolvConf");
    }
    let _ = crate::ipam::IpamConfig::from_config(&config, &inv.args);
}

/// Results of every version and the error object, with their round trips.
pub fn result(data: &[u8]) {
    if let Some(e) = ErrorObject::from_bytes(data) {
        let bytes = serde_json::to_vec(&e).unwrap_or_default();
        assert_eq!(
            ErrorObject::from_bytes(&bytes).as_ref(),
            Some(&e),
            "error object round trip"
        );
    }
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    if let Ok(r) = CniResult::from_value(&value) {
        round_trip_result(&r);
    }
}

/// An accepted result, written in each supported version's format, reads back the same (but
/// for its version).
fn round_trip_result(r: &CniResult) {
    for v in SUPPORTED_VERSIONS {
        let Some(version) = Version::parse(v) else {
            continue;
        };
        let json = result_json(r, version);
        match CniResult::from_value(&json) {
            Ok(again) => {
                let mut want = r.clone();
                want.cni_version = version.to_string();
                assert_eq!(again, want, "result round trip through {v}: {json}");
            }
            Err(e) => panic!("an accepted result does not read back as {v}: {e}: {json}"),
        }
    }
}
