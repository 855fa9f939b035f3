//! keel-scheduler: places pending pods on nodes through any conformant apiserver, with
//! kube-scheduler's flag names for what it shares with it.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use k8s_openapi::api::coordination::v1::Lease;
use keel_control_plane::kube_client;
use keel_control_plane::leader_election::{self, LeaderElection};
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
    /// Run only while holding the leader Lease, so that several copies can run.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    leader_elect: bool,
    /// How long a leader's Lease is valid without renewal.
    #[arg(long, default_value = "15s", value_parser = keel_control_plane::duration_flag::parse)]
    leader_elect_lease_duration: Duration,
    /// How long the leader keeps trying to renew before giving up.
    #[arg(long, default_value = "10s", value_parser = keel_control_plane::duration_flag::parse)]
    leader_elect_renew_deadline: Duration,
    /// How often candidates try to take, and the leader to renew, the Lease.
    #[arg(long, default_value = "2s", value_parser = keel_control_plane::duration_flag::parse)]
    leader_elect_retry_period: Duration,
    /// The namespace of the leader Lease.
    #[arg(long, default_value = "kube-system")]
    leader_elect_resource_namespace: String,
    /// The name of the leader Lease.
    #[arg(long, default_value = "kube-scheduler")]
    leader_elect_resource_name: String,
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
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&flags.log_level))
        .with_context(|| format!("--log-level {:?}", flags.log_level))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
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
        if !flags.leader_elect {
            service::run(client, config, shutdown).await;
            return Ok(());
        }
        let mut election = LeaderElection::new(
            &flags.leader_elect_resource_namespace,
            &flags.leader_elect_resource_name,
        );
        election.lease_duration = flags.leader_elect_lease_duration;
        election.renew_deadline = flags.leader_elect_renew_deadline;
        election.retry_period = flags.leader_elect_retry_period;
        let leases: kube::Api<Lease> =
            kube::Api::namespaced(client.clone(), &flags.leader_elect_resource_namespace);
        let Some(lost) = leader_election::acquire(leases, election, shutdown.clone()).await else {
            return Ok(());
        };
        let stop = shutdown.clone();
        tokio::select! {
            _ = service::run(client, config, shutdown) => Ok(()),
            _ = lost.cancelled() => {
                stop.cancel();
                anyhow::bail!("lost the leader Lease: exiting so that another copy takes over")
            }
        }
    })
}
