//! keel-controller-manager: runs the cluster's controllers through any conformant apiserver,
//! with kube-controller-manager's flag names for what it shares with it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use keel_control_plane::controllers::{self, Context, ControllerConfig};
use keel_control_plane::kube_client;
use keel_control_plane::leader_election::{LeaderElectionFlags, run_as_leader};

/// The controllers of a cluster: workloads (ReplicaSet, Deployment, DaemonSet, StatefulSet,
/// Job, CronJob), endpoints, node lifecycle, service accounts, garbage collection, CSR
/// signing.
#[derive(Debug, Parser)]
#[command(name = "keel-controller-manager", version)]
struct Flags {
    /// The kubeconfig to reach the apiserver with (default: $KUBECONFIG, ~/.kube/config or
    /// the in-cluster service account).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    #[command(flatten)]
    leader_election: LeaderElectionFlags,
    /// Which controllers run: `*` (the defaults), `name` to add one, `-name` to remove one.
    #[arg(long, value_delimiter = ',', default_value = "*")]
    controllers: Vec<String>,
    /// How long a node may go without renewing its Lease before it is marked NotReady/Unknown.
    #[arg(long, default_value = "40s", value_parser = keel_control_plane::duration_flag::parse)]
    node_monitor_grace_period: Duration,
    /// Nodes per second whose pods are evicted (NoExecute-tainted) when their zone is healthy,
    /// or fully disrupted while other zones are not.
    #[arg(long, default_value_t = 0.1)]
    node_eviction_rate: f64,
    /// Nodes per second whose pods are evicted when their zone is partially disrupted (only
    /// for zones larger than --large-cluster-size-threshold; smaller ones stop).
    #[arg(long, default_value_t = 0.01)]
    secondary_node_eviction_rate: f64,
    /// Zones with more nodes than this use --secondary-node-eviction-rate when partially
    /// disrupted; smaller zones stop evicting.
    #[arg(long, default_value_t = 50)]
    large_cluster_size_threshold: u32,
    /// The share of not Ready nodes (at least 3 of them) that makes a zone partially
    /// disrupted.
    #[arg(long, default_value_t = 0.55)]
    unhealthy_zone_threshold: f64,
    /// The CA certificate (PEM) that signs kubelet certificates.
    #[arg(long)]
    cluster_signing_cert_file: Option<PathBuf>,
    /// The CA key (PEM) that signs kubelet certificates.
    #[arg(long)]
    cluster_signing_key_file: Option<PathBuf>,
    /// The longest certificate csrsigning issues.
    #[arg(long, default_value = "8760h", value_parser = keel_control_plane::duration_flag::parse)]
    cluster_signing_duration: Duration,
    /// The CA bundle published in each namespace's kube-root-ca.crt ConfigMap.
    #[arg(long)]
    root_ca_file: Option<PathBuf>,
    /// Finished pods kept before the oldest are deleted (0 keeps all).
    #[arg(long, default_value_t = 12500)]
    terminated_pod_gc_threshold: i32,
    /// Log filter (tracing's EnvFilter syntax); RUST_LOG, when set, wins.
    #[arg(long, default_value = "info")]
    log_level: String,
}

fn main() -> anyhow::Result<()> {
    let flags = Flags::parse();
    keel_control_plane::logging::init(&flags.log_level).map_err(anyhow::Error::msg)?;
    let selected = controllers::select(&flags.controllers).map_err(anyhow::Error::msg)?;
    for (flag, value) in [
        ("--node-eviction-rate", flags.node_eviction_rate),
        (
            "--secondary-node-eviction-rate",
            flags.secondary_node_eviction_rate,
        ),
        ("--unhealthy-zone-threshold", flags.unhealthy_zone_threshold),
    ] {
        anyhow::ensure!(
            value.is_finite() && value >= 0.0,
            "{flag}: {value} must be a number >= 0"
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let client = kube_client::connect(flags.kubeconfig.as_deref()).await?;
        let shutdown = tokio_util::sync::CancellationToken::new();
        let on_signal = shutdown.clone();
        tokio::spawn(async move {
            keel_control_plane::signals::terminated().await;
            on_signal.cancel();
        });
        let context = Arc::new(Context {
            client: client.clone(),
            config: ControllerConfig {
                node_monitor_grace_period: flags.node_monitor_grace_period,
                node_eviction_rate: flags.node_eviction_rate,
                secondary_node_eviction_rate: flags.secondary_node_eviction_rate,
                large_cluster_size_threshold: flags.large_cluster_size_threshold,
                unhealthy_zone_threshold: flags.unhealthy_zone_threshold,
                cluster_signing_cert_file: flags.cluster_signing_cert_file,
                cluster_signing_key_file: flags.cluster_signing_key_file,
                root_ca_file: flags.root_ca_file,
                terminated_pod_gc_threshold: flags.terminated_pod_gc_threshold,

                cluster_signing_duration: flags.cluster_signing_duration,
            },
        });
        run_as_leader(
            client,
            &flags.leader_election,
            "kube-controller-manager",
            shutdown,
            |token| async move {
                controllers::run(context, &selected, token).await;
            },
        )
        .await?;
        Ok(())
    })
}
