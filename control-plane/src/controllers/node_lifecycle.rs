//! The node lifecycle controller ("nodelifecycle"): watches each node's heartbeats (its Lease
//! in `kube-node-lease` and its Ready condition's `lastHeartbeatTime`); a node silent for
//! `--node-monitor-grace-period` gets its Ready and pressure conditions set to Unknown
//! ("Kubelet stopped posting node status."). It keeps the NoSchedule condition taints in step
//! with the conditions — `unreachable` (Unknown), `not-ready` (False), the pressure ones and
//! `unschedulable` — and marks the pods of a node that stops being Ready as not Ready, with a
//! NodeNotReady event.
//!
//! The NoExecute `unreachable`/`not-ready` taints, which make the taint-eviction controller
//! evict pods, are rate limited per zone as kube does (`disruption` for the zone states and
//! rates, `rate_limited_queue` for the token bucket): a node that stops being Ready is queued
//! in its zone, and a tainting pass every 100 ms takes from each queue what the zone's rate
//! allows. A node Ready again leaves the queue and loses both taints; a node switching between
//! False and Unknown has its NoExecute taint swapped at once. When every zone is fully
//! disrupted no node is tainted and the NoExecute taints are removed.
//!
//! Deviations from kube: each pass settles the zone states before it queues nodes (kube queues
//! from the Ready status it saw before updating it, one pass late, to the same effect); there
//! is no separate `--node-startup-grace-period`.

mod disruption;
mod rate_limited_queue;

use std::collections::{BTreeMap, HashMap};
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
pub use disruption::{
    Decision, Disruption, EvictionRates, ZoneHealth, ZoneState, excluded_from_disruption, zone_key,
};
use rate_limited_queue::{Queued, RateLimitedQueue};

/// Where kubelets keep their heartbeat Leases.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";
pub const UNREACHABLE_TAINT: &str = "node.kubernetes.io/unreachable";
pub const NOT_READY_TAINT: &str = "node.kubernetes.io/not-ready";
const COMPONENT: &str = "node-controller";
/// How often the zone queues are drained (kube's `nodeEvictionPeriod`).
const TAINTING_PERIOD: Duration = Duration::from_millis(100);

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

/// The zone states and the per-zone queues of nodes waiting for their NoExecute taint.
#[derive(Default)]
struct Eviction {
    disruption: Disruption,
    queues: BTreeMap<String, RateLimitedQueue>,
}

struct NodeLifecycle {
    client: Client,
    grace: Duration,
    rates: EvictionRates,
    nodes: Store<Node>,
    leases: Store<Lease>,
    pods: Store<Pod>,
    health: Mutex<HashMap<String, Health>>,
    /// Held across the tainting pass's writes, as kube's evictor lock.
    eviction: tokio::sync::Mutex<Eviction>,
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
    let config = &context.config;
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
        grace: config.node_monitor_grace_period,
        rates: EvictionRates {
            node_eviction_rate: config.node_eviction_rate,
            secondary_node_eviction_rate: config.secondary_node_eviction_rate,
            large_cluster_size_threshold: config.large_cluster_size_threshold as usize,
            unhealthy_zone_threshold: config.unhealthy_zone_threshold,
        },
        nodes,
        leases,
        pods,
        health: Mutex::new(HashMap::new()),
        eviction: tokio::sync::Mutex::new(Eviction::default()),
        wake: Notify::new(),
    });
    let c = controller.clone();
    let forward = tokio::spawn(async move {
        loop {
            wake.notified().await;
            c.wake.notify_one();
        }
    });
    // One waiter for the caches: a store's readiness wakes only the last task waiting on it.
    let loops = tokio::spawn(async move {
        wait_for_caches(&controller).await;
        tokio::join!(monitor(controller.clone()), tainting(controller.clone()));
    });
    shutdown.cancelled().await;
    for task in [nodes_task, leases_task, pods_task, forward, loops] {
        task.abort();
    }
}

