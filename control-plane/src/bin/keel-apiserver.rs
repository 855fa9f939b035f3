//! keel-apiserver: parses kube-apiserver-style flags into a `Config` and runs the apiserver
//! until SIGTERM or SIGINT.

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use keel_control_plane::apiserver::{self, Config};

/// A lean Kubernetes API server: HTTPS, embedded storage (or etcd), kubectl-compatible.
///
/// On first start it writes a CA, serving and admin certificates under DATA_DIR/pki and
/// DATA_DIR/admin.kubeconfig, with which `kubectl --kubeconfig DATA_DIR/admin.kubeconfig`
/// works at once.
#[derive(Debug, Parser)]
#[command(name = "keel-apiserver", version)]
struct Flags {
    /// Where the embedded store, the PKI and admin.kubeconfig live.
    #[arg(long, default_value = "/var/lib/keel/apiserver")]
    data_dir: PathBuf,
    /// The address to serve HTTPS on.
    #[arg(long, default_value = "127.0.0.1")]
    bind_address: IpAddr,
    /// The address advertised to the cluster as the `kubernetes` Service's endpoint; default:
    /// --bind-address unless it is unspecified, else the host's first non-loopback IPv4.
    #[arg(long)]
    advertise_address: Option<IpAddr>,
    /// The HTTPS port (0 picks a free one).
    #[arg(long, default_value_t = 6443)]
    secure_port: u16,
    /// etcd v3 endpoints, comma separated; without them the embedded store in --data-dir is used.
    #[arg(long, value_delimiter = ',')]
    etcd_servers: Vec<String>,
    /// Prefix of every key in etcd.
    #[arg(long, default_value = "/registry-keel")]
    etcd_prefix: String,
    /// The range Service cluster IPs are allocated from.
    #[arg(long, default_value = "10.96.0.0/12")]
    service_cluster_ip_range: ipnet::IpNet,
    /// The range NodePorts are allocated from, as FIRST-LAST.
    #[arg(long, default_value = "30000-32767")]
    service_node_port_range: String,
    /// Log filter (tracing's EnvFilter syntax); RUST_LOG, when set, wins.
    #[arg(long, default_value = "info")]
    log_level: String,
}

fn main() -> anyhow::Result<()> {
    let flags = Flags::parse();
    keel_control_plane::logging::init(&flags.log_level).map_err(anyhow::Error::msg)?;
    let (first, last) = flags
        .service_node_port_range
        .split_once('-')
        .and_then(|(a, b)| Some((a.trim().parse::<u16>().ok()?, b.trim().parse::<u16>().ok()?)))
        .filter(|(a, b)| a <= b)
        .with_context(|| {
            format!(
                "--service-node-port-range {:?}: want FIRST-LAST",
                flags.service_node_port_range
            )
        })?;
    let mut config = Config::new(flags.data_dir);
    config.bind_address = flags.bind_address;
    config.advertise_address = flags.advertise_address;
    config.secure_port = flags.secure_port;
    config.etcd_servers = flags.etcd_servers;
    config.etcd_prefix = flags.etcd_prefix;
    config.service_cluster_ip_range = flags.service_cluster_ip_range;
    config.service_node_port_range = first..=last;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let shutdown = tokio_util::sync::CancellationToken::new();
        let on_signal = shutdown.clone();
        tokio::spawn(async move {
            keel_control_plane::signals::terminated().await;
            on_signal.cancel();
        });
        apiserver::run(config, shutdown, None)
            .await
            .context("keel-apiserver")
    })
}
