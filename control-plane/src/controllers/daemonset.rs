//! The DaemonSet controller ("daemonset"): one pod per node that the pod's nodeSelector,
//! required node affinity and taints allow (with kube's automatic DaemonSet tolerations, so
//! cordoned and not-ready nodes still get theirs), each pinned to its node by node affinity
//! `matchFields metadata.name` for the scheduler to bind; removes pods from nodes that no
//! longer qualify; RollingUpdate within maxUnavailable, or with maxSurge (the updated pod
//! starts beside the old one, which goes once the new one is available), or OnDelete;
//! ControllerRevisions hold the template history (`kubectl rollout history/undo`); writes the
//! status counts.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    PodSpec, Taint, Toleration,
};
use kube::api::{DeleteParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::Context;
use super::replicaset::{error_message, generate_name_prefix};
use super::work_queue::{self, WorkQueue, key_of, split_key};
use super::workload_common::{
    self as common, SyncError, becomes_available_in, claim, controller_of, controller_ref,
    is_active, is_available, is_ready, is_terminal, labels_of, pod_from_template, revisions,
    scaled_value, selector_of,
};
use crate::events::{EventRecorder, NORMAL, WARNING};
use crate::scheduler::selector::NodeTerms;

const COMPONENT: &str = "daemonset-controller";
pub const REVISION_HASH: &str = "controller-revision-hash";
const TEMPLATE_GENERATION: &str = "deprecated.daemonset.template.generation";
const EXPECTATIONS_TIMEOUT: Duration = Duration::from_secs(300);

/// The tolerations every DaemonSet pod gets (key, effect).
const DAEMON_TOLERATIONS: &[(&str, &str)] = &[
    ("node.kubernetes.io/not-ready", "NoExecute"),
    ("node.kubernetes.io/unreachable", "NoExecute"),
    ("node.kubernetes.io/disk-pressure", "NoSchedule"),
    ("node.kubernetes.io/memory-pressure", "NoSchedule"),
    ("node.kubernetes.io/pid-pressure", "NoSchedule"),
    ("node.kubernetes.io/unschedulable", "NoSchedule"),
];

/// Per DaemonSet, the pods it created that its cache has not shown yet, and since when.
type PendingCreates = HashMap<String, (HashSet<String>, Instant)>;

struct Controller {
    client: Client,
    sets: Store<DaemonSet>,
    pods: Store<Pod>,
    nodes: Store<Node>,
    events: EventRecorder,
    /// Pods created (by name) that the cache has not shown yet, per DaemonSet.
    /// Shared with the pod watch, which marks created pods as seen.
    pending: Arc<Mutex<PendingCreates>>,
}

pub async fn run(context: Arc<Context>, shutdown: CancellationToken) {
    let client = context.client.clone();
    let queue = Arc::new(WorkQueue::default());
    let q = queue.clone();
    let (sets, sets_informer) = work_queue::informer(
        Api::<DaemonSet>::all(client.clone()),
        move |ds: &DaemonSet| q.add(key_of(&ds.metadata)),
    );
    let q = queue.clone();
    let pending: Arc<Mutex<PendingCreates>> = Arc::default();
    let seen = pending.clone();
    let (pods, pods_informer) =
        work_queue::informer(Api::<Pod>::all(client.clone()), move |pod: &Pod| {
            if let Some(owner) = controller_of(&pod.metadata).filter(|o| o.kind == "DaemonSet") {
                let namespace = pod.metadata.namespace.clone().unwrap_or_default();
                let key = format!("{namespace}/{}", owner.name);
                if let Some((names, _)) =
                    seen.lock().unwrap_or_else(|p| p.into_inner()).get_mut(&key)
                {
                    names.remove(pod.metadata.name.as_deref().unwrap_or_default());
                }
                q.add(key);
            }
        });
    let q = queue.clone();
    let all_sets = sets.clone();
    let (nodes, nodes_informer) =
        work_queue::informer(Api::<Node>::all(client.clone()), move |_: &Node| {
            for ds in all_sets.state() {
                q.add(key_of(&ds.metadata));
            }
        });
    let ready = Box::pin(work_queue::all_ready(vec![
        work_queue::ready_of(&sets),
        work_queue::ready_of(&pods),
        work_queue::ready_of(&nodes),
    ]));
    let controller = Arc::new(Controller {
        client: client.clone(),
        sets,
        pods,
        nodes,
        events: EventRecorder::new(client, COMPONENT),
        pending,
    });
    work_queue::run_controller(
        "daemonset",
        queue,
        vec![
            Box::pin(sets_informer),
            Box::pin(pods_informer),
            Box::pin(nodes_informer),
        ],
        ready,
        shutdown,
        |key| {
            let controller = controller.clone();
            async move { controller.sync(&key).await }
        },
    )
    .await;
}

fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    if let Some(effect) = toleration.effect.as_deref().filter(|e| !e.is_empty())
        && effect != taint.effect
    {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or_default();
    match toleration.operator.as_deref().unwrap_or("Equal") {
        "Exists" => key.is_empty() || key == taint.key,
        _ => {
            key == taint.key
                && toleration.value.as_deref().unwrap_or_default()
                    == taint.value.as_deref().unwrap_or_default()
        }
    }
}

/// The template's spec with the DaemonSet tolerations added.
fn with_daemon_tolerations(spec: &PodSpec) -> PodSpec {
    let mut spec = spec.clone();
    let mut tolerations = spec.tolerations.clone().unwrap_or_default();
    let mut wanted: Vec<(&str, &str)> = DAEMON_TOLERATIONS.to_vec();
    if spec.host_network == Some(true) {
        wanted.push(("node.kubernetes.io/network-unavailable", "NoSchedule"));
    }
    for (key, effect) in wanted {
        let present = tolerations.iter().any(|t| {
            t.key.as_deref() == Some(key)
                && t.effect.as_deref() == Some(effect)
                && t.operator.as_deref() == Some("Exists")
        });
        if !present {
            tolerations.push(Toleration {
                key: Some(key.into()),
                operator: Some("Exists".into()),
                effect: Some(effect.into()),
                ..Default::default()
            });
        }
    }
    spec.tolerations = Some(tolerations);
    spec
}

/// Whether a daemon pod should be placed on `node`, and whether one already there may stay
/// (only untolerated NoExecute taints evict).
fn placement(spec: &PodSpec, node: &Node) -> (bool, bool) {
    let name = node.metadata.name.clone().unwrap_or_default();
    let labels = labels_of(&node.metadata);
    let selected = spec
        .node_selector
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let affinity = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .is_none_or(|required| {
            NodeTerms::compile(&required.node_selector_terms).matches(&name, &labels)
        });
    if !selected || !affinity {
        return (false, false);
    }
    let tolerations = spec.tolerations.clone().unwrap_or_default();
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let untolerated = |effect: &str| {
        taints
            .iter()
            .filter(|t| t.effect == effect)
            .any(|t| !tolerations.iter().any(|tol| tolerates(tol, t)))
    };
    let no_execute = untolerated("NoExecute");
    (!no_execute && !untolerated("NoSchedule"), !no_execute)
}

/// The node a daemon pod is for: its nodeName, or the node its affinity pins it to.
fn target_node(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(name) = spec.node_name.clone().filter(|n| !n.is_empty()) {
        return Some(name);
    }
    let terms = &spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    terms.iter().find_map(|t| {
        t.match_fields.iter().flatten().find_map(|f| {
            (f.key == "metadata.name" && f.operator == "In")
                .then(|| f.values.as_ref()?.first().cloned())
                .flatten()
        })
    })
}

/// Pins a pod spec to `node` (kube replaces the required node affinity with this term).
fn pin_to_node(spec: &mut PodSpec, node: &str) {
    let term = NodeSelectorTerm {
        match_expressions: None,
        match_fields: Some(vec![NodeSelectorRequirement {
            key: "metadata.name".into(),
            operator: "In".into(),
            values: Some(vec![node.to_string()]),
        }]),
    };
    let affinity = spec.affinity.get_or_insert_with(Affinity::default);
    let node_affinity = affinity
        .node_affinity
        .get_or_insert_with(NodeAffinity::default);
    node_affinity.required_during_scheduling_ignored_during_execution = Some(NodeSelector {
        node_selector_terms: vec![term],
    });
}

/// The pods on `node` that are neither finished nor being deleted.
fn active_on<'a>(by_node: &'a BTreeMap<String, Vec<Arc<Pod>>>, node: &str) -> Vec<&'a Arc<Pod>> {
    by_node
        .get(node)
        .into_iter()
        .flatten()
        .filter(|p| is_active(p))
        .collect()
}

