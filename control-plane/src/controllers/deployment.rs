//! The Deployment controller ("deployment"): owns ReplicaSets named
//! `<deployment>-<pod-template-hash>` (one per template; the hash label keeps their pods
//! apart) and moves replicas between them — RollingUpdate within maxSurge/maxUnavailable,
//! Recreate, proportional scaling mid-rollout, nothing while paused — numbering them with the
//! `deployment.kubernetes.io/revision` annotation (an older template coming back gets the next
//! revision: `kubectl rollout undo`), pruning old ones past `revisionHistoryLimit`, and
//! writing the status `kubectl rollout status` reads (counts, Available and Progressing with
//! the progress deadline).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::Context;
use super::events::{EventRecorder, NORMAL, WARNING};
use super::replicaset::omit_zero;
use super::work_queue::{self, WorkQueue, key_of, split_key};
use super::workload_common::{
    self as common, SyncError, claim, controller_of, controller_ref, labels_of, scaled_value,
    selector_of, template_hash,
};

const COMPONENT: &str = "deployment-controller";
pub const REVISION: &str = "deployment.kubernetes.io/revision";
const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";
/// Deployment annotations not copied to its ReplicaSets.
const NOT_COPIED: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    REVISION_HISTORY,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    "deprecated.deployment.rollback.to",
];

struct Controller {
    client: Client,
    deployments: Store<Deployment>,
    sets: Store<ReplicaSet>,
    events: EventRecorder,
}

pub async fn run(context: Arc<Context>, shutdown: CancellationToken) {
    let client = context.client.clone();
    let queue = Arc::new(WorkQueue::default());
    let q = queue.clone();
    let (deployments, deployments_informer) = work_queue::informer(
        Api::<Deployment>::all(client.clone()),
        move |d: &Deployment| q.add(key_of(&d.metadata)),
    );
    let q = queue.clone();
    let owners = deployments.clone();
    let (sets, sets_informer) =
        work_queue::informer(Api::<ReplicaSet>::all(client.clone()), move |rs| {
            for key in owners_of(&owners, rs) {
                q.add(key);
            }
        });
    let ready = Box::pin(work_queue::all_ready(vec![
        work_queue::ready_of(&deployments),
        work_queue::ready_of(&sets),
    ]));
    let controller = Arc::new(Controller {
        client: client.clone(),
        deployments,
        sets,
        events: EventRecorder::new(client, COMPONENT),
    });
    work_queue::run_controller(
        "deployment",
        queue,
        vec![Box::pin(deployments_informer), Box::pin(sets_informer)],
        ready,
        shutdown,
        |key| {
            let controller = controller.clone();
            async move { controller.sync(&key).await }
        },
    )
    .await;
}

fn owners_of(deployments: &Store<Deployment>, rs: &ReplicaSet) -> Vec<String> {
    let namespace = rs.metadata.namespace.clone().unwrap_or_default();
    if let Some(owner) = controller_of(&rs.metadata) {
        if owner.kind == "Deployment" && owner.api_version == "apps/v1" {
            return vec![format!("{namespace}/{}", owner.name)];
        }
        return Vec::new();
    }
    let labels = labels_of(&rs.metadata);
    deployments
        .state()
        .iter()
        .filter(|d| d.metadata.namespace.as_deref() == Some(namespace.as_str()))
        .filter(|d| {
            d.spec
                .as_ref()
                .and_then(|s| selector_of(&s.selector).ok())
                .is_some_and(|m| m.matches(&labels))
        })
        .map(|d| key_of(&d.metadata))
        .collect()
}

fn replicas_of(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

fn available_of(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .unwrap_or(0)
}

fn revision_of(rs: &ReplicaSet) -> i64 {
    annotation(&rs.metadata, REVISION)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

fn annotation<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.annotations.as_ref()?.get(key).map(String::as_str)
}

fn created(rs: &ReplicaSet) -> Option<Timestamp> {
    rs.metadata.creation_timestamp.as_ref().map(|t| t.0)
}

/// The template without the pod-template-hash label, to compare templates.
fn template_without_hash(template: Option<&k8s_openapi::api::core::v1::PodTemplateSpec>) -> Value {
    let mut value = serde_json::to_value(template).unwrap_or(Value::Null);
    if let Some(labels) = value
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        labels.remove(POD_TEMPLATE_HASH);
    }
    value
}

/// The rolling-update numbers of a deployment.
struct Fenceposts {
    replicas: i32,
    surge: i32,
    unavailable: i32,
    rolling: bool,
}

