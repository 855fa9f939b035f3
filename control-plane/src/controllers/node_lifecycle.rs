//! The node lifecycle controller ("nodelifecycle"): watches each node's heartbeats (its Lease
//! in `kube-node-lease` and its Ready condition's `lastHeartbeatTime`); a node silent for
//! `--node-monitor-grace-period` gets its Ready and pressure conditions set to Unknown
//! ("Kubelet stopped posting node status."). It keeps the condition taints in step — `unreachable`
//! (Unknown) and `not-ready` (False) as NoSchedule and NoExecute, the pressure and
//! `unschedulable` ones as NoSchedule — and marks the pods of a node that stops being Ready as
//! not Ready, with a NodeNotReady event.
//!
//! Deviation from kube: NoExecute taints are applied at once, without kube's per-zone eviction
//! rate limits (`--node-eviction-rate`, disruption modes); eviction itself is the separate
//! taint-eviction controller's (see `taint_eviction`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, Taint};
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::Context;
use super::informer::{self, now_time, reference_to};

/// Where kubelets keep their heartbeat Leases.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";
pub const UNREACHABLE_TAINT: &str = "node.kubernetes.io/unreachable";
pub const NOT_READY_TAINT: &str = "node.kubernetes.io/not-ready";
const COMPONENT: &str = "node-controller";

/// Conditions the controller sets to Unknown when the kubelet goes silent.
const MONITORED_CONDITIONS: &[&str] = &["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

/// NoSchedule taints for condition states (kube's condition-to-taint map).
const CONDITION_TAINTS: &[(&str, &str, &str)] = &[
    ("Ready", "False", NOT_READY_TAINT),
    ("Ready", "Unknown", UNREACHABLE_TAINT),
    (
        "MemoryPressure",
        "True",
        "node.kubernetes.io/memory-pressure",
    ),
    ("DiskPressure", "True", "node.kubernetes.io/disk-pressure"),
    (
        "NetworkUnavailable",
        "True",
        "node.kubernetes.io/network-unavailable",
    ),
    ("PIDPressure", "True", "node.kubernetes.io/pid-pressure"),
];
const UNSCHEDULABLE_TAINT: &str = "node.kubernetes.io/unschedulable";

/// What the controller last saw of a node's heartbeats, on its own clock.
struct Health {
    /// When a heartbeat last changed.
    probed: Instant,
    heartbeat: Option<Timestamp>,
    renewed: Option<Timestamp>,
    ready: String,
}

struct NodeLifecycle {
    client: Client,
    grace: Duration,
    nodes: Store<Node>,
    leases: Store<Lease>,
    pods: Store<Pod>,
    health: Mutex<HashMap<String, Health>>,
    wake: Notify,
}

/// How often node health is checked: kube's 5 s `--node-monitor-period`, shorter for a
/// short grace period.
fn monitor_period(grace: Duration) -> Duration {
    (grace / 4).clamp(Duration::from_millis(200), Duration::from_secs(5))
}

/// Runs until `shutdown`.
pub async fn run(context: Arc<Context>, shutdown: CancellationToken) {
    let client = context.client.clone();
    let wake = Arc::new(Notify::new());
    let w = wake.clone();
    let (nodes, nodes_task) =
        informer::watch(Api::<Node>::all(client.clone()), move |_| w.notify_one());
    let w = wake.clone();
    let (leases, leases_task) = informer::watch(
        Api::<Lease>::namespaced(client.clone(), NODE_LEASE_NAMESPACE),
        move |_| w.notify_one(),
    );
    let (pods, pods_task) = informer::watch(Api::<Pod>::all(client.clone()), |_| {});
    let controller = Arc::new(NodeLifecycle {
        client,
        grace: context.config.node_monitor_grace_period,
        nodes,
        leases,
        pods,
        health: Mutex::new(HashMap::new()),
        wake: Notify::new(),
    });
    let c = controller.clone();
    let forward = tokio::spawn(async move {
        loop {
            wake.notified().await;
            c.wake.notify_one();
        }
    });
    let monitor = tokio::spawn(monitor(controller));
    shutdown.cancelled().await;
    for task in [nodes_task, leases_task, pods_task, forward, monitor] {
        task.abort();
    }
}

async fn monitor(controller: Arc<NodeLifecycle>) {
    let _ = controller.nodes.wait_until_ready().await;
    let _ = controller.leases.wait_until_ready().await;
    let _ = controller.pods.wait_until_ready().await;
    let period = monitor_period(controller.grace);
    loop {
        for node in controller.nodes.state() {
            if let Err(error) = controller.check(&node).await {
                let name = node.metadata.name.as_deref().unwrap_or_default();
                tracing::warn!(node = name, %error, "node health pass failed; retrying");
            }
        }
        controller.forget_deleted_nodes();
        let _ = tokio::time::timeout(period, controller.wake.notified()).await;
    }
}

fn condition<'a>(node: &'a Node, type_: &str) -> Option<&'a NodeCondition> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

