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
use super::replicaset::omit_zero;
use super::work_queue::{self, WorkQueue, key_of, split_key};
use super::workload_common::{
    self as common, SyncError, claim, controller_of, controller_ref, labels_of, scaled_value,
    selector_of, template_hash,
};
use crate::events::{EventRecorder, NORMAL, WARNING};

mod revisions;
mod rollout;
mod status;

use status::{new_condition, set_condition};

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
