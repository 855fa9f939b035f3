//! The StatefulSet controller ("statefulset"): pods with stable names `<set>-<ordinal>` for
//! ordinals `spec.ordinals.start` .. start + replicas, created in order and each waited for
//! until Running and Ready (OrderedReady) or all at once (Parallel), removed from the highest
//! ordinal down; RollingUpdate from the highest ordinal down to the partition, or OnDelete;
//! ControllerRevisions with the `controller-revision-hash` label on pods; a
//! PersistentVolumeClaim `<claim>-<set>-<ordinal>` per volumeClaimTemplate, created before its
//! pod and never deleted by the controller itself: `persistentVolumeClaimRetentionPolicy`
//! only sets the claim's owners (`retention`) and the garbage collector does the rest; the
//! status counts and current/update revisions.

mod retention;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodTemplateSpec, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::Context;
use super::replicaset::{error_message, omit_zero};
use super::work_queue::{self, WorkQueue, key_of, split_key};
use super::workload_common::{
    self as common, SyncError, becomes_available_in, claim, controller_of, controller_ref,
    is_available, is_ready, is_terminal, labels_of, pod_from_template, revisions, selector_of,
};
use crate::events::{EventRecorder, NORMAL, WARNING};

const COMPONENT: &str = "statefulset-controller";
pub const REVISION_HASH: &str = "controller-revision-hash";
const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";
/// How soon a set waiting for a released claim to go looks again.
const CLAIM_RELEASE_RECHECK: Duration = Duration::from_secs(1);

struct Controller {
    client: Client,
    sets: Store<StatefulSet>,
    pods: Store<Pod>,
    /// A cache only: a claim missing here is read from the apiserver before acting on it.
    claims: Store<PersistentVolumeClaim>,
    events: EventRecorder,
}