async fn wait_for_caches(controller: &NodeLifecycle) {
    let _ = controller.nodes.wait_until_ready().await;
    let _ = controller.leases.wait_until_ready().await;
    let _ = controller.pods.wait_until_ready().await;
}

async fn monitor(controller: Arc<NodeLifecycle>) {
    let period = monitor_period(controller.grace);
    loop {
        controller.monitor_pass().await;
        controller.forget_deleted_nodes();
        let _ = tokio::time::timeout(period, controller.wake.notified()).await;
    }
}

/// Every `TAINTING_PERIOD`, taints the nodes the zones' rates let through (kube's
/// `doNoExecuteTaintingPass`).
async fn tainting(controller: Arc<NodeLifecycle>) {
    let mut tick = tokio::time::interval(TAINTING_PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        controller.tainting_pass().await;
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

/// The Ready status, "Unknown" when the node never posted one.
fn ready_status(node: &Node) -> &str {
    condition(node, "Ready")
        .map(|c| c.status.as_str())
        .unwrap_or("Unknown")
}

fn has_taint(node: &Node, key: &str, effect: &str) -> bool {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .is_some_and(|t| t.iter().any(|t| t.key == key && t.effect == effect))
}

fn no_execute(key: &str) -> Taint {
    Taint {
        key: key.into(),
        effect: "NoExecute".into(),
        value: None,
        time_added: Some(now_time()),
    }
}

impl NodeLifecycle {
    fn forget_deleted_nodes(&self) {
        let mut health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        health.retain(|name, _| self.nodes.get(&ObjectRef::new(name)).is_some());
    }

    /// One pass over every node: health and conditions first, then the zone states (which
    /// set the zones' tainting rates), then each node queued for or spared its NoExecute
    /// taint.
    async fn monitor_pass(&self) {
        let mut current = Vec::new();
        for node in self.nodes.state() {
            match self.check(&node).await {
                Ok(updated) => current.push(updated),
                Err(error) => {
                    let name = node.metadata.name.as_deref().unwrap_or_default();
                    tracing::warn!(node = name, %error, "node health pass failed; retrying");
                    current.push((*node).clone());
                }
            }
        }
        let mut zones: BTreeMap<String, ZoneHealth> = BTreeMap::new();
        for node in current.iter().filter(|n| !excluded_from_disruption(n)) {
            let health = zones.entry(zone_key(node)).or_default();
            if ready_status(node) == "True" {
                health.ready += 1;
            } else {
                health.not_ready += 1;
            }
        }
        let decision = {
            let now = Instant::now();
            let mut eviction = self.eviction.lock().await;
            for node in &current {
                eviction
                    .queues
                    .entry(zone_key(node))
                    .or_insert_with(|| RateLimitedQueue::new(self.rates.node_eviction_rate, now));
            }
            eviction.disruption.step(&zones, &self.rates)
        };
        self.apply(decision, &current).await;
        // A node that never posted a Ready condition waits until it is marked Unknown.
        for node in current.iter().filter(|n| condition(n, "Ready").is_some()) {
            if let Err(error) = self.process_taint_based_eviction(node).await {
                let name = node.metadata.name.as_deref().unwrap_or_default();
                tracing::warn!(node = name, %error, "updating the NoExecute taint failed; retrying");
            }
        }
    }

    /// Carries out what the zone pass decided.
    async fn apply(&self, decision: Decision, nodes: &[Node]) {
        let now = Instant::now();
        match decision {
            Decision::Unchanged => {}
            Decision::EnterMasterDisruption => {
                tracing::info!(
                    "every node is not Ready; entering master disruption mode: no evictions"
                );
                {
                    let mut eviction = self.eviction.lock().await;
                    for queue in eviction.queues.values_mut() {
                        queue.swap_limiter(0.0, now);
                        queue.clear();
                    }
                }
                for node in nodes {
                    if let Err(error) = self.mark_reachable(node).await {
                        let name = node.metadata.name.as_deref().unwrap_or_default();
                        tracing::warn!(node = name, %error, "removing the NoExecute taints failed");
                    }
                }
            }
            Decision::ExitMasterDisruption(rates) => {
                tracing::info!("some nodes are Ready; exiting master disruption mode");
                {
                    let mut health = self.health.lock().unwrap_or_else(|p| p.into_inner());
                    for h in health.values_mut() {
                        h.probed = now;
                    }
                }
                self.set_rates(rates, now).await;
            }
            Decision::Rates(rates) => self.set_rates(rates, now).await,
        }
    }

    async fn set_rates(&self, rates: BTreeMap<String, f64>, now: Instant) {
        let mut eviction = self.eviction.lock().await;
        for (zone, qps) in rates {
            let state = eviction.disruption.state(&zone);
            tracing::info!(zone = %zone.replace('\u{0}', ""), ?state, qps, "zone eviction rate");
            if let Some(queue) = eviction.queues.get_mut(&zone) {
                queue.swap_limiter(qps, now);
            }
        }
    }

    /// Queues a node that is not Ready for its NoExecute taint, swaps a taint that no longer
    /// matches the Ready status at once, and clears both from a Ready node (kube's
    /// `processTaintBaseEviction`).
    async fn process_taint_based_eviction(&self, node: &Node) -> Result<(), kube::Error> {
        let (wanted, opposite) = match ready_status(node) {
            "True" => return self.mark_reachable(node).await,
            "False" => (NOT_READY_TAINT, UNREACHABLE_TAINT),
            _ => (UNREACHABLE_TAINT, NOT_READY_TAINT),
        };
        if has_taint(node, wanted, "NoExecute") {
            return Ok(());
        }
        let name = node.metadata.name.clone().unwrap_or_default();
        if has_taint(node, opposite, "NoExecute") {
            return self.swap_no_execute(&name, wanted, opposite).await;
        }
        let uid = node.metadata.uid.clone().unwrap_or_default();
        let mut eviction = self.eviction.lock().await;
        if let Some(queue) = eviction.queues.get_mut(&zone_key(node))
            && queue.add(&name, &uid, Instant::now())
        {
            tracing::info!(node = %name, "node is not Ready; queued for its NoExecute taint");
        }
        Ok(())
    }

    /// Removes the NoExecute taints and takes the node off its zone's queue.
    async fn mark_reachable(&self, node: &Node) -> Result<(), kube::Error> {
        let name = node.metadata.name.clone().unwrap_or_default();
        {
            let mut eviction = self.eviction.lock().await;
            if let Some(queue) = eviction.queues.get_mut(&zone_key(node)) {
                queue.remove(&name);
            }
        }
        if has_taint(node, UNREACHABLE_TAINT, "NoExecute")
            || has_taint(node, NOT_READY_TAINT, "NoExecute")
        {
            self.edit_taints(&name, |taints| {
                taints.retain(|t| {
                    t.effect != "NoExecute"
                        || (t.key != UNREACHABLE_TAINT && t.key != NOT_READY_TAINT)
                })
            })
            .await?;
        }
        Ok(())
    }

    async fn swap_no_execute(
        &self,
        name: &str,
        wanted: &str,
        opposite: &str,
    ) -> Result<(), kube::Error> {
        self.edit_taints(name, |taints| {
            taints.retain(|t| !(t.effect == "NoExecute" && (t.key == opposite || t.key == wanted)));
            taints.push(no_execute(wanted));
        })
        .await
    }

    /// Reads the node, edits its taints and writes them back when they changed.
    async fn edit_taints(
        &self,
        name: &str,
        edit: impl FnOnce(&mut Vec<Taint>),
    ) -> Result<(), kube::Error> {
        let api: Api<Node> = Api::all(self.client.clone());
        let mut node = api.get(name).await?;
        let mut taints = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.clone())
            .unwrap_or_default();
        let before = taints.clone();
        edit(&mut taints);
        if taints == before {
            return Ok(());
        }
        node.spec.get_or_insert_default().taints = (!taints.is_empty()).then_some(taints);
        api.replace(name, &PostParams::default(), &node).await?;
        Ok(())
    }

    /// Takes from every zone's queue what its rate allows and taints those nodes; a node
    /// whose write fails goes back on the queue.
    async fn tainting_pass(&self) {
        let mut eviction = self.eviction.lock().await;
        let now = Instant::now();
        let due: Vec<(String, Queued)> = eviction
            .queues
            .iter_mut()
            .flat_map(|(zone, queue)| {
                queue
                    .take_due(now)
                    .into_iter()
                    .map(|item| (zone.clone(), item))
            })
            .collect();
        for (zone, item) in due {
            if let Err(error) = self.taint_for_eviction(&item).await {
                tracing::warn!(node = %item.node, %error, "adding the NoExecute taint failed; retrying");
                if let Some(queue) = eviction.queues.get_mut(&zone) {
                    queue.retry(item, TAINTING_PERIOD, now);
                }
            }
        }
    }

    async fn taint_for_eviction(&self, item: &Queued) -> Result<(), kube::Error> {
        let Some(node) = self.nodes.get(&ObjectRef::new(&item.node)) else {
            return Ok(());
        };
        if node.metadata.uid.as_deref().unwrap_or_default() != item.uid {
            return Ok(());
        }
        let (wanted, opposite) = match ready_status(&node) {
            "True" => return Ok(()),
            "False" => (NOT_READY_TAINT, UNREACHABLE_TAINT),
            _ => (UNREACHABLE_TAINT, NOT_READY_TAINT),
        };
        tracing::info!(node = %item.node, taint = wanted, "tainting the node NoExecute");
        self.edit_taints(&item.node, |taints| {
            if taints
                .iter()
                .any(|t| t.key == wanted && t.effect == "NoExecute")
            {
                return;
            }
            taints.retain(|t| !(t.effect == "NoExecute" && t.key == opposite));
            taints.push(no_execute(wanted));
        })
        .await
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
        let ready = ready_status(node).to_string();
        let mut all = self.health.lock().unwrap_or_else(|p| p.into_inner());
        let Some(health) = all.get_mut(&name) else {
            return false;
        };
        let went = health.ready == "True" && ready != "True";
        health.ready = ready;
        went
    }

    /// Conditions, NoSchedule taints and pod readiness of one node; returns the node as
    /// written.
    async fn check(&self, node: &Node) -> Result<Node, kube::Error> {
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
        if ready_status(&node) != "True" {
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
            node = api.replace(&name, &PostParams::default(), &updated).await?;
        }
        Ok(node)
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

/// True when `taint` is one of the NoSchedule taints that follow the node's conditions (the
/// NoExecute ones go through the zone queues).
fn managed_taint(taint: &Taint) -> bool {
    taint.effect == "NoSchedule"
        && (taint.key == UNSCHEDULABLE_TAINT
            || CONDITION_TAINTS.iter().any(|(_, _, k)| *k == taint.key))
}

/// The node's taints as they should be: the ones others set (and the NoExecute ones) kept,
/// the managed NoSchedule ones following its conditions.
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
    if node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
        wanted.push((UNSCHEDULABLE_TAINT, "NoSchedule"));
    }
    let mut taints: Vec<Taint> = current
        .iter()
        .filter(|t| !managed_taint(t) || wanted.contains(&(t.key.as_str(), t.effect.as_str())))
        .cloned()
        .collect();
    for (key, effect) in wanted {
        if !taints.iter().any(|t| t.key == key && t.effect == effect) {
            taints.push(Taint {
                key: key.into(),
                effect: effect.into(),
                value: None,
                time_added: None,
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
