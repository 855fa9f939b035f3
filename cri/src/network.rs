//! The pod network over CNI: [`CniNetwork`] implements [`PodNetwork`] with keel-cni's runtime
//! side, the way containerd's CRI plugin uses go-cni.
//!
//! A sandbox gets the `loopback` plugin first (ifname `lo`, network `cni-loopback`), then the
//! first valid config of the conf dir (ifname `eth0`) with the Kubernetes `CNI_ARGS` and the
//! `portMappings` capability. Both attachments are cached by keel-cni under the cache dir, so
//! teardown works from the cache even after the conf dir changed. This module never edits the
//! conf dir and does no networking itself: every host change is made by a plugin.

use std::net::IpAddr;
use std::path::PathBuf;

use keel_cni::runtime::{self as cni, Attachment, Cni, ConfDir};
use keel_cni::spec::NetworkConfigList;
use serde_json::{Map, Value, json};

use crate::config::CniConfig;
use crate::runtime::{Error, NetworkAttachment, PodNetwork};

/// The network name of the implicit loopback attachment (as containerd names it).
pub const LOOPBACK_NETWORK: &str = "cni-loopback";
/// The pod's main interface.
pub const POD_IFNAME: &str = "eth0";

/// CNI as keel-cri's pod network.
#[derive(Debug)]
pub struct CniNetwork {
    conf: ConfDir,
    cni: Cni,
}

fn loopback_list() -> NetworkConfigList {
    NetworkConfigList {
        // The oldest list version every loopback plugin speaks; it needs no prevResult.
        cni_version: "0.3.1".into(),
        name: LOOPBACK_NETWORK.into(),
        disable_check: false,
        disable_gc: false,
        plugins: vec![Map::from_iter([("type".to_string(), json!("loopback"))])],
    }
}

/// How a CNI failure reaches the CRI caller: retryable ones as `Unavailable`.
fn to_cri(what: &str, att: &NetworkAttachment, e: cni::Error) -> Error {
    let msg = format!(
        "{what} of pod {}/{} (sandbox {}): {e}",
        att.pod_namespace, att.pod_name, att.sandbox_id
    );
    match e {
        e if e.is_transient() => Error::Unavailable(msg),
        cni::Error::InvalidAttachment { .. } => Error::InvalidArgument(msg),
        _ => Error::Internal(msg),
    }
}

impl CniNetwork {
    pub fn new(cni: &CniConfig, cache_dir: PathBuf) -> CniNetwork {
        CniNetwork {
            conf: ConfDir::new(cni.conf_dir.clone()),
            cni: Cni::new(cni.bin_dirs.clone(), &cache_dir),
        }
    }

    /// How long one plugin may run before it is killed (default 60 s).
    pub fn with_timeout(mut self, timeout: std::time::Duration) -> CniNetwork {
        self.cni = self.cni.with_timeout(timeout);
        self
    }

    fn attachment(att: &NetworkAttachment, ifname: &str) -> Attachment {
        Attachment {
            container_id: att.sandbox_id.clone(),
            netns: att.netns.clone(),
            ifname: ifname.to_string(),
            args: vec![
                ("IgnoreUnknown".into(), "1".into()),
                ("K8S_POD_NAMESPACE".into(), att.pod_namespace.clone()),
                ("K8S_POD_NAME".into(), att.pod_name.clone()),
                ("K8S_POD_INFRA_CONTAINER_ID".into(), att.sandbox_id.clone()),
                ("K8S_POD_UID".into(), att.pod_uid.clone()),
            ],
            capability_args: Map::new(),
        }
    }

    fn pod_attachment(att: &NetworkAttachment) -> Attachment {
        let mut a = Self::attachment(att, POD_IFNAME);
        if !att.port_mappings.is_empty() {
            let pms: Vec<Value> = att
                .port_mappings
                .iter()
                .map(|p| {
                    let mut m = json!({
                        "hostPort": p.host_port,
                        "containerPort": p.container_port,
                        "protocol": p.protocol.to_ascii_lowercase(),
                    });
                    if !p.host_ip.is_empty() {
                        m["hostIP"] = json!(p.host_ip);
                    }
                    m
                })
                .collect();
            a.capability_args
                .insert("portMappings".into(), Value::Array(pms));
        }
        a
    }

