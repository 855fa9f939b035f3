//! The running scheduler: watches nodes, pods and namespaces through kube-rs (so it works
//! against any conformant apiserver), feeds the cache and the queue, and runs the scheduling
//! loop — one decision at a time on the cache, then the binding written in the background (a
//! bounded number at once) while the next pod is already being placed. Writes the
//! `Scheduled`/`FailedScheduling` events and the `PodScheduled` condition users read in
//! `kubectl describe pod`. When no node fits, `preemption` may choose victims: they get the
//! `DisruptionTarget` condition, a `Preempted` event and a graceful delete, and the preemptor
//! its `status.nominatedNodeName` (the cache holds the room for it) while it waits in the
//! queue for the victims to go.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Binding, Namespace, Node, ObjectReference, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher::{self, Event as WatchEvent};
use kube::{Api, Client};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::json;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use super::cache::ClusterCache;
use super::placement::{FitError, SearchStart, schedule};
use super::pod_info::PodInfo;
use super::preemption::{self, Candidate, Cluster, Outcome, Pdb};
use super::queue::SchedulingQueue;

/// The component name in events and the `schedulerName` pods ask for by default.
pub const DEFAULT_SCHEDULER_NAME: &str = "default-scheduler";

#[derive(Clone, Debug)]
pub struct SchedulerConfig {
    pub scheduler_name: String,
    /// Bindings written at once.
    pub parallel_bindings: usize,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            scheduler_name: DEFAULT_SCHEDULER_NAME.to_string(),
            parallel_bindings: 64,
        }
    }
}

#[derive(Default)]
struct Shared {
    queue: SchedulingQueue<Arc<Pod>>,
    cache: ClusterCache,
    namespace_labels: HashMap<String, BTreeMap<String, String>>,
    /// PodDisruptionBudgets by namespace/name, for choosing victims.
    pdbs: HashMap<String, Pdb>,
}

struct Scheduler {
    client: Client,
    config: SchedulerConfig,
    shared: Mutex<Shared>,
    wake: Notify,
}

