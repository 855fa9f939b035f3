//! The ReplicaSet controller ("replicaset"): keeps `spec.replicas` active pods that match the
//! selector and are controlled by the ReplicaSet (adopting matching orphans, releasing pods
//! that stopped matching), creating them from the template in slow-start batches and
//! deleting the least useful first; writes the replica counts, observedGeneration and the
//! ReplicaFailure condition. Expectations (the pods it created or deleted but has not yet
//! seen through its watch) keep a slow watch from making it act twice.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::Context;
use super::work_queue::{self, WorkQueue, key_of, split_key};
use super::workload_common::{
    self as common, SyncError, becomes_available_in, claim, controller_of, controller_ref,
    deletion_order, is_active, is_available, is_ready, labels_of, pod_from_template, selector_of,
};
use crate::events::{EventRecorder, NORMAL, WARNING};

const COMPONENT: &str = "replicaset-controller";
/// Pods created or deleted in one sync at most (kube's burstReplicas).
const BURST_REPLICAS: usize = 500;
/// Expectations not met by then are dropped (a watch event was lost).
const EXPECTATIONS_TIMEOUT: Duration = Duration::from_secs(300);

/// The pods a sync created or deleted that the pod cache has not shown yet.
#[derive(Default)]
struct Expectations {
    creates: HashSet<String>,
    deletes: HashSet<String>,
    since: Option<Instant>,
}

struct Controller {
    client: Client,
    sets: Store<ReplicaSet>,
    pods: Store<Pod>,
    events: EventRecorder,
    /// Shared with the pod watch, which marks created pods as seen (even ones deleted before
    /// the cache could show them).
    expectations: Arc<Mutex<HashMap<String, Expectations>>>,
}

pub async fn run(context: Arc<Context>, shutdown: CancellationToken) {
    let client = context.client.clone();
    let queue = Arc::new(WorkQueue::default());
    let q = queue.clone();
    let (sets, sets_informer) = work_queue::informer(
        Api::<ReplicaSet>::all(client.clone()),
        move |rs: &ReplicaSet| q.add(key_of(&rs.metadata)),
    );
    let q = queue.clone();
    let owners = sets.clone();
    let expectations: Arc<Mutex<HashMap<String, Expectations>>> = Arc::default();
    let seen = expectations.clone();
    let (pods, pods_informer) = work_queue::informer(Api::<Pod>::all(client.clone()), move |pod| {
        for key in owners_of_pod(&owners, pod) {
            if let Some(pending) = seen.lock().unwrap_or_else(|p| p.into_inner()).get_mut(&key) {
                pending
                    .creates
                    .remove(pod.metadata.name.as_deref().unwrap_or_default());
            }
            q.add(key);
        }
    });
    let ready = Box::pin(work_queue::all_ready(vec![
        work_queue::ready_of(&sets),
        work_queue::ready_of(&pods),
    ]));
    let controller = Arc::new(Controller {
        client: client.clone(),
        sets,
        pods,
        events: EventRecorder::new(client, COMPONENT),
        expectations,
    });
    work_queue::run_controller(
        "replicaset",
        queue,
        vec![Box::pin(sets_informer), Box::pin(pods_informer)],
        ready,
        shutdown,
        |key| {
            let controller = controller.clone();
            async move { controller.sync(&key).await }
        },
    )
    .await;
}

/// The ReplicaSets a pod event concerns: its controller, or for an orphan every ReplicaSet
/// whose selector matches it (one may adopt it).
fn owners_of_pod(sets: &Store<ReplicaSet>, pod: &Pod) -> Vec<String> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    if let Some(owner) = controller_of(&pod.metadata) {
        if owner.kind == "ReplicaSet" && owner.api_version == "apps/v1" {
            return vec![format!("{namespace}/{}", owner.name)];
        }
        return Vec::new();
    }
    let labels = labels_of(&pod.metadata);
    sets.state()
        .iter()
        .filter(|rs| rs.metadata.namespace.as_deref() == Some(namespace.as_str()))
        .filter(|rs| {
            rs.spec
                .as_ref()
                .and_then(|s| selector_of(&s.selector).ok())
                .is_some_and(|m| m.matches(&labels))
        })
        .map(|rs| key_of(&rs.metadata))
        .collect()
}

/// The message of an API error (what kube prints after "Error creating: ").
pub fn error_message(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => status.message.clone(),
        other => other.to_string(),
    }
}