fn fenceposts(d: &Deployment) -> Result<Fenceposts, SyncError> {
    let spec = d.spec.clone().unwrap_or_default();
    let replicas = spec.replicas.unwrap_or(1);
    let strategy = spec.strategy.unwrap_or_default();
    let rolling = strategy.type_.as_deref() != Some("Recreate");
    if !rolling {
        return Ok(Fenceposts {
            replicas,
            surge: 0,
            unavailable: 0,
            rolling,
        });
    }
    let params = strategy.rolling_update.unwrap_or_default();
    let surge = scaled_value(params.max_surge.as_ref(), "25%", replicas, true)?;
    let mut unavailable = scaled_value(params.max_unavailable.as_ref(), "25%", replicas, false)?;
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    Ok(Fenceposts {
        replicas,
        surge,
        unavailable: unavailable.min(replicas),
        rolling,
    })
}

/// What a sync works on: the deployment's ReplicaSets, the new one split out.
struct Sets {
    new: Option<ReplicaSet>,
    old: Vec<ReplicaSet>,
}

impl Sets {
    fn all(&self) -> Vec<&ReplicaSet> {
        self.old.iter().chain(self.new.as_ref()).collect()
    }
    fn total_replicas(&self) -> i32 {
        self.all().iter().map(|rs| replicas_of(rs)).sum()
    }
    fn set_replicas(&mut self, name: &str, replicas: i32) {
        for rs in self.old.iter_mut().chain(self.new.as_mut()) {
            if rs.metadata.name.as_deref() == Some(name) {
                rs.spec.get_or_insert_with(Default::default).replicas = Some(replicas);
            }
        }
    }
}

fn condition<'a>(
    conditions: &'a [DeploymentCondition],
    type_: &str,
) -> Option<&'a DeploymentCondition> {
    conditions.iter().find(|c| c.type_ == type_)
}

fn new_condition(type_: &str, status: &str, reason: &str, message: &str) -> DeploymentCondition {
    let now = Time(common::now());
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_update_time: Some(now.clone()),
        last_transition_time: Some(now),
    }
}

/// kube's SetDeploymentCondition: the same status and reason changes nothing; the same status
/// keeps its transition time.
fn set_condition(conditions: &mut Vec<DeploymentCondition>, mut new: DeploymentCondition) {
    if let Some(current) = condition(conditions, &new.type_) {
        if current.status == new.status && current.reason == new.reason {
            return;
        }
        if current.status == new.status {
            new.last_transition_time = current.last_transition_time.clone();
        }
    }
    conditions.retain(|c| c.type_ != new.type_);
    conditions.push(new);
}