    /// GC: detaches every cached attachment whose sandbox is not in `live_sandboxes`, and (for
    /// 1.1.0 lists) lets the plugins free what they hold for others.
    pub fn gc(&self, live_sandboxes: &[String]) -> Result<(), Error> {
        let mut first_err = None;
        for entry in self.cni.cache().all() {
            if !live_sandboxes.contains(&entry.container_id)
                && let Err(e) = self.cni.del_cached(&entry, None)
            {
                first_err.get_or_insert(Error::Internal(format!("cni gc: {e}")));
            }
        }
        if let Ok(loaded) = self.conf.current() {
            let valid: Vec<(String, String)> = live_sandboxes
                .iter()
                .map(|s| (s.clone(), POD_IFNAME.to_string()))
                .collect();
            if let Err(e) = self.cni.gc(&loaded.list, &valid) {
                first_err.get_or_insert(Error::Internal(format!("cni gc: {e}")));
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

/// The pod's IPs from the `eth0` addresses of the result (without prefix length), IPv4 first,
/// otherwise in result order: the first is the primary.
fn pod_ips(result: &keel_cni::spec::CniResult) -> Vec<String> {
    let mut ips: Vec<IpAddr> = result
        .ips_of(POD_IFNAME)
        .iter()
        .map(|ip| ip.address.addr())
        .collect();
    ips.sort_by_key(|ip| !ip.is_ipv4());
    ips.dedup();
    ips.iter().map(ToString::to_string).collect()
}

impl PodNetwork for CniNetwork {
    /// Re-reads the conf dir only when it changed (see `keel_cni::runtime::ConfDir`).
    fn ready(&self) -> Result<(), String> {
        self.conf.current().map(|_| ()).map_err(|e| e.to_string())
    }

    fn setup(&self, att: &NetworkAttachment) -> Result<Vec<String>, Error> {
        let loaded = self
            .conf
            .current()
            .map_err(|e| Error::FailedPrecondition(format!("the pod network is not ready: {e}")))?;
        let lo = Self::attachment(att, "lo");
        self.cni
            .add(&loopback_list(), &lo)
            .map_err(|e| to_cri("loopback setup", att, e))?;
        let result = match self.cni.add(&loaded.list, &Self::pod_attachment(att)) {
            Ok(r) => r,
            Err(e) => {
                if let Err(lo_err) = self.cni.del(&loopback_list(), &lo) {
                    tracing::warn!(sandbox = %att.sandbox_id, error = %lo_err,
                        "undoing the loopback attachment failed");
                }
                return Err(to_cri("network setup", att, e));
            }
        };
        let ips = pod_ips(&result);
        if ips.is_empty() {
            tracing::warn!(sandbox = %att.sandbox_id, network = %loaded.list.name,
                "the cni result has no address on eth0");
        }
        Ok(ips)
    }

    /// DEL of whatever is cached for the sandbox (whatever the conf dir says now); without a
    /// cache entry, DEL of the current config (if any) without prevResult; then loopback.
    fn teardown(&self, att: &NetworkAttachment) -> Result<(), Error> {
        let mut first_err: Option<Error> = None;
        let cached: Vec<_> = self
            .cni
            .cached_attachments(&att.sandbox_id)
            .into_iter()
            .filter(|e| e.network_name != LOOPBACK_NETWORK)
            .collect();
        if cached.is_empty() {
            if let Ok(loaded) = self.conf.current()
                && let Err(e) = self.cni.del(&loaded.list, &Self::pod_attachment(att))
            {
                first_err = Some(to_cri("network teardown", att, e));
            }
        } else {
            for entry in &cached {
                if let Err(e) = self.cni.del_cached(entry, Some(&att.netns)) {
                    first_err.get_or_insert(to_cri("network teardown", att, e));
                }
            }
        }
        if let Err(e) = self.cni.del(&loopback_list(), &Self::attachment(att, "lo")) {
            first_err.get_or_insert(to_cri("loopback teardown", att, e));
        }
        first_err.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_ips_are_eth0_addresses_ipv4_first() {
        let result = keel_cni::spec::CniResult::from_value(&json!({
            "cniVersion": "1.0.0",
            "interfaces": [{"name": "cni0"}, {"name": "eth0", "sandbox": "/run/netns/x"}],
            "ips": [
                {"address": "10.9.0.1/24", "interface": 0},
                {"address": "fd00::7/64", "interface": 1},
                {"address": "10.9.0.7/24", "interface": 1}
            ]
        }))
        .expect("result");
        assert_eq!(pod_ips(&result), ["10.9.0.7", "fd00::7"]);
    }

    #[test]
    fn pod_attachment_carries_kubernetes_args_and_port_mappings() {
        let att = NetworkAttachment {
            sandbox_id: "abc".into(),
            netns: "/run/netns/x".into(),
            pod_name: "web".into(),
            pod_namespace: "prod".into(),
            pod_uid: "u1".into(),
            port_mappings: vec![crate::runtime::PortMapping {
                host_port: 8443,
                container_port: 443,
                protocol: "UDP".into(),
                host_ip: "127.0.0.1".into(),
            }],
        };
        let a = CniNetwork::pod_attachment(&att);
        assert_eq!(
            a.cni_args(),
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=prod;K8S_POD_NAME=web;K8S_POD_INFRA_CONTAINER_ID=abc;K8S_POD_UID=u1"
        );
        assert_eq!(a.ifname, "eth0");
        assert_eq!(
            a.capability_args["portMappings"],
            json!([{"hostPort": 8443, "containerPort": 443, "protocol": "udp", "hostIP": "127.0.0.1"}])
        );
        assert!(
            CniNetwork::attachment(&att, "lo")
                .capability_args
                .is_empty()
        );
    }
}