impl Controller {
    fn lock_expectations(&self) -> std::sync::MutexGuard<'_, HashMap<String, Expectations>> {
        self.expectations.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether every pod this ReplicaSet created or deleted has been seen in the cache.
    fn expectations_met(&self, key: &str, namespace: &str) -> bool {
        let mut all = self.lock_expectations();
        let Some(pending) = all.get_mut(key) else {
            return true;
        };
        if pending
            .since
            .is_some_and(|s| s.elapsed() > EXPECTATIONS_TIMEOUT)
        {
            all.remove(key);
            return true;
        }
        pending.creates.retain(|name| {
            self.pods
                .get(&ObjectRef::new(name).within(namespace))
                .is_none()
        });
        let live: HashSet<String> = self
            .pods
            .state()
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter_map(|p| p.metadata.uid.clone())
            .collect();
        pending.deletes.retain(|uid| live.contains(uid));
        let met = pending.creates.is_empty() && pending.deletes.is_empty();
        if met {
            all.remove(key);
        }
        met
    }

    fn expect(&self, key: &str, created: Option<String>, deleted: Option<String>) {
        let mut all = self.lock_expectations();
        let pending = all.entry(key.to_string()).or_default();
        pending.since = Some(Instant::now());
        pending.creates.extend(created);
        pending.deletes.extend(deleted);
    }

    async fn sync(&self, key: &str) -> Result<Option<Duration>, SyncError> {
        let (namespace, name) = split_key(key);
        let Some(rs) = self.sets.get(&ObjectRef::new(name).within(namespace)) else {
            self.lock_expectations().remove(key);
            return Ok(None);
        };
        let spec = rs.spec.clone().unwrap_or_default();
        let selector = selector_of(&spec.selector)?;
        let pods_api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let candidates = self
            .pods
            .state()
            .into_iter()
            .filter(|p| p.metadata.namespace.as_deref() == Some(namespace))
            .collect();
        let owner = controller_ref("apps/v1", "ReplicaSet", &rs.metadata);
        let deleting = rs.metadata.deletion_timestamp.is_some();
        let owned = claim(&pods_api, &owner, deleting, &selector, candidates).await?;
        let active: Vec<Arc<Pod>> = owned.into_iter().filter(|p| is_active(p)).collect();

        let mut failure = None;
        if !deleting && self.expectations_met(key, namespace) {
            failure = self.manage(key, &rs, &active, &pods_api).await.err();
        }
        let again = self.write_status(&rs, &active, failure.as_ref()).await?;
        match failure {
            Some(error) => Err(error.into()),
            None => Ok(again),
        }
    }

    /// Creates or deletes pods toward `spec.replicas`.
    async fn manage(
        &self,
        key: &str,
        rs: &ReplicaSet,
        active: &[Arc<Pod>],
        pods_api: &Api<Pod>,
    ) -> Result<(), ManageError> {
        let spec = rs.spec.clone().unwrap_or_default();
        let want = usize::try_from(spec.replicas.unwrap_or(1)).unwrap_or(0);
        let namespace = rs.metadata.namespace.clone().unwrap_or_default();
        let rs_name = rs.metadata.name.clone().unwrap_or_default();
        if active.len() < want {
            let Some(template) = spec.template.as_ref() else {
                return Err(ManageError::Create(
                    "the ReplicaSet has no pod template".into(),
                ));
            };
            let mut left = (want - active.len()).min(BURST_REPLICAS);
            let mut batch = 1;
            let owner = controller_ref("apps/v1", "ReplicaSet", &rs.metadata);
            while left > 0 {
                let size = batch.min(left);
                let creates = (0..size).map(|_| {
                    let pod = pod_from_template(
                        template,
                        &namespace,
                        None,
                        Some(generate_name_prefix(&rs_name)),
                        owner.clone(),
                    );
                    async move { pods_api.create(&PostParams::default(), &pod).await }
                });
                let results = futures::future::join_all(creates).await;
                let mut first_error = None;
                for result in results {
                    match result {
                        Ok(pod) => {
                            let pod_name = pod.metadata.name.clone().unwrap_or_default();
                            self.expect(key, Some(pod_name.clone()), None);
                            self.events
                                .record(
                                    rs,
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
                                    rs,
                                    WARNING,
                                    "FailedCreate",
                                    &format!("Error creating: {message}"),
                                )
                                .await;
                            first_error.get_or_insert(message);
                        }
                    }
                }
                if let Some(message) = first_error {
                    return Err(ManageError::Create(message));
                }
                left -= size;
                batch *= 2;
            }
        } else if active.len() > want {
            let mut victims: Vec<&Arc<Pod>> = active.iter().collect();
            victims.sort_by(|a, b| deletion_order(a, b));
            let count = (active.len() - want).min(BURST_REPLICAS);
            for pod in victims.into_iter().take(count) {
                let pod_name = pod.metadata.name.clone().unwrap_or_default();
                match pods_api.delete(&pod_name, &DeleteParams::default()).await {
                    Ok(_) => {
                        self.expect(key, None, pod.metadata.uid.clone());
                        self.events
                            .record(
                                rs,
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
                                rs,
                                WARNING,
                                "FailedDelete",
                                &format!("Error deleting: {message}"),
                            )
                            .await;
                        return Err(ManageError::Delete(message));
                    }
                }
            }
        }
        Ok(())
    }