fn is_updated(pod: &Pod, hash: &str) -> bool {
    labels_of(&pod.metadata)
        .get(REVISION_HASH)
        .map(String::as_str)
        == Some(hash)
}

/// With maxSurge, a node may run one old and one updated pod: the oldest of each stays, the
/// rest go; the old one also goes once the updated one is available, or at once if it is
/// not ready.
fn surplus_when_surging(
    active: &[&Arc<Pod>],
    hash: &str,
    min_ready: i32,
    now: k8s_openapi::jiff::Timestamp,
) -> Vec<Arc<Pod>> {
    let mut by_age: Vec<&Arc<Pod>> = active.to_vec();
    by_age.sort_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0));
    let mut surplus = Vec::new();
    let (mut oldest_new, mut oldest_old) = (None, None);
    for pod in by_age {
        let slot = if is_updated(pod, hash) {
            &mut oldest_new
        } else {
            &mut oldest_old
        };
        if slot.is_none() {
            *slot = Some(pod);
        } else {
            surplus.push(pod.clone());
        }
    }
    if let (Some(new), Some(old)) = (oldest_new, oldest_old)
        && (!is_ready(old) || is_available(new, min_ready, now))
    {
        surplus.push(old.clone());
    }
    surplus
}

/// kube's surging rolling update: an updated pod is started next to the old one on up to
/// `max_surge` nodes at a time (at once where the old pod is unavailable); the old pod is
/// deleted when the new one is available. Returns (old pods to delete, nodes to create on).
fn surge_update(
    by_node: &BTreeMap<String, Vec<Arc<Pod>>>,
    wanted_nodes: &[String],
    hash: &str,
    max_surge: i32,
    min_ready: i32,
    now: k8s_openapi::jiff::Timestamp,
) -> (Vec<Arc<Pod>>, Vec<String>) {
    let mut delete = Vec::new();
    let mut allowed = Vec::new();
    let mut candidates = Vec::new();
    let mut surging = 0;
    for node in wanted_nodes {
        let active = active_on(by_node, node);
        let new: Vec<&&Arc<Pod>> = active.iter().filter(|p| is_updated(p, hash)).collect();
        let old: Vec<&&Arc<Pod>> = active.iter().filter(|p| !is_updated(p, hash)).collect();
        match (old.as_slice(), new.as_slice()) {
            // Nothing to replace; or more than one of a kind, which the node loop trims.
            ([], _) => {}
            ([old], []) => {
                if is_available(old, min_ready, now) {
                    candidates.push(node.clone());
                } else {
                    allowed.push(node.clone());
                }
            }
            ([old], [new]) => {
                if is_available(new, min_ready, now) {
                    delete.push(Arc::clone(old));
                } else {
                    surging += 1;
                }
            }
            _ => surging += 1,
        }
    }
    let room = usize::try_from(max_surge - surging).unwrap_or(0);
    allowed.extend(candidates.into_iter().take(room));
    (delete, allowed)
}