impl NodeLifecycle {
    fn forget_deleted_nodes(&self) {
        let mut health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        health.retain(|name, _| self.nodes.get(&ObjectRef::new(name)).is_some());
    }

    /// Updates what was seen of the node's heartbeats; true when it has been silent longer
    /// than the grace period.
    fn silent_too_long(&self, node: &Node) -> bool {
        let name = node.metadata.name.clone().unwrap_or_default();
        let heartbeat = condition(node, "Ready")
            .and_then(|c| c.last_heartbeat_time.as_ref())
            .map(|t| t.0);
        let renewed = self
            .leases
            .get(&ObjectRef::new(&name).within(NODE_LEASE_NAMESPACE))
            .and_then(|l| l.spec.as_ref()?.renew_time.as_ref().map(|t| t.0));
        let now = Instant::now();
        let mut all = self.health.lock().unwrap_or_else(|p| p.into_inner());
        let health = all.entry(name).or_insert_with(|| Health {
            probed: now,
            heartbeat,
            renewed,
            ready: String::new(),
        });
        if heartbeat > health.heartbeat {
            health.heartbeat = heartbeat;
            health.probed = now;
        }
        if renewed > health.renewed {
            health.renewed = renewed;
            health.probed = now;
        }
        now.duration_since(health.probed) > self.grace
    }

    /// Records the node's Ready status; true when it just stopped being True.
    fn ready_went_away(&self, node: &Node) -> bool {
        let name = node.metadata.name.clone().unwrap_or_default();
        let ready = condition(node, "Ready")
            .map(|c| c.status.clone())
            .unwrap_or_else(|| "Unknown".into());
        let mut all = self.health.lock().unwrap_or_else(|p| p.into_inner());
        let Some(health) = all.get_mut(&name) else {
            return false;
        };
        let went = health.ready == "True" && ready != "True";
        health.ready = ready;
        went
    }

    async fn check(&self, node: &Node) -> Result<(), kube::Error> {
        let name = node.metadata.name.clone().unwrap_or_default();
        let api: Api<Node> = Api::all(self.client.clone());
        let mut node = node.clone();
        if self.silent_too_long(&node) && mark_unknown(&mut node) {
            tracing::info!(node = %name, "node stopped posting status; marking it Unknown");
            node = api
                .replace_status(&name, &PostParams::default(), &node)
                .await?;
        }
        if self.ready_went_away(&node) {
            crate::events::write(
                &self.client,
                COMPONENT,
                reference_to(&node),
                "Normal",
                "NodeNotReady",
                &format!("Node {name} status is now: NodeNotReady"),
            )
            .await;
        }
        let ready = condition(&node, "Ready").map(|c| c.status.as_str());
        if ready != Some("True") {
            self.mark_pods_not_ready(&name).await;
        }
        let taints = desired_taints(&node);
        let current = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.clone())
            .unwrap_or_default();
        if !same_taints(&current, &taints) {
            let mut updated = node.clone();
            updated.spec.get_or_insert_default().taints = (!taints.is_empty()).then_some(taints);
            api.replace(&name, &PostParams::default(), &updated).await?;
        }
        Ok(())
    }

    /// Sets the Ready condition of the node's pods to False (kube's MarkPodsNotReady).
    async fn mark_pods_not_ready(&self, node: &str) {
        for pod in self.pods.state() {
            if pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) != Some(node) {
                continue;
            }
            let mut pod = (*pod).clone();
            let Some(ready) = pod
                .status
                .as_mut()
                .and_then(|s| s.conditions.as_mut())
                .and_then(|c| c.iter_mut().find(|c| c.type_ == "Ready"))
            else {
                continue;
            };
            if ready.status == "False" {
                continue;
            }
            ready.status = "False".into();
            ready.last_transition_time = Some(now_time());
            let name = pod.metadata.name.clone().unwrap_or_default();
            let ns = pod.metadata.namespace.clone().unwrap_or_default();
            let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
            if let Err(error) = api
                .replace_status(&name, &PostParams::default(), &pod)
                .await
            {
                tracing::warn!(pod = %format!("{ns}/{name}"), %error, "marking the pod not ready failed");
            }
        }
    }
}