impl Scheduler {
    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn pod_key(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

fn is_terminal(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    matches!(phase, Some("Succeeded" | "Failed"))
}

/// Runs until `shutdown`. Watch streams reconnect by themselves; API errors on a binding
/// put the pod back in the queue with backoff.
pub async fn run(client: Client, config: SchedulerConfig, shutdown: CancellationToken) {
    let scheduler = Arc::new(Scheduler {
        client,
        config,
        shared: Mutex::new(Shared::default()),
        wake: Notify::new(),
    });
    let tasks = [
        tokio::spawn(watch_nodes(scheduler.clone())),
        tokio::spawn(watch_pods(scheduler.clone())),
        tokio::spawn(watch_namespaces(scheduler.clone())),
        tokio::spawn(watch_pdbs(scheduler.clone())),
        tokio::spawn(schedule_loop(scheduler.clone())),
    ];
    shutdown.cancelled().await;
    for task in tasks {
        task.abort();
    }
}

/// Applies a watch stream's events: `apply` for each object (also during a relist), `delete`
/// for removals, and after a relist `delete` for what the relist no longer had.
async fn follow<K, A, D>(api: Api<K>, apply: A, delete: D)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
    A: Fn(&K),
    D: Fn(&K, &str),
{
    let mut stream = watcher::watcher(api, watcher::Config::default()).boxed();
    let mut known: HashSet<String> = HashSet::new();
    let mut relisted: HashSet<String> = HashSet::new();
    let mut previous: HashMap<String, K> = HashMap::new();
    let id = |object: &K| {
        let meta = object.meta();
        format!(
            "{}/{}",
            meta.namespace.as_deref().unwrap_or_default(),
            meta.name.as_deref().unwrap_or_default()
        )
    };
    while let Some(event) = stream.next().await {
        match event {
            Ok(WatchEvent::Apply(object)) => {
                known.insert(id(&object));
                previous.insert(id(&object), object.clone());
                apply(&object);
            }
            Ok(WatchEvent::Delete(object)) => {
                known.remove(&id(&object));
                previous.remove(&id(&object));
                delete(&object, &id(&object));
            }
            Ok(WatchEvent::Init) => relisted.clear(),
            Ok(WatchEvent::InitApply(object)) => {
                relisted.insert(id(&object));
                known.insert(id(&object));
                previous.insert(id(&object), object.clone());
                apply(&object);
            }
            Ok(WatchEvent::InitDone) => {
                let gone: Vec<String> = known.difference(&relisted).cloned().collect();
                for key in gone {
                    known.remove(&key);
                    if let Some(object) = previous.remove(&key) {
                        delete(&object, &key);
                    }
                }
            }
            Err(error) => {
                tracing::warn!(%error, "watch failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

async fn watch_nodes(scheduler: Arc<Scheduler>) {
    let api: Api<Node> = Api::all(scheduler.client.clone());
    follow(
        api,
        |node: &Node| {
            let mut shared = scheduler.lock();
            shared.cache.upsert_node(node);
            shared.queue.cluster_changed(Instant::now());
            drop(shared);
            scheduler.wake.notify_one();
        },
        |node: &Node, _| {
            scheduler
                .lock()
                .cache
                .remove_node(node.metadata.name.as_deref().unwrap_or_default());
        },
    )
    .await;
}

async fn watch_namespaces(scheduler: Arc<Scheduler>) {
    let api: Api<Namespace> = Api::all(scheduler.client.clone());
    follow(
        api,
        |ns: &Namespace| {
            let name = ns.metadata.name.clone().unwrap_or_default();
            let labels = ns.metadata.labels.clone().unwrap_or_default();
            scheduler.lock().namespace_labels.insert(name, labels);
        },
        |ns: &Namespace, _| {
            scheduler
                .lock()
                .namespace_labels
                .remove(ns.metadata.name.as_deref().unwrap_or_default());
        },
    )
    .await;
}

async fn watch_pdbs(scheduler: Arc<Scheduler>) {
    let api: Api<PodDisruptionBudget> = Api::all(scheduler.client.clone());
    follow(
        api,
        |budget: &PodDisruptionBudget| {
            let key = format!(
                "{}/{}",
                budget.metadata.namespace.as_deref().unwrap_or_default(),
                budget.metadata.name.as_deref().unwrap_or_default()
            );
            scheduler.lock().pdbs.insert(key, Pdb::from_budget(budget));
        },
        |_, key| {
            scheduler.lock().pdbs.remove(key);
        },
    )
    .await;
}

async fn watch_pods(scheduler: Arc<Scheduler>) {
    let api: Api<Pod> = Api::all(scheduler.client.clone());
    follow(
        api,
        |pod: &Pod| {
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            let key = pod_key(pod);
            let spec = pod.spec.as_ref();
            let node_name = spec
                .and_then(|s| s.node_name.as_deref())
                .unwrap_or_default();
            let mut shared = scheduler.lock();
            if is_terminal(pod) {
                if shared.cache.contains_pod(&uid) {
                    shared.cache.remove_pod(&uid);
                    shared.queue.cluster_changed(Instant::now());
                }
                shared.queue.remove(&key);
            } else if !node_name.is_empty() {
                shared.cache.upsert_bound_pod(PodInfo::from_pod(pod));
                shared.queue.remove(&key);
            } else if pod.metadata.deletion_timestamp.is_none()
                && spec
                    .and_then(|s| s.scheduler_name.as_deref())
                    .unwrap_or(DEFAULT_SCHEDULER_NAME)
                    == scheduler.config.scheduler_name
            {
                follow_nomination(&mut shared, PodInfo::from_pod(pod));
                let priority = spec.and_then(|s| s.priority).unwrap_or(0);
                shared
                    .queue
                    .upsert(&key, Arc::new(pod.clone()), priority, Instant::now());
                drop(shared);
                scheduler.wake.notify_one();
            }
        },
        |pod: &Pod, _| {
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            let mut shared = scheduler.lock();
            shared.queue.remove(&pod_key(pod));
            shared.cache.nominations_mut().remove(&uid);
            if shared.cache.contains_pod(&uid) {
                shared.cache.remove_pod(&uid);
                shared.queue.cluster_changed(Instant::now());
                drop(shared);
                scheduler.wake.notify_one();
            }
        },
    )
    .await;
}

/// A pending pod's `status.nominatedNodeName` as the watch shows it. An update without one
/// keeps a nomination made here (the status patch may not have been seen yet), as kube's
/// nominator does.
fn follow_nomination(shared: &mut Shared, info: PodInfo) {
    let nominations = shared.cache.nominations_mut();
    let node = if info.nominated_node_name.is_empty() {
        nominations.node_of(&info.uid).map(str::to_string)
    } else {
        Some(info.nominated_node_name.clone())
    };
    if let Some(node) = node {
        nominations.nominate(info, &node);
    }
}

/// What to write in the pod's `status.nominatedNodeName` with its PodScheduled condition.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Nomination {
    Keep,
    Set(String),
    Clear,
}

/// What one decision produced.
enum Decision {
    Bind {
        key: String,
        pod: Arc<Pod>,
        node: String,
    },
    Unschedulable {
        pod: Arc<Pod>,
        error: FitError,
        nomination: Nomination,
    },
    Preempt {
        key: String,
        pod: Arc<Pod>,
        error: FitError,
        candidate: Candidate,
        /// Lower-priority pods nominated to the same node, whose nomination ends.
        displaced: Vec<Arc<PodInfo>>,
    },
}

async fn schedule_loop(scheduler: Arc<Scheduler>) {
    let bindings = Arc::new(Semaphore::new(scheduler.config.parallel_bindings.max(1)));
    let mut start = SearchStart::default();
    let mut rng = StdRng::from_os_rng();
    loop {
        let decision = {
            let mut shared = scheduler.lock();
            let now = Instant::now();
            shared.cache.expire_assumed(now);
            match shared.queue.pop(now) {
                None => None,
                Some(popped) => Some(decide(
                    &mut shared,
                    popped.key,
                    popped.item,
                    &mut start,
                    &mut rng,
                )),
            }
        };
        match decision {
            None => {
                let next = scheduler.lock().queue.next_ready();
                let wait = next.map_or(Duration::from_secs(1), |at| {
                    at.saturating_duration_since(Instant::now())
                });
                let _ = tokio::time::timeout(
                    wait.max(Duration::from_millis(1)),
                    scheduler.wake.notified(),
                )
                .await;
            }
            Some(Decision::Bind { key, pod, node }) => {
                let Ok(permit) = bindings.clone().acquire_owned().await else {
                    return;
                };
                let scheduler = scheduler.clone();
                tokio::spawn(async move {
                    let bound = bind(&scheduler, &key, &pod, &node).await;
                    // The event does not hold up the next binding.
                    drop(permit);
                    if let Some(message) = bound {
                        record_event(&scheduler, &pod, "Normal", "Scheduled", &message).await;
                    }
                });
            }
            Some(Decision::Unschedulable {
                pod,
                error,
                nomination,
            }) => {
                let scheduler = scheduler.clone();
                tokio::spawn(async move {
                    report_unschedulable(&scheduler, &pod, &error, &nomination).await
                });
            }
            Some(Decision::Preempt {
                key,
                pod,
                error,
                candidate,
                displaced,
            }) => {
                let scheduler = scheduler.clone();
                tokio::spawn(async move {
                    preempt(&scheduler, &key, &pod, &error, &candidate, &displaced).await
                });
            }
        }
    }
}

fn decide(
    shared: &mut Shared,
    key: String,
    pod: Arc<Pod>,
    start: &mut SearchStart,
    rng: &mut StdRng,
) -> Decision {
    let info = PodInfo::from_pod(&pod);
    let Shared {
        cache,
        namespace_labels,
        queue,
        pdbs,
    } = shared;
    let namespaces = |name: &str| namespace_labels.get(name).cloned();
    let mut error = match schedule(
        &info,
        cache.nodes(),
        cache.nominations(),
        start,
        &namespaces,
        rng,
    ) {
        Ok(index) => {
            let node = cache.nodes()[index].name.clone();
            cache.assume(info, &node);
            return Decision::Bind { key, pod, node };
        }
        Err(error) => error,
    };
    queue.unschedulable(&key, Instant::now());
    let pdbs: Vec<Pdb> = pdbs.values().cloned().collect();
    let cluster = Cluster {
        nodes: cache.nodes(),
        nominations: cache.nominations(),
        pdbs: &pdbs,
        namespaces: &namespaces,
    };
    let outcome = preemption::preempt(&info, &cluster, &error, rng);
    error.preemption = outcome.message();
    let nominations = cache.nominations_mut();
    match outcome {
        Outcome::NotEligible(_) => Decision::Unschedulable {
            pod,
            error,
            nomination: Nomination::Keep,
        },
        Outcome::NotHelpful(_) => {
            let nominated =
                nominations.node_of(&info.uid).is_some() || !info.nominated_node_name.is_empty();
            nominations.remove(&info.uid);
            Decision::Unschedulable {
                pod,
                error,
                nomination: if nominated {
                    Nomination::Clear
                } else {
                    Nomination::Keep
                },
            }
        }
        Outcome::Nominate(candidate) => {
            for victim in &candidate.victims {
                nominations.mark_victim(&victim.uid);
            }
            let displaced = nominations.lower_than(&info, &candidate.node);
            for other in &displaced {
                nominations.remove(&other.uid);
            }
            nominations.nominate(info, &candidate.node);
            Decision::Preempt {
                key,
                pod,
                error,
                candidate,
                displaced,
            }
        }
    }
}

/// Carries out a preemption: each victim gets the DisruptionTarget condition, a graceful
/// delete and a `Preempted` event; displaced lower-priority nominations are cleared; the
/// preemptor gets its nominated node with its PodScheduled condition. If a victim cannot be
/// deleted, the preemptor loses the nomination and retries after a backoff.
async fn preempt(
    scheduler: &Scheduler,
    key: &str,
    pod: &Pod,
    error: &FitError,
    candidate: &Candidate,
    displaced: &[Arc<PodInfo>],
) {
    let preemptor_uid = pod.metadata.uid.clone().unwrap_or_default();
    let scheduler_name = pod
        .spec
        .as_ref()
        .and_then(|s| s.scheduler_name.clone())
        .unwrap_or_else(|| scheduler.config.scheduler_name.clone());
    tracing::info!(
        pod = %key,
        node = %candidate.node,
        victims = candidate.victims.len(),
        "preempting"
    );
    let results = futures::future::join_all(candidate.victims.iter().map(|victim| {
        preempt_victim(
            scheduler,
            victim,
            &preemptor_uid,
            &scheduler_name,
            &candidate.node,
        )
    }))
    .await;
    if let Some(Err(error)) = results.into_iter().find(Result::is_err) {
        tracing::warn!(pod = %key, %error, "preemption failed; retrying later");
        let mut shared = scheduler.lock();
        for victim in &candidate.victims {
            shared.cache.nominations_mut().unmark_victim(&victim.uid);
        }
        shared.cache.nominations_mut().remove(&preemptor_uid);
        shared.queue.retry_later(key, Instant::now());
        return;
    }
    for other in displaced {
        let pods: Api<Pod> = Api::namespaced(scheduler.client.clone(), &other.namespace);
        let patch = json!({"status": {"nominatedNodeName": null}});
        if let Err(error) = pods
            .patch_status(&other.name, &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            tracing::warn!(pod = %other.key(), %error, "clearing the nominated node failed");
        }
    }
    let nomination = Nomination::Set(candidate.node.clone());
    report_unschedulable(scheduler, pod, error, &nomination).await;
}

/// One victim: the DisruptionTarget condition, then the graceful delete, then the event.
/// A victim already gone (or already being deleted) is fine.
async fn preempt_victim(
    scheduler: &Scheduler,
    victim: &PodInfo,
    preemptor_uid: &str,
    scheduler_name: &str,
    node: &str,
) -> Result<(), kube::Error> {
    if victim.deleting {
        return Ok(());
    }
    let pods: Api<Pod> = Api::namespaced(scheduler.client.clone(), &victim.namespace);
    let condition = json!({"status": {"conditions": [{
        "type": "DisruptionTarget",
        "status": "True",
        "reason": "PreemptionByScheduler",
        "message": format!("{scheduler_name}: preempting to accommodate a higher priority pod"),
        "lastTransitionTime": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    }]}});
    let gone = |error: &kube::Error| matches!(error, kube::Error::Api(s) if s.is_not_found());
    match pods
        .patch_status(
            &victim.name,
            &PatchParams::default(),
            &Patch::Strategic(condition),
        )
        .await
    {
        Err(error) if gone(&error) => return Ok(()),
        Err(error) => return Err(error),
        Ok(_) => {}
    }
    match pods.delete(&victim.name, &DeleteParams::default()).await {
        Err(error) if gone(&error) => return Ok(()),
        Err(error) => return Err(error),
        Ok(_) => {}
    }
    let about = Pod {
        metadata: ObjectMeta {
            name: Some(victim.name.clone()),
            namespace: Some(victim.namespace.clone()),
            uid: Some(victim.uid.clone()),
            ..Default::default()
        },
        ..Default::default()
    };
    let message = format!("Preempted by pod {preemptor_uid} on node {node}");
    record_event(scheduler, &about, "Normal", "Preempted", &message).await;
    Ok(())
}

/// Writes the binding; the `Scheduled` event's message when it was written.
async fn bind(scheduler: &Scheduler, key: &str, pod: &Pod, node: &str) -> Option<String> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let binding = Binding {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(namespace.clone()),
            uid: Some(uid.clone()),
            ..Default::default()
        },
        target: ObjectReference {
            kind: Some("Node".into()),
            name: Some(node.to_string()),
            ..Default::default()
        },
    };
    let pods: Api<Pod> = Api::namespaced(scheduler.client.clone(), &namespace);
    let result: Result<serde_json::Value, kube::Error> = pods
        .create_subresource("binding", &name, &PostParams::default(), &binding)
        .await;
    match result {
        Ok(_) => {
            {
                let mut shared = scheduler.lock();
                shared.cache.binding_finished(&uid, Instant::now());
                shared.queue.done(key);
            }
            Some(format!(
                "Successfully assigned {namespace}/{name} to {node}"
            ))
        }
        Err(error) => {
            tracing::warn!(pod = %key, %node, %error, "binding failed");
            let gone = matches!(&error, kube::Error::Api(s) if s.is_not_found());
            let mut shared = scheduler.lock();
            shared.cache.forget(&uid);
            if gone {
                shared.queue.remove(key);
            } else {
                shared.queue.retry_later(key, Instant::now());
            }
            None
        }
    }
}

async fn report_unschedulable(
    scheduler: &Scheduler,
    pod: &Pod,
    error: &FitError,
    nomination: &Nomination,
) {
    let message = error.to_string();
    tracing::info!(pod = %pod_key(pod), %message, "unschedulable");
    let name = pod.metadata.name.clone().unwrap_or_default();
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let already = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"))
        .is_some_and(|c| c.status == "False" && c.message.as_deref() == Some(message.as_str()));
    let nominated = pod
        .status
        .as_ref()
        .and_then(|s| s.nominated_node_name.as_deref())
        .unwrap_or_default();
    let nomination_written = match nomination {
        Nomination::Keep => true,
        Nomination::Set(node) => nominated == node,
        Nomination::Clear => nominated.is_empty(),
    };
    if !already || !nomination_written {
        let mut patch = json!({"status": {"conditions": [{
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": message,
            "lastProbeTime": null,
            "lastTransitionTime": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        }]}});
        match nomination {
            Nomination::Keep => {}
            Nomination::Set(node) => patch["status"]["nominatedNodeName"] = json!(node),
            Nomination::Clear => patch["status"]["nominatedNodeName"] = json!(null),
        }
        let pods: Api<Pod> = Api::namespaced(scheduler.client.clone(), &namespace);
        if let Err(error) = pods
            .patch_status(&name, &PatchParams::default(), &Patch::Strategic(patch))
            .await
        {
            tracing::warn!(pod = %pod_key(pod), %error, "writing the PodScheduled condition failed");
        }
    }
    record_event(scheduler, pod, "Warning", "FailedScheduling", &message).await;
}

/// A core/v1 Event about `pod` from this scheduler (what `kubectl describe pod` lists).
async fn record_event(scheduler: &Scheduler, pod: &Pod, kind: &str, reason: &str, message: &str) {
    let component = &scheduler.config.scheduler_name;
    crate::events::record_about(&scheduler.client, component, pod, kind, reason, message).await;
}
