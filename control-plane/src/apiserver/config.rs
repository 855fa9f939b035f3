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
    /// The address the `kubernetes` Service's endpoints name (kube's --advertise-address);
    /// None: see `advertise_address()`.
    pub advertise_address: Option<IpAddr>,
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
            advertise_address: None,
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

impl Config {
    /// The advertised address: the flag's, else the bind address unless it is unspecified,
    /// else the host's first non-loopback IPv4 address (the one its default route uses), else
    /// 127.0.0.1.
    pub fn advertise_address(&self) -> IpAddr {
        if let Some(address) = self.advertise_address {
            return address;
        }
        if !self.bind_address.is_unspecified() {
            return self.bind_address;
        }
        host_ipv4().unwrap_or(IpAddr::from([127, 0, 0, 1]))
    }
}

/// The source address of the host's default IPv4 route. Connecting a UDP socket only picks
/// the route; no packet is sent.
fn host_ipv4() -> Option<IpAddr> {
    let socket = std::net::UdpSocket::bind(("0.0.0.0", 0)).ok()?;
    socket.connect(("192.0.2.1", 9)).ok()?;
    let address = socket.local_addr().ok()?.ip();
    (!address.is_loopback() && !address.is_unspecified()).then_some(address)
}
