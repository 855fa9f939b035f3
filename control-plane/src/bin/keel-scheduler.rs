//! keel-scheduler: places pending pods on nodes through any conformant apiserver, with
//! kube-scheduler's flag names for what it shares with it.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use keel_control_plane::kube_client;
use keel_control_plane::leader_election::{LeaderElectionFlags, run_as_leader};
use keel_control_plane::scheduler::service::{self, DEFAULT_SCHEDULER_NAME, SchedulerConfig};

/// Assigns pods without a node to nodes: filters (resources, taints, affinity, ports,
/// topology spread), scores, and writes the binding, the events and the PodScheduled
/// condition.
#[derive(Debug, Parser)]
#[command(name = "keel-scheduler", version)]
struct Flags {
    /// The kubeconfig to reach the apiserver with (default: $KUBECONFIG, ~/.kube/config or
    /// the in-cluster service account).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    #[command(flatten)]
    leader_election: LeaderElectionFlags,
    /// The schedulerName of the pods this scheduler places.
    #[arg(long, default_value = DEFAULT_SCHEDULER_NAME)]
    scheduler_name: String,
    /// Bindings written at once.
    #[arg(long, default_value_t = 64)]
    parallel_bindings: usize,
    /// Log filter (tracing's EnvFilter syntax); RUST_LOG, when set, wins.
    #[arg(long, default_value = "info")]
    log_level: String,
}

fn main() -> anyhow::Result<()> {
    let flags = Flags::parse();
    keel_control_plane::logging::init(&flags.log_level).map_err(anyhow::Error::msg)?;
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
        let config = SchedulerConfig {
            scheduler_name: flags.scheduler_name,
            parallel_bindings: flags.parallel_bindings,
        };
        let worker = client.clone();
        run_as_leader(
            client,
            &flags.leader_election,
            "kube-scheduler",
            shutdown,
            |token| service::run(worker, config, token),
        )
        .await?;
        Ok(())
    })
}