/// Sets the monitored conditions to Unknown; false when all already were.
fn mark_unknown(node: &mut Node) -> bool {
    let created = node.metadata.creation_timestamp.clone();
    let now = now_time();
    let conditions = node
        .status
        .get_or_insert_default()
        .conditions
        .get_or_insert_default();
    let mut changed = false;
    for type_ in MONITORED_CONDITIONS {
        match conditions.iter_mut().find(|c| c.type_ == *type_) {
            Some(c) if c.status == "Unknown" => {}
            Some(c) => {
                c.status = "Unknown".into();
                c.reason = Some("NodeStatusUnknown".into());
                c.message = Some("Kubelet stopped posting node status.".into());
                c.last_transition_time = Some(now.clone());
                changed = true;
            }
            None => {
                conditions.push(NodeCondition {
                    type_: (*type_).into(),
                    status: "Unknown".into(),
                    reason: Some("NodeStatusNeverUpdated".into()),
                    message: Some("Kubelet never posted node status.".into()),
                    last_heartbeat_time: created.clone(),
                    last_transition_time: Some(now.clone()),
                });
                changed = true;
            }
        }
    }
    changed
}

/// True when `key` is one of the taints this controller manages.
fn managed_taint(key: &str) -> bool {
    key == UNSCHEDULABLE_TAINT || CONDITION_TAINTS.iter().any(|(_, _, k)| *k == key)
}

/// The node's taints as they should be: the ones others set kept, the managed ones following
/// its conditions (an existing taint kept as it is, so its timeAdded survives).
fn desired_taints(node: &Node) -> Vec<Taint> {
    let current = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let mut wanted: Vec<(&str, &str)> = Vec::new();
    for (type_, status, key) in CONDITION_TAINTS {
        if condition(node, type_).is_some_and(|c| c.status == *status) {
            wanted.push((key, "NoSchedule"));
        }
    }
    match condition(node, "Ready").map(|c| c.status.as_str()) {
        Some("False") => wanted.push((NOT_READY_TAINT, "NoExecute")),
        Some("Unknown") => wanted.push((UNREACHABLE_TAINT, "NoExecute")),
        _ => {}
    }
    if node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
        wanted.push((UNSCHEDULABLE_TAINT, "NoSchedule"));
    }
    let mut taints: Vec<Taint> = current
        .iter()
        .filter(|t| !managed_taint(&t.key) || wanted.contains(&(t.key.as_str(), t.effect.as_str())))
        .cloned()
        .collect();
    for (key, effect) in wanted {
        if !taints.iter().any(|t| t.key == key && t.effect == effect) {
            taints.push(Taint {
                key: key.into(),
                effect: effect.into(),
                value: None,
                time_added: (effect == "NoExecute").then(now_time),
            });
        }
    }
    taints
}

fn same_taints(a: &[Taint], b: &[Taint]) -> bool {
    a.len() == b.len()
        && a.iter().all(|t| {
            b.iter()
                .any(|u| u.key == t.key && u.effect == t.effect && u.value == t.value)
        })
}