impl Controller {
    async fn sync(&self, key: &str) -> Result<Option<Duration>, SyncError> {
        let (namespace, name) = split_key(key);
        let Some(d) = self
            .deployments
            .get(&ObjectRef::new(name).within(namespace))
        else {
            return Ok(None);
        };
        let mut d = (*d).clone();
        let spec = d.spec.clone().unwrap_or_default();
        let selector = selector_of(&spec.selector)?;
        let rs_api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), namespace);
        let candidates = self
            .sets
            .state()
            .into_iter()
            .filter(|rs| rs.metadata.namespace.as_deref() == Some(namespace))
            .collect();
        let owner = controller_ref("apps/v1", "Deployment", &d.metadata);
        let deleting = d.metadata.deletion_timestamp.is_some();
        let owned = claim(&rs_api, &owner, deleting, &selector, candidates).await?;
        let owned: Vec<ReplicaSet> = owned.iter().map(|rs| (**rs).clone()).collect();
        let mut sets = split_sets(&d, owned);
        if deleting {
            return self.write_status(&d, &sets, false).await;
        }
        self.check_paused_conditions(&mut d).await?;
        let paused = spec.paused.unwrap_or(false);
        if paused || self.is_scaling_event(&d, &sets) {
            self.sync_revision(&mut d, &mut sets, false).await?;
            self.scale(&d, &mut sets).await?;
            if paused {
                self.cleanup(&d, &sets).await?;
            }
            return self.write_status(&d, &sets, false).await;
        }
        let posts = fenceposts(&d)?;
        if posts.rolling {
            self.rolling_update(&mut d, &mut sets, &posts).await
        } else {
            self.recreate(&mut d, &mut sets).await
        }
    }

    async fn rolling_update(
        &self,
        d: &mut Deployment,
        sets: &mut Sets,
        posts: &Fenceposts,
    ) -> Result<Option<Duration>, SyncError> {
        self.sync_revision(d, sets, true).await?;
        // Scale up the new ReplicaSet within maxSurge.
        if let Some(new) = sets.new.clone() {
            let current = replicas_of(&new);
            let target = if current > posts.replicas {
                posts.replicas
            } else {
                let max_total = posts.replicas + posts.surge;
                let total = sets.total_replicas();
                if total >= max_total {
                    current
                } else {
                    current + (max_total - total).min(posts.replicas - current)
                }
            };
            if target != current {
                self.scale_set(d, sets, &new, target).await?;
                return self.write_status(d, sets, true).await;
            }
        }
        // Scale old ReplicaSets down within maxUnavailable.
        if self.scale_down_old(d, sets, posts).await? {
            return self.write_status(d, sets, true).await;
        }
        if complete(d, d.status.as_ref()) {
            self.cleanup(d, sets).await?;
        }
        self.write_status(d, sets, true).await
    }

    async fn scale_down_old(
        &self,
        d: &Deployment,
        sets: &mut Sets,
        posts: &Fenceposts,
    ) -> Result<bool, SyncError> {
        let old_count: i32 = sets.old.iter().map(replicas_of).sum();
        if old_count == 0 {
            return Ok(false);
        }
        let all_count = sets.total_replicas();
        let min_available = posts.replicas - posts.unavailable;
        let new_unavailable = sets
            .new
            .as_ref()
            .map_or(0, |rs| replicas_of(rs) - available_of(rs));
        let max_scaled_down = all_count - min_available - new_unavailable;
        if max_scaled_down <= 0 {
            return Ok(false);
        }
        let mut old = sets.old.clone();
        old.sort_by_key(created);
        // First the old pods that are not available anyway.
        let mut cleaned = 0;
        for rs in &old {
            if cleaned >= max_scaled_down {
                break;
            }
            let replicas = replicas_of(rs);
            let unhealthy = replicas - available_of(rs);
            if replicas == 0 || unhealthy <= 0 {
                continue;
            }
            let down = (max_scaled_down - cleaned).min(unhealthy);
            self.scale_set(d, sets, rs, replicas - down).await?;
            cleaned += down;
        }
        // Then available ones, keeping minAvailable.
        let available: i32 = sets.all().iter().map(|rs| available_of(rs)).sum();
        let mut scaled = 0;
        if available > min_available {
            let total = available - min_available;
            let old: Vec<ReplicaSet> = {
                let mut o = sets.old.clone();
                o.sort_by_key(created);
                o
            };
            for rs in &old {
                if scaled >= total {
                    break;
                }
                let replicas = replicas_of(rs);
                if replicas == 0 {
                    continue;
                }
                let down = replicas.min(total - scaled);
                self.scale_set(d, sets, rs, replicas - down).await?;
                scaled += down;
            }
        }
        Ok(cleaned + scaled > 0)
    }

    async fn recreate(
        &self,
        d: &mut Deployment,
        sets: &mut Sets,
    ) -> Result<Option<Duration>, SyncError> {
        self.sync_revision(d, sets, false).await?;
        let mut scaled_down = false;
        for rs in sets.old.clone() {
            if replicas_of(&rs) > 0 {
                self.scale_set(d, sets, &rs, 0).await?;
                scaled_down = true;
            }
        }
        let old_running = sets
            .old
            .iter()
            .any(|rs| rs.status.as_ref().is_some_and(|s| s.replicas > 0));
        if scaled_down || old_running {
            return self.write_status(d, sets, true).await;
        }
        if sets.new.is_none() {
            self.sync_revision(d, sets, true).await?;
        }
        let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        if let Some(new) = sets.new.clone()
            && replicas_of(&new) != want
        {
            self.scale_set(d, sets, &new, want).await?;
        }
        if complete(d, d.status.as_ref()) {
            self.cleanup(d, sets).await?;
        }
        self.write_status(d, sets, true).await
    }

    /// A replica count change of the deployment (not of its template): some active
    /// ReplicaSet was sized for another count.
    fn is_scaling_event(&self, d: &Deployment, sets: &Sets) -> bool {
        let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        sets.all()
            .iter()
            .filter(|rs| replicas_of(rs) > 0)
            .any(|rs| {
                annotation(&rs.metadata, DESIRED_REPLICAS)
                    .and_then(|v| v.parse::<i32>().ok())
                    .is_some_and(|desired| desired != want)
            })
    }

    /// kube's proportional scaling: one active ReplicaSet takes the new count; several share
    /// the change in proportion to their sizes, the rest going to the largest.
    async fn scale(&self, d: &Deployment, sets: &mut Sets) -> Result<(), SyncError> {
        let posts = fenceposts(d)?;
        let active: Vec<ReplicaSet> = sets
            .all()
            .into_iter()
            .filter(|rs| replicas_of(rs) > 0)
            .cloned()
            .collect();
        let single = match active.len() {
            0 => sets.new.clone().or_else(|| {
                let mut old = sets.old.clone();
                old.sort_by_key(|rs| std::cmp::Reverse(created(rs)));
                old.into_iter().next()
            }),
            1 => active.first().cloned(),
            _ => None,
        };
        if let Some(rs) = single {
            if replicas_of(&rs) != posts.replicas {
                self.scale_set(d, sets, &rs, posts.replicas).await?;
            }
            return Ok(());
        }
        if let Some(new) = sets.new.clone() {
            let saturated = replicas_of(&new) == posts.replicas
                && annotation(&new.metadata, DESIRED_REPLICAS) == Some(&posts.replicas.to_string())
                && available_of(&new) == posts.replicas;
            if saturated {
                for rs in sets.old.clone() {
                    if replicas_of(&rs) > 0 {
                        self.scale_set(d, sets, &rs, 0).await?;
                    }
                }
                return Ok(());
            }
        }
        if !posts.rolling {
            return Ok(());
        }
        let allowed = if posts.replicas > 0 {
            posts.replicas + posts.surge
        } else {
            0
        };
        let current: i32 = active.iter().map(replicas_of).sum();
        let to_add = allowed - current;
        if to_add == 0 {
            return Ok(());
        }
        let mut ordered = active;
        if to_add > 0 {
            ordered.sort_by(|a, b| {
                replicas_of(b)
                    .cmp(&replicas_of(a))
                    .then(created(b).cmp(&created(a)))
            });
        } else {
            ordered.sort_by(|a, b| {
                replicas_of(b)
                    .cmp(&replicas_of(a))
                    .then(created(a).cmp(&created(b)))
            });
        }
        let status_replicas = d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0);
        let mut added = 0;
        let mut sizes: Vec<i32> = Vec::new();
        for rs in &ordered {
            let replicas = replicas_of(rs);
            let annotated = annotation(&rs.metadata, MAX_REPLICAS)
                .and_then(|v| v.parse::<i32>().ok())
                .unwrap_or(status_replicas);
            let fraction = if posts.replicas == 0 {
                -replicas
            } else if annotated == 0 {
                0
            } else {
                let size = f64::from(replicas) * f64::from(posts.replicas + posts.surge)
                    / f64::from(annotated);
                size.round() as i32 - replicas
            };
            let room = to_add - added;
            let share = if to_add > 0 {
                fraction.min(room)
            } else {
                fraction.max(room)
            };
            added += share;
            sizes.push(replicas + share);
        }
        if let Some(first) = sizes.first_mut() {
            *first = (*first + to_add - added).max(0);
        }
        for (rs, size) in ordered.iter().zip(sizes) {
            if replicas_of(rs) != size {
                self.scale_set(d, sets, rs, size).await?;
            }
        }
        Ok(())
    }

    /// Sets a ReplicaSet's replicas (and the desired/max annotations), with kube's event.
    async fn scale_set(
        &self,
        d: &Deployment,
        sets: &mut Sets,
        rs: &ReplicaSet,
        replicas: i32,
    ) -> Result<(), SyncError> {
        let posts = fenceposts(d)?;
        let name = rs.metadata.name.clone().unwrap_or_default();
        let current = replicas_of(rs);
        let api: Api<ReplicaSet> = Api::namespaced(
            self.client.clone(),
            rs.metadata.namespace.as_deref().unwrap_or_default(),
        );
        let patch = json!({
            "metadata": {"annotations": {
                DESIRED_REPLICAS: posts.replicas.to_string(),
                MAX_REPLICAS: (posts.replicas + posts.surge).to_string(),
            }},
            "spec": {"replicas": replicas},
        });
        api.patch(&name, &PatchParams::default(), &Patch::Merge(patch))
            .await?;
        sets.set_replicas(&name, replicas);
        if current != replicas {
            let direction = if replicas > current { "up" } else { "down" };
            self.events
                .record(
                    d,
                    NORMAL,
                    "ScalingReplicaSet",
                    &format!("Scaled {direction} replica set {name} from {current} to {replicas}"),
                )
                .await;
        }
        Ok(())
    }

    /// Finds (or, with `create`, makes) the new ReplicaSet and gives it the next revision;
    /// the deployment's revision annotation follows it.
    async fn sync_revision(
        &self,
        d: &mut Deployment,
        sets: &mut Sets,
        create: bool,
    ) -> Result<(), SyncError> {
        let max_old = sets.old.iter().map(revision_of).max().unwrap_or(0);
        let next = max_old + 1;
        let namespace = d.metadata.namespace.clone().unwrap_or_default();
        let api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), &namespace);
        let posts = fenceposts(d)?;
        if let Some(new) = sets.new.clone() {
            let current = revision_of(&new);
            let mut annotations = copied_annotations(d);
            let mut changed = false;
            if current < next {
                annotations.insert(REVISION.into(), next.to_string());
                if current > 0 {
                    let history = annotation(&new.metadata, REVISION_HISTORY)
                        .map_or(current.to_string(), |h| format!("{h},{current}"));
                    annotations.insert(REVISION_HISTORY.into(), history);
                }
            }
            let existing = new.metadata.annotations.clone().unwrap_or_default();
            for (k, v) in &annotations {
                if existing.get(k) != Some(v) {
                    changed = true;
                }
            }
            let revision = annotations
                .get(REVISION)
                .cloned()
                .unwrap_or_else(|| current.to_string());
            let min_ready = d.spec.as_ref().and_then(|s| s.min_ready_seconds);
            let rs_min_ready = new.spec.as_ref().and_then(|s| s.min_ready_seconds);
            if changed || min_ready.unwrap_or(0) != rs_min_ready.unwrap_or(0) {
                let name = new.metadata.name.clone().unwrap_or_default();
                let patch = json!({
                    "metadata": {"annotations": annotations},
                    "spec": {"minReadySeconds": min_ready},
                });
                let updated = api
                    .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
                    .await?;
                sets.new = Some(updated);
            }
            self.set_deployment_revision(d, &revision).await?;
            return Ok(());
        }
        if !create {
            return Ok(());
        }
        let spec = d.spec.clone().unwrap_or_default();
        let collision = d.status.as_ref().and_then(|s| s.collision_count);
        let hash = template_hash(&spec.template, collision);
        let mut template = spec.template.clone();
        template
            .metadata
            .get_or_insert_with(Default::default)
            .labels
            .get_or_insert_with(Default::default)
            .insert(POD_TEMPLATE_HASH.into(), hash.clone());
        let mut selector = spec.selector.clone();
        selector
            .match_labels
            .get_or_insert_with(Default::default)
            .insert(POD_TEMPLATE_HASH.into(), hash.clone());
        let d_name = d.metadata.name.clone().unwrap_or_default();
        let rs_name = format!("{d_name}-{hash}");
        let mut annotations = copied_annotations(d);
        annotations.insert(REVISION.into(), next.to_string());
        annotations.insert(DESIRED_REPLICAS.into(), posts.replicas.to_string());
        annotations.insert(
            MAX_REPLICAS.into(),
            (posts.replicas + posts.surge).to_string(),
        );
        let replicas = if posts.rolling {
            let max_total = posts.replicas + posts.surge;
            let total = sets.total_replicas();
            if total >= max_total {
                0
            } else {
                (max_total - total).min(posts.replicas)
            }
        } else {
            posts.replicas
        };
        let mut labels = template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        labels.insert(POD_TEMPLATE_HASH.into(), hash.clone());
        let rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(rs_name.clone()),
                namespace: Some(namespace.clone()),
                labels: Some(labels),
                annotations: Some(annotations),
                owner_references: Some(vec![controller_ref("apps/v1", "Deployment", &d.metadata)]),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(replicas),
                min_ready_seconds: spec.min_ready_seconds,
                selector,
                template: Some(template),
            }),
            status: None,
        };
        match api.create(&PostParams::default(), &rs).await {
            Ok(created) => {
                if replicas > 0 {
                    self.events
                        .record(
                            &*d,
                            NORMAL,
                            "ScalingReplicaSet",
                            &format!("Scaled up replica set {rs_name} from 0 to {replicas}"),
                        )
                        .await;
                }
                let status = d.status.get_or_insert_with(Default::default);
                let mut conditions = status.conditions.clone().unwrap_or_default();
                if spec.progress_deadline_seconds.is_some() {
                    set_condition(
                        &mut conditions,
                        new_condition(
                            "Progressing",
                            "True",
                            "NewReplicaSetCreated",
                            &format!("Created new replica set \"{rs_name}\""),
                        ),
                    );
                }
                status.conditions = Some(conditions);
                sets.new = Some(created);
                self.set_deployment_revision(d, &next.to_string()).await?;
                Ok(())
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {
                let existing = api.get(&rs_name).await?;
                let same_owner = controller_of(&existing.metadata)
                    .is_some_and(|r| Some(&r.uid) == d.metadata.uid.as_ref());
                if same_owner
                    && template_without_hash(
                        existing.spec.as_ref().and_then(|s| s.template.as_ref()),
                    ) == template_without_hash(Some(&spec.template))
                {
                    sets.new = Some(existing);
                    return Ok(());
                }
                // A hash collision: count it so the next hash differs.
                let count = collision.unwrap_or(0) + 1;
                let deployments: Api<Deployment> = Api::namespaced(self.client.clone(), &namespace);
                deployments
                    .patch_status(
                        &d_name,
                        &PatchParams::default(),
                        &Patch::Merge(json!({"status": {"collisionCount": count}})),
                    )
                    .await?;
                Err(SyncError::Invalid(format!(
                    "hash collision for ReplicaSet {rs_name}; collisionCount is now {count}"
                )))
            }
            Err(error) => {
                let message = super::replicaset::error_message(&error);
                self.events
                    .record(
                        &*d,
                        WARNING,
                        "FailedCreate",
                        &format!("Failed to create new replica set \"{rs_name}\": {message}"),
                    )
                    .await;
                Err(error.into())
            }
        }
    }

    async fn set_deployment_revision(
        &self,
        d: &mut Deployment,
        revision: &str,
    ) -> Result<(), SyncError> {
        if annotation(&d.metadata, REVISION) == Some(revision) {
            return Ok(());
        }
        let api: Api<Deployment> = Api::namespaced(
            self.client.clone(),
            d.metadata.namespace.as_deref().unwrap_or_default(),
        );
        let name = d.metadata.name.clone().unwrap_or_default();
        let patch = json!({"metadata": {"annotations": {REVISION: revision}}});
        api.patch(&name, &PatchParams::default(), &Patch::Merge(patch))
            .await?;
        d.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(REVISION.into(), revision.into());
        Ok(())
    }

    /// Progressing says whether the deployment is paused (Unknown/DeploymentPaused) or was
    /// resumed.
    async fn check_paused_conditions(&self, d: &mut Deployment) -> Result<(), SyncError> {
        let spec = d.spec.clone().unwrap_or_default();
        if spec.progress_deadline_seconds.is_none() {
            return Ok(());
        }
        let status = d.status.get_or_insert_with(Default::default);
        let mut conditions = status.conditions.clone().unwrap_or_default();
        let current = condition(&conditions, "Progressing");
        if current.is_some_and(|c| c.reason.as_deref() == Some("ProgressDeadlineExceeded")) {
            return Ok(());
        }
        let paused_exists =
            current.is_some_and(|c| c.reason.as_deref() == Some("DeploymentPaused"));
        let paused = spec.paused.unwrap_or(false);
        if paused && !paused_exists {
            set_condition(
                &mut conditions,
                new_condition(
                    "Progressing",
                    "Unknown",
                    "DeploymentPaused",
                    "Deployment is paused",
                ),
            );
        } else if !paused && paused_exists {
            set_condition(
                &mut conditions,
                new_condition(
                    "Progressing",
                    "Unknown",
                    "DeploymentResumed",
                    "Deployment is resumed",
                ),
            );
        } else {
            return Ok(());
        }
        status.conditions = Some(conditions);
        Ok(())
    }

    /// Deletes the oldest empty ReplicaSets past `revisionHistoryLimit`.
    async fn cleanup(&self, d: &Deployment, sets: &Sets) -> Result<(), SyncError> {
        let Some(limit) = d.spec.as_ref().and_then(|s| s.revision_history_limit) else {
            return Ok(());
        };
        let mut cleanable: Vec<&ReplicaSet> = sets
            .old
            .iter()
            .filter(|rs| rs.metadata.deletion_timestamp.is_none())
            .collect();
        let excess = cleanable.len() as i64 - i64::from(limit);
        if excess <= 0 {
            return Ok(());
        }
        cleanable.sort_by_key(|rs| (revision_of(rs), created(rs)));
        let api: Api<ReplicaSet> = Api::namespaced(
            self.client.clone(),
            d.metadata.namespace.as_deref().unwrap_or_default(),
        );
        for rs in cleanable.into_iter().take(excess as usize) {
            let status = rs.status.clone().unwrap_or_default();
            if status.replicas != 0
                || replicas_of(rs) != 0
                || rs.metadata.generation > status.observed_generation
            {
                continue;
            }
            let name = rs.metadata.name.clone().unwrap_or_default();
            match api.delete(&name, &DeleteParams::background()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.is_not_found() => {}
                Err(error) => return Err(error.into()),
            }
        }
        Ok(())
    }

    /// Writes the counts and conditions; with `progress`, also judges progress against the
    /// deadline. Returns when to look again for a deadline.
    async fn write_status(
        &self,
        d: &Deployment,
        sets: &Sets,
        progress: bool,
    ) -> Result<Option<Duration>, SyncError> {
        let spec = d.spec.clone().unwrap_or_default();
        let want = spec.replicas.unwrap_or(1);
        let old = d.status.clone().unwrap_or_default();
        let all = sets.all();
        let status_of = |rs: &ReplicaSet| rs.status.clone().unwrap_or_default();
        let available: i32 = all.iter().map(|rs| available_of(rs)).sum();
        let total_spec: i32 = all.iter().map(|rs| replicas_of(rs)).sum();
        let replicas: i32 = all.iter().map(|rs| status_of(rs).replicas).sum();
        let updated = sets.new.as_ref().map_or(0, |rs| status_of(rs).replicas);
        let ready: i32 = all
            .iter()
            .map(|rs| status_of(rs).ready_replicas.unwrap_or(0))
            .sum();
        let unavailable = (total_spec - available).max(0);
        let mut conditions = old.conditions.clone().unwrap_or_default();
        let max_unavailable =
            fenceposts(d).map_or(0, |p| if p.rolling { p.unavailable } else { 0 });
        if available >= want - max_unavailable {
            set_condition(
                &mut conditions,
                new_condition(
                    "Available",
                    "True",
                    "MinimumReplicasAvailable",
                    "Deployment has minimum availability.",
                ),
            );
        } else {
            set_condition(
                &mut conditions,
                new_condition(
                    "Available",
                    "False",
                    "MinimumReplicasUnavailable",
                    "Deployment does not have minimum availability.",
                ),
            );
        }
        let mut again = None;
        let new_name = sets
            .new
            .as_ref()
            .and_then(|rs| rs.metadata.name.clone())
            .unwrap_or_default();
        let deadline = spec.progress_deadline_seconds;
        let now = common::now();
        if progress {
            if deadline.is_none() {
                conditions.retain(|c| c.type_ != "Progressing");
            }
            let current = condition(&conditions, "Progressing").cloned();
            let complete_already = replicas == updated
                && current
                    .as_ref()
                    .is_some_and(|c| c.reason.as_deref() == Some("NewReplicaSetAvailable"));
            if let (Some(deadline), false) = (deadline, complete_already) {
                let observed = d.metadata.generation;
                let done = updated == want && replicas == want && available == want;
                let progressing = updated > old.updated_replicas.unwrap_or(0)
                    || (replicas - updated)
                        < (old.replicas.unwrap_or(0) - old.updated_replicas.unwrap_or(0))
                    || ready > old.ready_replicas.unwrap_or(0)
                    || available > old.available_replicas.unwrap_or(0);
                if done && observed.is_some() {
                    set_condition(
                        &mut conditions,
                        new_condition(
                            "Progressing",
                            "True",
                            "NewReplicaSetAvailable",
                            &format!("ReplicaSet \"{new_name}\" has successfully progressed."),
                        ),
                    );
                } else if progressing {
                    let mut c = new_condition(
                        "Progressing",
                        "True",
                        "ReplicaSetUpdated",
                        &format!("ReplicaSet \"{new_name}\" is progressing."),
                    );
                    if let Some(current) = current.as_ref().filter(|c| c.status == "True") {
                        c.last_transition_time = current.last_transition_time.clone();
                    }
                    conditions.retain(|c| c.type_ != "Progressing");
                    conditions.push(c);
                } else if let Some(current) = current.as_ref() {
                    let reason = current.reason.as_deref();
                    if reason != Some("NewReplicaSetAvailable")
                        && reason != Some("ProgressDeadlineExceeded")
                    {
                        let from = current
                            .last_update_time
                            .as_ref()
                            .map_or(now.as_second(), |t| t.0.as_second());
                        let at = from + i64::from(deadline);
                        if at < now.as_second() {
                            set_condition(
                                &mut conditions,
                                new_condition(
                                    "Progressing",
                                    "False",
                                    "ProgressDeadlineExceeded",
                                    &format!(
                                        "ReplicaSet \"{new_name}\" has timed out progressing."
                                    ),
                                ),
                            );
                        } else if reason != Some("DeploymentPaused") {
                            again = Some(Duration::from_secs(
                                (at - now.as_second()).max(0) as u64 + 1,
                            ));
                        }
                    }
                } else if sets.new.is_some() {
                    set_condition(
                        &mut conditions,
                        new_condition(
                            "Progressing",
                            "True",
                            "FoundNewReplicaSet",
                            &format!("Found new replica set \"{new_name}\""),
                        ),
                    );
                }
            }
            let failure = sets.new.as_ref().and_then(|rs| {
                rs.status
                    .as_ref()?
                    .conditions
                    .as_ref()?
                    .iter()
                    .find(|c| c.type_ == "ReplicaFailure")
                    .cloned()
            });
            match failure {
                Some(f) => {
                    let mut c = new_condition(
                        "ReplicaFailure",
                        &f.status,
                        f.reason.as_deref().unwrap_or_default(),
                        f.message.as_deref().unwrap_or_default(),
                    );
                    c.last_transition_time = f.last_transition_time.clone();
                    set_condition(&mut conditions, c);
                }
                None => conditions.retain(|c| c.type_ != "ReplicaFailure"),
            }
        }
        let unchanged = old.replicas.unwrap_or(0) == replicas
            && old.updated_replicas.unwrap_or(0) == updated
            && old.ready_replicas.unwrap_or(0) == ready
            && old.available_replicas.unwrap_or(0) == available
            && old.unavailable_replicas.unwrap_or(0) == unavailable
            && old.observed_generation == d.metadata.generation
            && old.conditions.clone().unwrap_or_default() == conditions
            && self.stored_conditions_match(d, &conditions);
        if unchanged {
            return Ok(again);
        }
        let patch = json!({"status": {
            "observedGeneration": d.metadata.generation,
            "replicas": omit_zero(replicas),
            "updatedReplicas": omit_zero(updated),
            "readyReplicas": omit_zero(ready),
            "availableReplicas": omit_zero(available),
            "unavailableReplicas": omit_zero(unavailable),
            "conditions": conditions,
        }});
        let api: Api<Deployment> = Api::namespaced(
            self.client.clone(),
            d.metadata.namespace.as_deref().unwrap_or_default(),
        );
        let name = d.metadata.name.clone().unwrap_or_default();
        match api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            Ok(_) => Ok(again),
            Err(kube::Error::Api(s)) if s.is_not_found() => Ok(None),
            Err(error) => Err(error.into()),
        }
    }

    /// Whether the conditions in the cache are the ones computed (the sync may have changed
    /// them in memory, e.g. NewReplicaSetCreated or DeploymentPaused).
    fn stored_conditions_match(&self, d: &Deployment, conditions: &[DeploymentCondition]) -> bool {
        let stored = self.deployments.get(&ObjectRef::from(d));
        stored
            .and_then(|s| s.status.clone())
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            == conditions
    }
}