    /// Writes the counts and conditions when they changed; returns when to sync again for
    /// a pod that becomes available after minReadySeconds.
    async fn write_status(
        &self,
        rs: &ReplicaSet,
        active: &[Arc<Pod>],
        failure: Option<&ManageError>,
    ) -> Result<Option<Duration>, SyncError> {
        let spec = rs.spec.clone().unwrap_or_default();
        let min_ready = spec.min_ready_seconds.unwrap_or(0);
        let now = common::now();
        let template_labels = spec
            .template
            .as_ref()
            .and_then(|t| t.metadata.as_ref())
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        let fully_labeled = active
            .iter()
            .filter(|p| {
                let labels = labels_of(&p.metadata);
                template_labels
                    .iter()
                    .all(|(k, v)| labels.get(k) == Some(v))
            })
            .count();
        let ready = active.iter().filter(|p| is_ready(p)).count();
        let available = active
            .iter()
            .filter(|p| is_available(p, min_ready, now))
            .count();
        let again = active
            .iter()
            .filter_map(|p| becomes_available_in(p, min_ready, now))
            .min();
        let old = rs.status.clone().unwrap_or_default();
        let mut conditions: Vec<ReplicaSetCondition> = old
            .conditions
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter(|c| c.type_ != "ReplicaFailure")
            .collect();
        if let Some(failure) = failure {
            let (reason, message) = match failure {
                ManageError::Create(m) => ("FailedCreate", m),
                ManageError::Delete(m) => ("FailedDelete", m),
            };
            let previous = old
                .conditions
                .iter()
                .flatten()
                .find(|c| c.type_ == "ReplicaFailure" && c.status == "True");
            conditions.push(ReplicaSetCondition {
                type_: "ReplicaFailure".into(),
                status: "True".into(),
                reason: Some(reason.into()),
                message: Some(message.clone()),
                last_transition_time: previous
                    .and_then(|c| c.last_transition_time.clone())
                    .or(Some(Time(now))),
            });
        }
        let conditions = (!conditions.is_empty()).then_some(conditions);
        let count = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
        let unchanged = old.replicas == count(active.len())
            && old.fully_labeled_replicas.unwrap_or(0) == count(fully_labeled)
            && old.ready_replicas.unwrap_or(0) == count(ready)
            && old.available_replicas.unwrap_or(0) == count(available)
            && old.observed_generation == rs.metadata.generation
            && old.conditions == conditions;
        if !unchanged {
            let patch = json!({"status": {
                "replicas": count(active.len()),
                "fullyLabeledReplicas": omit_zero(count(fully_labeled)),
                "readyReplicas": omit_zero(count(ready)),
                "availableReplicas": omit_zero(count(available)),
                "observedGeneration": rs.metadata.generation,
                "conditions": conditions,
            }});
            let api: Api<ReplicaSet> = Api::namespaced(
                self.client.clone(),
                rs.metadata.namespace.as_deref().unwrap_or_default(),
            );
            let name = rs.metadata.name.clone().unwrap_or_default();
            match api
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(patch))
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.is_not_found() => return Ok(None),
                Err(error) => return Err(error.into()),
            }
        }
        Ok(again)
    }
}

/// Zero counts are omitted from status, as kube's omitempty does (null removes them).
pub fn omit_zero(n: i32) -> Value {
    if n == 0 { Value::Null } else { Value::from(n) }
}

/// `<name>-`, shortened so that generated names stay valid (kube keeps 58 characters).
pub fn generate_name_prefix(name: &str) -> String {
    let prefix = format!("{name}-");
    if prefix.len() > 58 {
        prefix.chars().take(58).collect()
    } else {
        prefix
    }
}

/// Why managing the pods failed (what the ReplicaFailure condition says).
#[derive(Debug, thiserror::Error)]
enum ManageError {
    #[error("creating pods failed: {0}")]
    Create(String),
    #[error("deleting pods failed: {0}")]
    Delete(String),
}

impl From<ManageError> for SyncError {
    fn from(error: ManageError) -> SyncError {
        SyncError::Invalid(error.to_string())
    }
}
