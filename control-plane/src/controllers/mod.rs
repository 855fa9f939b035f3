//! keel-controller-manager: the controllers that drive a cluster's objects toward their specs.
//! Pure API clients (kube-rs watchers and `Controller`s), so they work against any conformant
//! apiserver.
//!
//! Each controller is a module with a `run(Arc<Context>, CancellationToken)` future, listed in
//! `CONTROLLERS` under kube-controller-manager's name for it; `--controllers` picks which run
//! (`*` = the defaults, `name` adds one, `-name` removes one).

pub mod cronjob;
pub mod csr_approving;
pub mod csr_signing;
pub mod daemonset;
pub mod deployment;
pub mod endpoints;
pub mod endpointslice;
pub mod garbage_collector;
pub mod informer;
pub mod job;
pub mod namespace;
pub mod node_lifecycle;
pub mod podgc;
pub mod replicaset;
pub mod root_ca;
pub mod serviceaccount;
pub mod statefulset;
pub mod taint_eviction;
pub mod ttl_after_finished;
pub mod work_queue;
pub mod workload_common;

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use kube::Client;
use tokio_util::sync::CancellationToken;

/// What every controller shares.
pub struct Context {
    pub client: Client,
    pub config: ControllerConfig,
}

/// Settings from the command line.
#[derive(Clone, Debug)]
pub struct ControllerConfig {
    /// How long a node may go without renewing its Lease before it is marked Unknown.
    pub node_monitor_grace_period: Duration,
    /// Nodes per second that get their NoExecute taint in a healthy zone
    /// (`--node-eviction-rate`).
    pub node_eviction_rate: f64,
    /// Nodes per second in a large zone in partial disruption (`--secondary-node-eviction-rate`).
    pub secondary_node_eviction_rate: f64,
    /// Zones with more nodes than this keep the secondary rate in partial disruption; smaller
    /// ones stop (`--large-cluster-size-threshold`).
    pub large_cluster_size_threshold: u32,
    /// The share of not Ready nodes (at least 3) that makes a zone partially disrupted
    /// (`--unhealthy-zone-threshold`).
    pub unhealthy_zone_threshold: f64,
    /// PEM files of the CA that signs kubelet certificates (`--cluster-signing-*-file`).
    pub cluster_signing_cert_file: Option<std::path::PathBuf>,
    pub cluster_signing_key_file: Option<std::path::PathBuf>,
    /// The CA bundle published as `kube-root-ca.crt` in every namespace (`--root-ca-file`).
    pub root_ca_file: Option<std::path::PathBuf>,
    /// Finished pods kept before podgc deletes the oldest; 0 keeps all.
    pub terminated_pod_gc_threshold: i32,

    /// The longest certificate csrsigning issues (`--cluster-signing-duration`).
    pub cluster_signing_duration: Duration,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            node_monitor_grace_period: Duration::from_secs(40),
            node_eviction_rate: 0.1,
            secondary_node_eviction_rate: 0.01,
            large_cluster_size_threshold: 50,
            unhealthy_zone_threshold: 0.55,
            cluster_signing_cert_file: None,
            cluster_signing_key_file: None,
            root_ca_file: None,
            terminated_pod_gc_threshold: 12500,

            cluster_signing_duration: Duration::from_secs(8760 * 3600),
        }
    }
}

type Start = fn(Arc<Context>, CancellationToken) -> BoxFuture<'static, ()>;

/// A controller: its kube-controller-manager name, whether `*` includes it, and its loop.
pub struct ControllerEntry {
    pub name: &'static str,
    pub default_enabled: bool,
    pub start: Start,
}