impl Controller {
    fn pending_names(&self, key: &str, namespace: &str) -> bool {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let Some((names, since)) = pending.get_mut(key) else {
            return false;
        };
        names.retain(|n| {
            self.pods
                .get(&ObjectRef::new(n).within(namespace))
                .is_none()
        });
        if names.is_empty() || since.elapsed() > EXPECTATIONS_TIMEOUT {
            pending.remove(key);
            return false;
        }
        true
    }

    fn expect(&self, key: &str, name: String) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let entry = pending
            .entry(key.to_string())
            .or_insert_with(|| (HashSet::new(), Instant::now()));
        entry.0.insert(name);
        entry.1 = Instant::now();
    }

    async fn sync(&self, key: &str) -> Result<Option<Duration>, SyncError> {
        let (namespace, name) = split_key(key);
        let Some(ds) = self.sets.get(&ObjectRef::new(name).within(namespace)) else {
            return Ok(None);
        };
        let spec = ds.spec.clone().unwrap_or_default();
        let selector = selector_of(&spec.selector)?;
        let pods_api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let owner = controller_ref("apps/v1", "DaemonSet", &ds.metadata);
        let candidates = self
            .pods
            .state()
            .into_iter()
            .filter(|p| p.metadata.namespace.as_deref() == Some(namespace))
            .collect();
        let deleting = ds.metadata.deletion_timestamp.is_some();
        let owned = claim(&pods_api, &owner, deleting, &selector, candidates).await?;
        let in_use: Vec<String> = owned
            .iter()
            .filter_map(|p| labels_of(&p.metadata).get(REVISION_HASH).cloned())
            .collect();
        let revision_api: Api<ControllerRevision> = Api::namespaced(self.client.clone(), namespace);
        let labels = spec
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        let (_, current) = revisions::sync(
            &revision_api,
            &owner,
            labels,
            &spec.template,
            spec.revision_history_limit.unwrap_or(10),
            &in_use,
        )
        .await?;
        let hash = revisions::hash_of(&current);
        let daemon_spec = with_daemon_tolerations(&spec.template.spec.clone().unwrap_or_default());
        let mut by_node: BTreeMap<String, Vec<Arc<Pod>>> = BTreeMap::new();
        for pod in &owned {
            if let Some(node) = target_node(pod) {
                by_node.entry(node).or_default().push(pod.clone());
            }
        }
        let nodes = self.nodes.state();
        let min_ready = spec.min_ready_seconds.unwrap_or(0);
        let now = common::now();
        let rolling = spec
            .update_strategy
            .as_ref()
            .filter(|s| s.type_.as_deref() != Some("OnDelete"))
            .map(|s| s.rolling_update.clone().unwrap_or_default());
        // The number of nodes that may run an old and a new pod at once (RollingUpdate with
        // maxSurge), counted against the nodes that should run a daemon pod.
        let eligible = nodes
            .iter()
            .filter(|n| placement(&daemon_spec, n).0)
            .count() as i32;
        let surge = match rolling.as_ref().and_then(|r| r.max_surge.as_ref()) {
            Some(value) => Some(scaled_value(Some(value), "0", eligible, true)?).filter(|s| *s > 0),
            None => None,
        };
        let mut create_on = Vec::new();
        let mut delete = Vec::new();
        let mut wanted_nodes = Vec::new();
        let mut misscheduled = 0;
        for node in &nodes {
            let node_name = node.metadata.name.clone().unwrap_or_default();
            let (should_run, may_stay) = placement(&daemon_spec, node);
            let pods = by_node.get(&node_name).cloned().unwrap_or_default();
            let active: Vec<&Arc<Pod>> = pods.iter().filter(|p| is_active(p)).collect();
            if should_run {
                wanted_nodes.push(node_name.clone());
                for failed in pods
                    .iter()
                    .filter(|p| is_terminal(p) && p.metadata.deletion_timestamp.is_none())
                {
                    delete.push(failed.clone());
                }
                let terminating = pods.iter().any(|p| p.metadata.deletion_timestamp.is_some());
                if active.is_empty() && !terminating {
                    create_on.push(node_name);
                } else if surge.is_some() {
                    delete.extend(surplus_when_surging(&active, &hash, min_ready, now));
                } else if active.len() > 1 {
                    let mut extra = active.clone();
                    extra.sort_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0));
                    delete.extend(extra.into_iter().skip(1).cloned());
                }
            } else if !active.is_empty() {
                // Counted as misscheduled; deleted unless a NoSchedule taint came after it.
                misscheduled += 1;
                if !may_stay {
                    delete.extend(active.into_iter().cloned());
                }
            }
        }
        // Pods on nodes that no longer exist go too.
        let known: HashSet<String> = nodes
            .iter()
            .filter_map(|n| n.metadata.name.clone())
            .collect();
        for (node, pods) in &by_node {
            if !known.contains(node) {
                delete.extend(pods.iter().filter(|p| is_active(p)).cloned());
            }
        }
        let desired = wanted_nodes.len() as i32;
        if let Some(max_surge) = surge {
            let (old, new_on) =
                surge_update(&by_node, &wanted_nodes, &hash, max_surge, min_ready, now);
            delete.extend(old);
            create_on.extend(new_on);
        } else if let Some(rolling) = rolling {
            let max_unavailable =
                scaled_value(rolling.max_unavailable.as_ref(), "1", desired, true)?.max(1);
            let mut unavailable = 0;
            let mut old_available = Vec::new();
            for node in &wanted_nodes {
                let active = active_on(&by_node, node);
                let available = active.iter().any(|p| is_available(p, min_ready, now));
                if !available {
                    unavailable += 1;
                }
                for pod in active {
                    if labels_of(&pod.metadata).get(REVISION_HASH) != Some(&hash) {
                        if is_available(pod, min_ready, now) {
                            old_available.push(pod.clone());
                        } else {
                            delete.push(pod.clone());
                        }
                    }
                }
            }
            for pod in old_available {
                if unavailable >= max_unavailable {
                    break;
                }
                delete.push(pod);
                unavailable += 1;
            }
        }
        let mut seen_deletes = HashSet::new();
        delete.retain(|p| seen_deletes.insert(p.metadata.uid.clone()));
        if !deleting && !self.pending_names(key, namespace) {
            self.manage(key, &ds, &hash, &create_on, &delete, &pods_api)
                .await?;
        }
        self.write_status(&ds, &owned, &wanted_nodes, misscheduled, &hash)
            .await
    }

    async fn manage(
        &self,
        key: &str,
        ds: &DaemonSet,
        hash: &str,
        create_on: &[String],
        delete: &[Arc<Pod>],
        pods_api: &Api<Pod>,
    ) -> Result<(), SyncError> {
        let spec = ds.spec.clone().unwrap_or_default();
        let namespace = ds.metadata.namespace.clone().unwrap_or_default();
        let name = ds.metadata.name.clone().unwrap_or_default();
        let owner = controller_ref("apps/v1", "DaemonSet", &ds.metadata);
        let mut failure = None;
        for node in create_on {
            let mut pod = pod_from_template(
                &spec.template,
                &namespace,
                None,
                Some(generate_name_prefix(&name)),
                owner.clone(),
            );
            let labels = pod.metadata.labels.get_or_insert_with(Default::default);
            labels.insert(REVISION_HASH.into(), hash.to_string());
            if let Some(generation) = ds.metadata.generation {
                pod.metadata
                    .annotations
                    .get_or_insert_with(Default::default)
                    .insert(TEMPLATE_GENERATION.into(), generation.to_string());
            }
            let mut pod_spec = with_daemon_tolerations(&pod.spec.clone().unwrap_or_default());
            pin_to_node(&mut pod_spec, node);
            pod.spec = Some(pod_spec);
            match pods_api.create(&PostParams::default(), &pod).await {
                Ok(created) => {
                    let pod_name = created.metadata.name.clone().unwrap_or_default();
                    self.expect(key, pod_name.clone());
                    self.events
                        .record(
                            ds,
                            NORMAL,
                            "SuccessfulCreate",
                            &format!("Created pod: {pod_name}"),
                        )
                        .await;
                }
                Err(error) => {
                    let message = error_message(&error);
                    self.events
                        .record(
                            ds,
                            WARNING,
                            "FailedCreate",
                            &format!("Error creating: {message}"),
                        )
                        .await;
                    failure = Some(SyncError::from(error));
                    break;
                }
            }
        }
        for pod in delete {
            let pod_name = pod.metadata.name.clone().unwrap_or_default();
            match pods_api.delete(&pod_name, &DeleteParams::default()).await {
                Ok(_) => {
                    self.events
                        .record(
                            ds,
                            NORMAL,
                            "SuccessfulDelete",
                            &format!("Deleted pod: {pod_name}"),
                        )
                        .await;
                }
                Err(kube::Error::Api(s)) if s.is_not_found() => {}
                Err(error) => {
                    let message = error_message(&error);
                    self.events
                        .record(
                            ds,
                            WARNING,
                            "FailedDelete",
                            &format!("Error deleting: {message}"),
                        )
                        .await;
                    failure.get_or_insert(SyncError::from(error));
                }
            }
        }
        failure.map_or(Ok(()), Err)
    }

    async fn write_status(
        &self,
        ds: &DaemonSet,
        owned: &[Arc<Pod>],
        wanted_nodes: &[String],
        misscheduled: i32,
        hash: &str,
    ) -> Result<Option<Duration>, SyncError> {
        let spec = ds.spec.clone().unwrap_or_default();
        let min_ready = spec.min_ready_seconds.unwrap_or(0);
        let now = common::now();
        let wanted: HashSet<&String> = wanted_nodes.iter().collect();
        let mut current = 0;
        let mut ready = 0;
        let mut available = 0;
        let mut updated = 0;
        let mut again = None;
        let mut seen = HashSet::new();
        for pod in owned.iter().filter(|p| is_active(p)) {
            let Some(node) = target_node(pod) else {
                continue;
            };
            if !wanted.contains(&node) || !seen.insert(node) {
                continue;
            }
            current += 1;
            if is_ready(pod) {
                ready += 1;
            }
            if is_available(pod, min_ready, now) {
                available += 1;
            } else if let Some(wait) = becomes_available_in(pod, min_ready, now) {
                again = Some(again.map_or(wait, |a: Duration| a.min(wait)));
            }
            if labels_of(&pod.metadata)
                .get(REVISION_HASH)
                .map(String::as_str)
                == Some(hash)
            {
                updated += 1;
            }
        }
        let desired = wanted_nodes.len() as i32;
        let status = json!({
            "desiredNumberScheduled": desired,
            "currentNumberScheduled": current,
            "numberMisscheduled": misscheduled,
            "numberReady": ready,
            "numberAvailable": super::replicaset::omit_zero(available),
            "numberUnavailable": super::replicaset::omit_zero((desired - available).max(0)),
            "updatedNumberScheduled": super::replicaset::omit_zero(updated),
            "observedGeneration": ds.metadata.generation,
        });
        let old = serde_json::to_value(ds.status.clone().unwrap_or_default()).unwrap_or_default();
        if !super::workload_common::patch_status_if_changed(&self.client, ds, &old, &status).await?
        {
            return Ok(None);
        }
        Ok(again)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::NodeSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn node(taints: Vec<Taint>, labels: &[(&str, &str)]) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some("n".into()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..Default::default()
            },
            spec: Some(NodeSpec {
                taints: Some(taints),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn taint(key: &str, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            effect: effect.into(),
            value: Some("x".into()),
            time_added: None,
        }
    }

    #[test]
    fn taints_and_selectors_decide_placement() {
        let spec = with_daemon_tolerations(&PodSpec::default());
        assert_eq!(placement(&spec, &node(vec![], &[])), (true, true));
        let unschedulable = taint("node.kubernetes.io/unschedulable", "NoSchedule");
        assert_eq!(
            placement(&spec, &node(vec![unschedulable], &[])),
            (true, true)
        );
        assert_eq!(
            placement(&spec, &node(vec![taint("gpu", "NoSchedule")], &[])),
            (false, true)
        );
        assert_eq!(
            placement(&spec, &node(vec![taint("gpu", "NoExecute")], &[])),
            (false, false)
        );
        let mut selective = spec.clone();
        selective.node_selector = Some([("disk".to_string(), "ssd".to_string())].into());
        assert_eq!(placement(&selective, &node(vec![], &[])), (false, false));
        assert_eq!(
            placement(&selective, &node(vec![], &[("disk", "ssd")])),
            (true, true)
        );
    }

    #[test]
    fn pods_are_pinned_and_found_by_their_node() {
        let mut spec = PodSpec::default();
        pin_to_node(&mut spec, "worker-1");
        let pod = Pod {
            spec: Some(spec),
            ..Default::default()
        };
        assert_eq!(target_node(&pod).as_deref(), Some("worker-1"));
        let tolerations = with_daemon_tolerations(&PodSpec::default())
            .tolerations
            .unwrap_or_default();
        assert_eq!(tolerations.len(), DAEMON_TOLERATIONS.len());
    }
}