/// kube's DeploymentComplete on a status.
fn complete(d: &Deployment, status: Option<&k8s_openapi::api::apps::v1::DeploymentStatus>) -> bool {
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let Some(status) = status else {
        return false;
    };
    status.updated_replicas.unwrap_or(0) == want
        && status.replicas.unwrap_or(0) == want
        && status.available_replicas.unwrap_or(0) == want
        && status.observed_generation >= d.metadata.generation
}

/// The deployment's annotations that its ReplicaSets carry too.
fn copied_annotations(d: &Deployment) -> BTreeMap<String, String> {
    d.metadata
        .annotations
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| !NOT_COPIED.contains(&k.as_str()))
        .collect()
}

/// Splits owned ReplicaSets into the one whose template is the deployment's (the oldest, if
/// several) and the rest.
fn split_sets(d: &Deployment, owned: Vec<ReplicaSet>) -> Sets {
    let template = d
        .spec
        .as_ref()
        .map(|s| template_without_hash(Some(&s.template)));
    let mut matching: Vec<&ReplicaSet> = owned
        .iter()
        .filter(|rs| {
            Some(template_without_hash(
                rs.spec.as_ref().and_then(|s| s.template.as_ref()),
            )) == template
        })
        .collect();
    matching.sort_by_key(|rs| created(rs));
    let new_name = matching.first().and_then(|rs| rs.metadata.name.clone());
    let mut new = None;
    let mut old = Vec::new();
    for rs in owned {
        if rs.metadata.name == new_name && new.is_none() {
            new = Some(rs);
        } else {
            old.push(rs);
        }
    }
    Sets { new, old }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment};
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    fn deployment(replicas: i32, surge: IntOrString, unavailable: IntOrString) -> Deployment {
        Deployment {
            spec: Some(DeploymentSpec {
                replicas: Some(replicas),
                strategy: Some(DeploymentStrategy {
                    type_: Some("RollingUpdate".into()),
                    rolling_update: Some(RollingUpdateDeployment {
                        max_surge: Some(surge),
                        max_unavailable: Some(unavailable),
                    }),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn fenceposts_round_surge_up_and_unavailable_down() {
        let pct = |s: &str| IntOrString::String(s.into());
        let posts = fenceposts(&deployment(5, pct("25%"), pct("25%"))).ok();
        assert_eq!(posts.map(|p| (p.surge, p.unavailable)), Some((2, 1)));
        let posts = fenceposts(&deployment(3, IntOrString::Int(0), IntOrString::Int(0))).ok();
        assert_eq!(posts.map(|p| (p.surge, p.unavailable)), Some((0, 1)));
        let posts = fenceposts(&deployment(2, IntOrString::Int(1), IntOrString::Int(5))).ok();
        assert_eq!(posts.map(|p| p.unavailable), Some(2));
    }

    #[test]
    fn conditions_keep_their_transition_time_while_the_status_holds() {
        let mut conditions = Vec::new();
        let mut first = new_condition("Progressing", "True", "ReplicaSetUpdated", "a");
        first.last_transition_time = Some(Time(Timestamp::UNIX_EPOCH));
        set_condition(&mut conditions, first);
        set_condition(
            &mut conditions,
            new_condition("Progressing", "True", "NewReplicaSetAvailable", "b"),
        );
        assert_eq!(conditions.len(), 1);
        assert_eq!(
            conditions[0].reason.as_deref(),
            Some("NewReplicaSetAvailable")
        );
        assert_eq!(
            conditions[0].last_transition_time,
            Some(Time(Timestamp::UNIX_EPOCH))
        );
        set_condition(
            &mut conditions,
            new_condition("Progressing", "False", "ProgressDeadlineExceeded", "c"),
        );
        assert_ne!(
            conditions[0].last_transition_time,
            Some(Time(Timestamp::UNIX_EPOCH))
        );
    }
}
