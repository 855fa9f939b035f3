//! The apiserver's configuration, from kube-apiserver's flag names (the binary parses flags
//! into this; tests build it directly).

use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::path::PathBuf;

#[derive(Clone, Debug)]
pub struct Config {
    /// Where the embedded store, the PKI and admin.kubeconfig live.
    pub data_dir: PathBuf,
    pub bind_address: IpAddr,
    /// 0 picks a free port (tests); the chosen one is in `admin.kubeconfig`.
    pub secure_port: u16,
    /// etcd v3 endpoints; empty means the embedded store in `data_dir`.
    pub etcd_servers: Vec<String>,
    /// Prefix of every key in etcd (kube's --etcd-prefix).
    pub etcd_prefix: String,
    pub service_cluster_ip_range: ipnet::IpNet,
    pub service_node_port_range: RangeInclusive<u16>,
    /// Largest request body accepted, in bytes (kube: 3 MiB objects).
    pub max_request_body_bytes: usize,
    /// How often storage history is compacted.
    pub compaction_interval: std::time::Duration,
}

impl Config {
    pub fn new(data_dir: PathBuf) -> Config {
        Config {
            data_dir,
            bind_address: IpAddr::from([127, 0, 0, 1]),
            secure_port: 6443,
            etcd_servers: Vec::new(),
            etcd_prefix: "/registry-keel".to_string(),
            service_cluster_ip_range: ipnet::IpNet::V4(ipnet::Ipv4Net::new_assert(
                std::net::Ipv4Addr::new(10, 96, 0, 0),
                12,
            )),
            service_node_port_range: 30000..=32767,
            max_request_body_bytes: 3 * 1024 * 1024,
            compaction_interval: std::time::Duration::from_secs(300),
        }
    }
}