/// Every controller keel-controller-manager has.
pub const CONTROLLERS: &[ControllerEntry] = &[
    ControllerEntry {
        name: "job",
        default_enabled: true,
        start: |ctx, token| Box::pin(job::run(ctx, token)),
    },
    ControllerEntry {
        name: "cronjob",
        default_enabled: true,
        start: |ctx, token| Box::pin(cronjob::run(ctx, token)),
    },
    ControllerEntry {
        name: "ttl-after-finished",
        default_enabled: true,
        start: |ctx, token| Box::pin(ttl_after_finished::run(ctx, token)),
    },
    ControllerEntry {
        name: "podgc",
        default_enabled: true,
        start: |ctx, token| Box::pin(podgc::run(ctx, token)),
    },
    ControllerEntry {
        name: "garbagecollector",
        default_enabled: true,
        start: |ctx, token| Box::pin(garbage_collector::run(ctx, token)),
    },
    ControllerEntry {
        name: "namespace",
        default_enabled: true,
        start: |ctx, token| Box::pin(namespace::run(ctx, token)),
    },
    ControllerEntry {
        name: "serviceaccount",
        default_enabled: true,
        start: |ctx, token| Box::pin(serviceaccount::run(ctx, token)),
    },
    ControllerEntry {
        name: "root-ca-cert-publisher",
        default_enabled: true,
        start: |ctx, token| Box::pin(root_ca::run(ctx, token)),
    },
    ControllerEntry {
        name: "endpoint",
        default_enabled: true,
        start: |ctx, token| Box::pin(endpoints::run(ctx, token)),
    },
    ControllerEntry {
        name: "endpointslice",
        default_enabled: true,
        start: |ctx, token| Box::pin(endpointslice::run(ctx, token)),
    },
    ControllerEntry {
        name: "nodelifecycle",
        default_enabled: true,
        start: |ctx, token| Box::pin(node_lifecycle::run(ctx, token)),
    },
    ControllerEntry {
        name: "taint-eviction-controller",
        default_enabled: true,
        start: |ctx, token| Box::pin(taint_eviction::run(ctx, token)),
    },
    ControllerEntry {
        name: "csrapproving",
        default_enabled: true,
        start: |ctx, token| Box::pin(csr_approving::run(ctx, token)),
    },
    ControllerEntry {
        name: "csrsigning",
        default_enabled: true,
        start: |ctx, token| Box::pin(csr_signing::run(ctx, token)),
    },
    ControllerEntry {
        name: "daemonset",
        default_enabled: true,
        start: |ctx, token| Box::pin(daemonset::run(ctx, token)),
    },
    ControllerEntry {
        name: "deployment",
        default_enabled: true,
        start: |ctx, token| Box::pin(deployment::run(ctx, token)),
    },
    ControllerEntry {
        name: "replicaset",
        default_enabled: true,
        start: |ctx, token| Box::pin(replicaset::run(ctx, token)),
    },
    ControllerEntry {
        name: "statefulset",
        default_enabled: true,
        start: |ctx, token| Box::pin(statefulset::run(ctx, token)),
    },
];

/// The controllers a `--controllers` list selects, in `CONTROLLERS` order; an unknown name
/// is an error naming it.
pub fn select(list: &[String]) -> Result<Vec<&'static ControllerEntry>, String> {
    for item in list {
        let name = item.trim_start_matches('-');
        if name != "*" && !CONTROLLERS.iter().any(|c| c.name == name) {
            let known: Vec<&str> = CONTROLLERS.iter().map(|c| c.name).collect();
            return Err(format!(
                "--controllers: unknown controller {name:?} (known: {})",
                known.join(", ")
            ));
        }
    }
    let star = list.iter().any(|i| i == "*");
    Ok(CONTROLLERS
        .iter()
        .filter(|c| {
            if list.iter().any(|i| i.strip_prefix('-') == Some(c.name)) {
                return false;
            }
            list.iter().any(|i| i == c.name) || (star && c.default_enabled)
        })
        .collect())
}

/// Runs the selected controllers until `shutdown`.
pub async fn run(
    context: Arc<Context>,
    selected: &[&'static ControllerEntry],
    shutdown: CancellationToken,
) {
    let tasks: Vec<_> = selected
        .iter()
        .map(|entry| {
            tracing::info!(controller = entry.name, "starting");
            tokio::spawn((entry.start)(context.clone(), shutdown.clone()))
        })
        .collect();
    shutdown.cancelled().await;
    for task in tasks {
        task.abort();
    }
}