pub async fn run(context: Arc<Context>, shutdown: CancellationToken) {
    let client = context.client.clone();
    let queue = Arc::new(WorkQueue::default());
    let q = queue.clone();
    let (sets, sets_informer) = work_queue::informer(
        Api::<StatefulSet>::all(client.clone()),
        move |s: &StatefulSet| q.add(key_of(&s.metadata)),
    );
    let q = queue.clone();
    let (pods, pods_informer) =
        work_queue::informer(Api::<Pod>::all(client.clone()), move |pod: &Pod| {
            if let Some(owner) = controller_of(&pod.metadata).filter(|o| o.kind == "StatefulSet") {
                let namespace = pod.metadata.namespace.clone().unwrap_or_default();
                q.add(format!("{namespace}/{}", owner.name));
            }
        });
    let (claims, claims_informer) = work_queue::informer(
        Api::<PersistentVolumeClaim>::all(client.clone()),
        |_: &PersistentVolumeClaim| {},
    );
    let ready = Box::pin(work_queue::all_ready(vec![
        work_queue::ready_of(&sets),
        work_queue::ready_of(&pods),
    ]));
    let controller = Arc::new(Controller {
        client: client.clone(),
        sets,
        pods,
        claims,
        events: EventRecorder::new(client, COMPONENT),
    });
    work_queue::run_controller(
        "statefulset",
        queue,
        vec![
            Box::pin(sets_informer),
            Box::pin(pods_informer),
            Box::pin(claims_informer),
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

/// The ordinal of a pod named `<set>-<ordinal>`.
fn ordinal_of(set: &str, pod: &Pod) -> Option<i32> {
    pod.metadata
        .name
        .as_deref()?
        .strip_prefix(set)?
        .strip_prefix('-')?
        .parse()
        .ok()
}

fn running_and_ready(pod: &Pod) -> bool {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running") && is_ready(pod)
}

fn terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

fn revision_label(pod: &Pod) -> Option<String> {
    labels_of(&pod.metadata).get(REVISION_HASH).cloned()
}

/// The ordinals the set wants: `spec.ordinals.start` .. start + replicas.
fn ordinal_range(set: &StatefulSet) -> std::ops::Range<i32> {
    let spec = set.spec.as_ref();
    let start = spec
        .and_then(|s| s.ordinals.as_ref())
        .and_then(|o| o.start)
        .unwrap_or(0)
        .max(0);
    let replicas = spec.and_then(|s| s.replicas).unwrap_or(1).max(0);
    start..start.saturating_add(replicas)
}

fn pod_ref(pod: &Pod) -> OwnerReference {
    OwnerReference {
        api_version: "v1".into(),
        kind: "Pod".into(),
        name: pod.metadata.name.clone().unwrap_or_default(),
        uid: pod.metadata.uid.clone().unwrap_or_default(),
        controller: None,
        block_owner_deletion: None,
    }
}

/// The set's reference on its claims (whenDeleted=Delete): a controller reference that does
/// not block the set's deletion, so the claims go after the set (and its pods), not before.
fn claim_set_ref(set: &StatefulSet) -> OwnerReference {
    OwnerReference {
        block_owner_deletion: Some(false),
        ..controller_ref("apps/v1", "StatefulSet", &set.metadata)
    }
}

/// The names of a pod's claims: `<template>-<pod>`.
fn claim_names(set: &StatefulSet, pod_name: &str) -> Vec<String> {
    set.spec
        .as_ref()
        .and_then(|s| s.volume_claim_templates.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|t| t.metadata.name.as_deref())
        .map(|claim| format!("{claim}-{pod_name}"))
        .collect()
}

impl Controller {
    async fn sync(&self, key: &str) -> Result<Option<Duration>, SyncError> {
        let (namespace, name) = split_key(key);
        let Some(set) = self.sets.get(&ObjectRef::new(name).within(namespace)) else {
            return Ok(None);
        };
        let spec = set.spec.clone().unwrap_or_default();
        let selector = selector_of(&spec.selector)?;
        let pods_api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let owner = controller_ref("apps/v1", "StatefulSet", &set.metadata);
        let candidates = self
            .pods
            .state()
            .into_iter()
            .filter(|p| p.metadata.namespace.as_deref() == Some(namespace))
            .collect();
        let deleting = set.metadata.deletion_timestamp.is_some();
        let owned = claim(&pods_api, &owner, deleting, &selector, candidates).await?;
        let in_use: Vec<String> = owned.iter().filter_map(|p| revision_label(p)).collect();
        let revision_api: Api<ControllerRevision> = Api::namespaced(self.client.clone(), namespace);
        let labels = spec
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        let (all_revisions, update) = revisions::sync(
            &revision_api,
            &owner,
            labels,
            &spec.template,
            spec.revision_history_limit.unwrap_or(10),
            &in_use,
        )
        .await?;
        let update_name = update.metadata.name.clone().unwrap_or_default();
        let status = set.status.clone().unwrap_or_default();
        let current = status
            .current_revision
            .as_ref()
            .and_then(|c| {
                all_revisions
                    .iter()
                    .find(|r| r.metadata.name.as_ref() == Some(c))
            })
            .unwrap_or(&update)
            .clone();
        let current_name = current.metadata.name.clone().unwrap_or_default();
        let mut by_ordinal: BTreeMap<i32, Arc<Pod>> = BTreeMap::new();
        for pod in &owned {
            if let Some(ordinal) = ordinal_of(name, pod) {
                by_ordinal.insert(ordinal, pod.clone());
            }
        }
        if !deleting {
            self.manage(&set, &by_ordinal, &current, &update, &pods_api)
                .await?;
        }
        let again = self
            .write_status(&set, &by_ordinal, &current_name, &update_name)
            .await?;
        let waiting = ordinal_range(&set).any(|ordinal| {
            !by_ordinal.contains_key(&ordinal)
                && self.claims_being_released(&set, &format!("{name}-{ordinal}"))
        });
        Ok(if waiting {
            Some(again.map_or(CLAIM_RELEASE_RECHECK, |d| d.min(CLAIM_RELEASE_RECHECK)))
        } else {
            again
        })
    }

    /// True when a claim of the (missing) pod still names an earlier pod as its owner: the
    /// garbage collector is about to delete it (whenScaled=Delete), so the pod waits for it
    /// to go rather than start on a claim that is going away.
    fn claims_being_released(&self, set: &StatefulSet, pod_name: &str) -> bool {
        let namespace = set.metadata.namespace.clone().unwrap_or_default();
        claim_names(set, pod_name).iter().any(|name| {
            self.claims
                .get(&ObjectRef::new(name).within(&namespace))
                .is_some_and(|c| {
                    c.metadata
                        .owner_references
                        .iter()
                        .flatten()
                        .any(|o| o.kind == "Pod")
                })
        })
    }

    /// One step toward the spec, in kube's order.
    async fn manage(
        &self,
        set: &StatefulSet,
        pods: &BTreeMap<i32, Arc<Pod>>,
        current: &ControllerRevision,
        update: &ControllerRevision,
        pods_api: &Api<Pod>,
    ) -> Result<(), SyncError> {
        let spec = set.spec.clone().unwrap_or_default();
        let range = ordinal_range(set);
        let ordered = spec.pod_management_policy.as_deref() != Some("Parallel");
        let strategy = spec.update_strategy.clone().unwrap_or_default();
        let on_delete = strategy.type_.as_deref() == Some("OnDelete");
        let partition = strategy
            .rolling_update
            .and_then(|r| r.partition)
            .unwrap_or(0);
        for ordinal in range.clone() {
            match pods.get(&ordinal) {
                None if self.claims_being_released(
                    set,
                    &format!(
                        "{}-{ordinal}",
                        set.metadata.name.as_deref().unwrap_or_default()
                    ),
                ) =>
                {
                    if ordered {
                        return Ok(());
                    }
                }
                None => {
                    let use_current = current.metadata.name != update.metadata.name
                        && (on_delete || ordinal < range.start.saturating_add(partition));
                    let revision = if use_current { current } else { update };
                    self.create_pod(set, ordinal, revision, pods_api).await?;
                    if ordered {
                        return Ok(());
                    }
                }
                Some(pod) if is_terminal(pod) && !terminating(pod) => {
                    self.delete_pod(set, pod, pods_api).await?;
                    if ordered {
                        return Ok(());
                    }
                }
                Some(pod) => {
                    if !terminating(pod) {
                        self.sync_claim_owners(set, pod, false).await?;
                    }
                    if ordered && (terminating(pod) || !running_and_ready(pod)) {
                        return Ok(());
                    }
                }
            }
        }
        // Condemned pods (outside the ordinal range), highest ordinal first.
        let condemned: Vec<&Arc<Pod>> = pods
            .iter()
            .rev()
            .filter(|(ordinal, _)| !range.contains(ordinal))
            .map(|(_, p)| p)
            .collect();
        for pod in &condemned {
            if terminating(pod) {
                if ordered {
                    return Ok(());
                }
                continue;
            }
            if ordered {
                let set_name = set.metadata.name.as_deref().unwrap_or_default();
                let own = ordinal_of(set_name, pod).unwrap_or(0);
                let healthy = pods
                    .range(..own)
                    .all(|(_, p)| running_and_ready(p) && !terminating(p));
                if !healthy {
                    return Ok(());
                }
            }
            // The claims get their new owners before the pod goes, so that whenScaled=Delete
            // hands them to the garbage collector with it.
            self.sync_claim_owners(set, pod, true).await?;
            self.delete_pod(set, pod, pods_api).await?;
            if ordered {
                return Ok(());
            }
        }
        if on_delete {
            return Ok(());
        }
        let update_name = update.metadata.name.clone();
        // The partition counts from the first ordinal, as kube's does.
        let updatable = range.start.saturating_add(partition.max(0))..range.end;
        for ordinal in updatable.rev() {
            let Some(pod) = pods.get(&ordinal) else {
                return Ok(());
            };
            if revision_label(pod) != update_name && !terminating(pod) {
                return self.delete_pod(set, pod, pods_api).await;
            }
            if !running_and_ready(pod) || terminating(pod) {
                return Ok(());
            }
        }
        Ok(())
    }

    async fn create_pod(
        &self,
        set: &StatefulSet,
        ordinal: i32,
        revision: &ControllerRevision,
        pods_api: &Api<Pod>,
    ) -> Result<(), SyncError> {
        let spec = set.spec.clone().unwrap_or_default();
        let set_name = set.metadata.name.clone().unwrap_or_default();
        let namespace = set.metadata.namespace.clone().unwrap_or_default();
        let pod_name = format!("{set_name}-{ordinal}");
        let template: PodTemplateSpec =
            revisions::template_of(revision).unwrap_or_else(|| spec.template.clone());
        let owner = controller_ref("apps/v1", "StatefulSet", &set.metadata);
        let mut pod = pod_from_template(&template, &namespace, Some(pod_name.clone()), None, owner);
        let labels = pod.metadata.labels.get_or_insert_with(Default::default);
        labels.insert(
            REVISION_HASH.into(),
            revision.metadata.name.clone().unwrap_or_default(),
        );
        labels.insert(POD_NAME_LABEL.into(), pod_name.clone());
        labels.insert(POD_INDEX_LABEL.into(), ordinal.to_string());
        let mut pod_spec = pod.spec.clone().unwrap_or_default();
        pod_spec.hostname = Some(pod_name.clone());
        if let Some(service) = spec.service_name.clone().filter(|s| !s.is_empty()) {
            pod_spec.subdomain = Some(service);
        }
        let claims = spec.volume_claim_templates.clone().unwrap_or_default();
        if !claims.is_empty() {
            let mut volumes: Vec<Volume> = pod_spec.volumes.clone().unwrap_or_default();
            for template in &claims {
                let claim = template.metadata.name.clone().unwrap_or_default();
                let claim_name = format!("{claim}-{pod_name}");
                volumes.retain(|v| v.name != claim);
                volumes.push(Volume {
                    name: claim.clone(),
                    persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                        claim_name: claim_name.clone(),
                        read_only: None,
                    }),
                    ..Default::default()
                });
                self.create_claim(set, template, &claim_name, &pod_name)
                    .await;
            }
            pod_spec.volumes = Some(volumes);
        }
        pod.spec = Some(pod_spec);
        match pods_api.create(&PostParams::default(), &pod).await {
            Ok(_) => {
                self.events
                    .record(
                        set,
                        NORMAL,
                        "SuccessfulCreate",
                        &format!("create Pod {pod_name} in StatefulSet {set_name} successful"),
                    )
                    .await;
                Ok(())
            }
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
            Err(error) => {
                let message = error_message(&error);
                self.events
                    .record(set, WARNING, "FailedCreate", &format!("create Pod {pod_name} in StatefulSet {set_name} failed error: {message}"))
                    .await;
                Err(error.into())
            }
        }
    }

    /// Creates a pod's claim when persistentvolumeclaims are served; says so in an event when
    /// they are not.
    async fn create_claim(
        &self,
        set: &StatefulSet,
        template: &PersistentVolumeClaim,
        claim_name: &str,
        pod_name: &str,
    ) {
        let namespace = set.metadata.namespace.clone().unwrap_or_default();
        let set_name = set.metadata.name.clone().unwrap_or_default();
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), &namespace);
        let mut labels = template.metadata.labels.clone().unwrap_or_default();
        for (k, v) in set
            .spec
            .as_ref()
            .and_then(|s| s.selector.match_labels.clone())
            .unwrap_or_default()
        {
            labels.insert(k, v);
        }
        let set_ref = claim_set_ref(set);
        let not_yet = OwnerReference {
            name: pod_name.to_string(),
            ..pod_ref(&Pod::default())
        };
        let policy = set
            .spec
            .as_ref()
            .and_then(|s| s.persistent_volume_claim_retention_policy.as_ref());
        let owners = retention::wanted_owners(&[], policy, &set_ref, &not_yet, false);
        let claim = PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some(claim_name.to_string()),
                namespace: Some(namespace),
                labels: Some(labels),
                annotations: template.metadata.annotations.clone(),
                owner_references: owners,
                ..Default::default()
            },
            spec: template.spec.clone(),
            status: None,
        };
        match api.create(&PostParams::default(), &claim).await {
            Ok(_) => {
                self.events
                    .record(set, NORMAL, "SuccessfulCreate", &format!("create Claim {claim_name} Pod {pod_name} in StatefulSet {set_name} success"))
                    .await;
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {
                self.events
                    .record(set, WARNING, "FailedCreate", &format!("create Claim {claim_name} for Pod {pod_name} in StatefulSet {set_name} failed error: the apiserver does not serve persistentvolumeclaims"))
                    .await;
            }
            Err(error) => {
                let message = error_message(&error);
                self.events
                    .record(set, WARNING, "FailedCreate", &format!("create Claim {claim_name} for Pod {pod_name} in StatefulSet {set_name} failed error: {message}"))
                    .await;
            }
        }
    }

    /// Gives the pod's claims the owners the retention policy wants (`scaled_down`: the pod's
    /// ordinal is outside the range). A claim that does not exist is left alone; a condemned
    /// pod's claims are read from the apiserver, not the cache, so none is missed.
    async fn sync_claim_owners(
        &self,
        set: &StatefulSet,
        pod: &Pod,
        scaled_down: bool,
    ) -> Result<(), SyncError> {
        let namespace = set.metadata.namespace.clone().unwrap_or_default();
        let pod_name = pod.metadata.name.clone().unwrap_or_default();
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), &namespace);
        let set_ref = claim_set_ref(set);
        let policy = set
            .spec
            .as_ref()
            .and_then(|s| s.persistent_volume_claim_retention_policy.as_ref());
        for name in claim_names(set, &pod_name) {
            let cached = self.claims.get(&ObjectRef::new(&name).within(&namespace));
            let claim = match cached {
                Some(claim) if !scaled_down => (*claim).clone(),
                _ => match api.get_opt(&name).await {
                    Ok(Some(claim)) => claim,
                    Ok(None) => continue,
                    Err(kube::Error::Api(s)) if s.code == 404 => continue,
                    Err(error) => return Err(error.into()),
                },
            };
            let current = claim.metadata.owner_references.clone().unwrap_or_default();
            let Some(owners) =
                retention::wanted_owners(&current, policy, &set_ref, &pod_ref(pod), scaled_down)
            else {
                continue;
            };
            let patch = json!({"metadata": {
                "ownerReferences": owners,
                "resourceVersion": claim.metadata.resource_version,
            }});
            match api
                .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(error) => return Err(error.into()),
            }
        }
        Ok(())
    }

    async fn delete_pod(
        &self,
        set: &StatefulSet,
        pod: &Pod,
        pods_api: &Api<Pod>,
    ) -> Result<(), SyncError> {
        let pod_name = pod.metadata.name.clone().unwrap_or_default();
        let set_name = set.metadata.name.clone().unwrap_or_default();
        match pods_api.delete(&pod_name, &DeleteParams::default()).await {
            Ok(_) => {
                self.events
                    .record(
                        set,
                        NORMAL,
                        "SuccessfulDelete",
                        &format!("delete Pod {pod_name} in StatefulSet {set_name} successful"),
                    )
                    .await;
                Ok(())
            }
            Err(kube::Error::Api(s)) if s.is_not_found() => Ok(()),
            Err(error) => {
                let message = error_message(&error);
                self.events
                    .record(set, WARNING, "FailedDelete", &format!("delete Pod {pod_name} in StatefulSet {set_name} failed error: {message}"))
                    .await;
                Err(error.into())
            }
        }
    }

    async fn write_status(
        &self,
        set: &StatefulSet,
        pods: &BTreeMap<i32, Arc<Pod>>,
        current_name: &str,
        update_name: &str,
    ) -> Result<Option<Duration>, SyncError> {
        let spec = set.spec.clone().unwrap_or_default();
        let min_ready = spec.min_ready_seconds.unwrap_or(0);
        let now = common::now();
        let live: Vec<&Arc<Pod>> = pods.values().filter(|p| !terminating(p)).collect();
        let count = |f: &dyn Fn(&Pod) -> bool| live.iter().filter(|p| f(p)).count() as i32;
        let replicas = live.len() as i32;
        let ready = count(&|p| is_ready(p));
        let available = count(&|p| is_available(p, min_ready, now));
        let again = live
            .iter()
            .filter_map(|p| becomes_available_in(p, min_ready, now))
            .min();
        let mut current_revision = current_name.to_string();
        let mut current = count(&|p| revision_label(p).as_deref() == Some(current_name));
        let updated = count(&|p| revision_label(p).as_deref() == Some(update_name));
        let rolling = spec
            .update_strategy
            .as_ref()
            .and_then(|s| s.type_.as_deref())
            != Some("OnDelete");
        let want = spec.replicas.unwrap_or(1);
        if current_name != update_name
            && rolling
            && updated == want
            && ready == want
            && replicas == want
        {
            current_revision = update_name.to_string();
            current = updated;
        }
        let status = json!({
            "observedGeneration": set.metadata.generation,
            "replicas": replicas,
            "readyReplicas": omit_zero(ready),
            "currentReplicas": omit_zero(current),
            "updatedReplicas": omit_zero(updated),
            "availableReplicas": available,
            "currentRevision": current_revision,
            "updateRevision": update_name,
            "collisionCount": 0,
        });
        let old = serde_json::to_value(set.status.clone().unwrap_or_default()).unwrap_or_default();
        if !super::workload_common::patch_status_if_changed(&self.client, set, &old, &status)
            .await?
        {
            return Ok(None);
        }
        Ok(again)
    }
}
