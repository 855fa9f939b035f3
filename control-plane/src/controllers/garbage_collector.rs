//! The garbage collector ("garbagecollector"): keeps a graph of every object of every
//! listable, watchable and deletable resource (found through the discovery API, rediscovered
//! every 30 s and whenever an owner's kind is unknown, so custom resources take part) with
//! its ownerReferences, and acts on it:
//! - an object whose owners are all gone (checked by uid with a live read) is deleted in the
//!   background; owners that are gone are dropped from an object that still has others;
//! - an owner deleted in the foreground (`foregroundDeletion` finalizer) has its dependents
//!   deleted and loses the finalizer once none with `blockOwnerDeletion` remains;
//! - an owner deleted with `orphan` has the reference removed from each dependent, then
//!   loses the finalizer.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions, PropagationPolicy,
};
use kube::discovery::{Discovery, Scope, verbs};
use kube::runtime::watcher::{self, Event as WatchEvent};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::Context;

pub const FOREGROUND_FINALIZER: &str = "foregroundDeletion";
pub const ORPHAN_FINALIZER: &str = "orphan";
const REDISCOVERY: Duration = Duration::from_secs(30);
/// How soon the same object may be acted on again (the graph catches up meanwhile).
const COOLDOWN: Duration = Duration::from_secs(1);

/// A resource found through discovery.
#[derive(Clone, Debug)]
pub struct DiscoveredResource {
    pub resource: ApiResource,
    pub namespaced: bool,
    pub operations: Vec<String>,
}

impl DiscoveredResource {
    pub fn supports(&self, verb: &str) -> bool {
        self.operations.iter().any(|v| v == verb)
    }

    /// `group/plural`, the identity the GC watches by.
    pub fn key(&self) -> String {
        format!("{}/{}", self.resource.group, self.resource.plural)
    }
}

/// Every resource the apiserver serves (preferred versions, no subresources).
pub async fn discover(client: &Client) -> Result<Vec<DiscoveredResource>, kube::Error> {
    let discovery = Discovery::new(client.clone()).run().await?;
    let mut found = Vec::new();
    for group in discovery.groups() {
        for (resource, capabilities) in group.recommended_resources() {
            found.push(DiscoveredResource {
                namespaced: matches!(capabilities.scope, Scope::Namespaced),
                operations: capabilities.operations.clone(),
                resource,
            });
        }
    }
    Ok(found)
}

/// Resources whose objects never carry ownerReferences worth collecting.
fn ignored(resource: &ApiResource) -> bool {
    matches!(
        (resource.group.as_str(), resource.plural.as_str()),
        ("", "events") | ("events.k8s.io", "events")
    )
}

/// One object in the graph.
#[derive(Clone, Debug)]
struct GraphNode {
    resource: Arc<DiscoveredResource>,
    namespace: Option<String>,
    name: String,
    resource_version: Option<String>,
    owners: Vec<OwnerReference>,
    finalizers: Vec<String>,
    deleting: bool,
}

impl GraphNode {
    fn has_finalizer(&self, finalizer: &str) -> bool {
        self.finalizers.iter().any(|f| f == finalizer)
    }

    fn api(&self, client: &Client) -> Api<DynamicObject> {
        match &self.namespace {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &self.resource.resource),
            None => Api::all_with(client.clone(), &self.resource.resource),
        }
    }
}

#[derive(Default)]
struct Graph {
    nodes: HashMap<String, GraphNode>,
    /// Resources watched, and whether their first list is in.
    watched: HashMap<String, bool>,
    /// uids seen since a resource's relist began.
    relisting: HashMap<String, HashSet<String>>,
    /// (group, kind) → resource, to find owners.
    kinds: HashMap<(String, String), Arc<DiscoveredResource>>,
}

struct Collector {
    client: Client,
    graph: Mutex<Graph>,
    changed: Notify,
    rediscover: Notify,
    acted: Mutex<HashMap<String, Instant>>,
}

impl Collector {
    fn graph(&self) -> MutexGuard<'_, Graph> {
        self.graph.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// True when `uid` was not acted on within the cooldown (and records it now).
    fn may_act(&self, uid: &str) -> bool {
        let mut acted = self.acted.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        acted.retain(|_, at| now.duration_since(*at) < COOLDOWN);
        if acted.contains_key(uid) {
            return false;
        }
        acted.insert(uid.to_string(), now);
        true
    }
}

/// Runs until `shutdown`.
pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    let collector = Arc::new(Collector {
        client: ctx.client.clone(),
        graph: Mutex::new(Graph::default()),
        changed: Notify::new(),
        rediscover: Notify::new(),
        acted: Mutex::new(HashMap::new()),
    });
    let mut watchers = Vec::new();
    let processor = tokio::spawn(process_loop(collector.clone()));
    loop {
        match discover(&collector.client).await {
            Ok(resources) => {
                for resource in resources {
                    let resource = Arc::new(resource);
                    let mut graph = collector.graph();
                    graph.kinds.insert(
                        (
                            resource.resource.group.clone(),
                            resource.resource.kind.clone(),
                        ),
                        resource.clone(),
                    );
                    let watchable = [verbs::LIST, verbs::WATCH, verbs::DELETE]
                        .iter()
                        .all(|v| resource.supports(v));
                    if !watchable || ignored(&resource.resource) {
                        continue;
                    }
                    if graph.watched.contains_key(&resource.key()) {
                        continue;
                    }
                    graph.watched.insert(resource.key(), false);
                    drop(graph);
                    watchers.push(tokio::spawn(watch_resource(collector.clone(), resource)));
                }
            }
            Err(error) => tracing::warn!(%error, "garbage collector discovery failed"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(REDISCOVERY) => {}
            _ = collector.rediscover.notified() => {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    processor.abort();
    for watcher in watchers {
        watcher.abort();
    }
}

async fn watch_resource(collector: Arc<Collector>, resource: Arc<DiscoveredResource>) {
    let api: Api<DynamicObject> = Api::all_with(collector.client.clone(), &resource.resource);
    let key = resource.key();
    let mut stream = watcher::watcher(api, watcher::Config::default()).boxed();
    while let Some(event) = stream.next().await {
        if let Err(error) = &event {
            // A resource that cannot be listed must not hold the others back.
            collector.graph().watched.insert(key.clone(), true);
            tracing::debug!(%error, resource = %key, "garbage collector watch failed");
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        let mut graph = collector.graph();
        match event {
            Ok(WatchEvent::Apply(object)) => upsert(&mut graph, &resource, &object),
            Ok(WatchEvent::Delete(object)) => {
                if let Some(uid) = object.uid() {
                    graph.nodes.remove(&uid);
                }
            }
            Ok(WatchEvent::Init) => {
                graph.relisting.insert(key.clone(), HashSet::new());
            }
            Ok(WatchEvent::InitApply(object)) => {
                if let Some(uid) = object.uid() {
                    graph.relisting.entry(key.clone()).or_default().insert(uid);
                }
                upsert(&mut graph, &resource, &object);
            }
            Ok(WatchEvent::InitDone) => {
                let seen = graph.relisting.remove(&key).unwrap_or_default();
                graph
                    .nodes
                    .retain(|uid, node| node.resource.key() != key || seen.contains(uid));
                graph.watched.insert(key.clone(), true);
            }
            Err(_) => {}
        }
        drop(graph);
        collector.changed.notify_one();
    }
}

fn upsert(graph: &mut Graph, resource: &Arc<DiscoveredResource>, object: &DynamicObject) {
    let Some(uid) = object.uid() else {
        return;
    };
    graph.nodes.insert(
        uid,
        GraphNode {
            resource: resource.clone(),
            namespace: object.namespace(),
            name: object.name_any(),
            resource_version: object.resource_version(),
            owners: object.owner_references().to_vec(),
            finalizers: object.finalizers().to_vec(),
            deleting: object.metadata.deletion_timestamp.is_some(),
        },
    );
}

async fn process_loop(collector: Arc<Collector>) {
    loop {
        tokio::select! {
            _ = collector.changed.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (nodes, kinds, synced) = {
            let graph = collector.graph();
            (
                graph.nodes.clone(),
                graph.kinds.clone(),
                !graph.watched.is_empty() && graph.watched.values().all(|s| *s),
            )
        };
        if !synced {
            continue;
        }
        let mut dependents: HashMap<&str, Vec<&str>> = HashMap::new();
        for (uid, node) in &nodes {
            for owner in &node.owners {
                dependents
                    .entry(owner.uid.as_str())
                    .or_default()
                    .push(uid.as_str());
            }
        }
        let snapshot = Snapshot {
            nodes: &nodes,
            dependents: &dependents,
            kinds: &kinds,
        };
        for (uid, node) in &nodes {
            let result = if node.deleting {
                process_deleting_owner(&collector, &snapshot, uid, node).await
            } else if !node.owners.is_empty() {
                process_dependent(&collector, &snapshot, uid, node).await
            } else {
                Ok(())
            };
            if let Err(error) = result {
                tracing::debug!(%error, object = %node.name, "garbage collection step failed");
            }
        }
    }
}

struct Snapshot<'a> {
    nodes: &'a HashMap<String, GraphNode>,
    dependents: &'a HashMap<&'a str, Vec<&'a str>>,
    kinds: &'a HashMap<(String, String), Arc<DiscoveredResource>>,
}

/// Orphan and foreground deletion of an owner.
async fn process_deleting_owner(
    collector: &Collector,
    snapshot: &Snapshot<'_>,
    uid: &str,
    node: &GraphNode,
) -> Result<(), kube::Error> {
    let dependents = snapshot.dependents.get(uid).cloned().unwrap_or_default();
    if node.has_finalizer(ORPHAN_FINALIZER) {
        if !collector.may_act(uid) {
            return Ok(());
        }
        for dependent_uid in &dependents {
            if let Some(dependent) = snapshot.nodes.get(*dependent_uid) {
                remove_owner_refs(collector, dependent, &[uid]).await?;
            }
        }
        tracing::info!(object = %node.name, "orphaned the dependents; removing the orphan finalizer");
        return remove_finalizer(collector, node, ORPHAN_FINALIZER).await;
    }
    if node.has_finalizer(FOREGROUND_FINALIZER) {
        let blocking = dependents.iter().any(|d| {
            snapshot.nodes.get(*d).is_some_and(|dep| {
                dep.owners
                    .iter()
                    .any(|o| o.uid == uid && o.block_owner_deletion == Some(true))
            })
        });
        if !blocking && collector.may_act(uid) {
            tracing::info!(object = %node.name, "dependents gone; removing the foregroundDeletion finalizer");
            return remove_finalizer(collector, node, FOREGROUND_FINALIZER).await;
        }
    }
    Ok(())
}

/// What an owner reference points at.
enum OwnerState {
    /// Exists and is not waiting for its dependents.
    Solid,
    /// Gone (or replaced by an object with another uid).
    Dangling,
    /// Being deleted in the foreground.
    Waiting,
}

async fn owner_state(
    collector: &Collector,
    snapshot: &Snapshot<'_>,
    dependent: &GraphNode,
    owner: &OwnerReference,
) -> Result<OwnerState, kube::Error> {
    if let Some(node) = snapshot.nodes.get(&owner.uid) {
        return Ok(
            if node.deleting && node.has_finalizer(FOREGROUND_FINALIZER) {
                OwnerState::Waiting
            } else {
                OwnerState::Solid
            },
        );
    }
    let group = owner
        .api_version
        .rsplit_once('/')
        .map(|(g, _)| g.to_string())
        .unwrap_or_default();
    let Some(resource) = snapshot.kinds.get(&(group, owner.kind.clone())) else {
        // An unknown kind (a CRD not discovered yet): look again, decide later.
        collector.rediscover.notify_one();
        return Ok(OwnerState::Solid);
    };
    let api: Api<DynamicObject> = match (&dependent.namespace, resource.namespaced) {
        (Some(ns), true) => Api::namespaced_with(collector.client.clone(), ns, &resource.resource),
        (None, true) => return Ok(OwnerState::Solid), // invalid: never collect on it
        (_, false) => Api::all_with(collector.client.clone(), &resource.resource),
    };
    Ok(match api.get_opt(&owner.name).await? {
        None => OwnerState::Dangling,
        Some(found) if found.uid().as_deref() != Some(owner.uid.as_str()) => OwnerState::Dangling,
        Some(found)
            if found.metadata.deletion_timestamp.is_some()
                && found.finalizers().iter().any(|f| f == FOREGROUND_FINALIZER) =>
        {
            OwnerState::Waiting
        }
        Some(_) => OwnerState::Solid,
    })
}

async fn process_dependent(
    collector: &Collector,
    snapshot: &Snapshot<'_>,
    uid: &str,
    node: &GraphNode,
) -> Result<(), kube::Error> {
    let mut solid = 0;
    let mut dangling = Vec::new();
    let mut waiting = Vec::new();
    for owner in &node.owners {
        match owner_state(collector, snapshot, node, owner).await? {
            OwnerState::Solid => solid += 1,
            OwnerState::Dangling => dangling.push(owner.uid.as_str()),
            OwnerState::Waiting => waiting.push(owner.uid.as_str()),
        }
    }
    if dangling.is_empty() && waiting.is_empty() {
        return Ok(());
    }
    if !collector.may_act(uid) {
        return Ok(());
    }
    if solid > 0 {
        let gone: Vec<&str> = dangling.iter().chain(&waiting).copied().collect();
        return remove_owner_refs(collector, node, &gone).await;
    }
    let has_dependents = snapshot.dependents.get(uid).is_some_and(|d| !d.is_empty());
    let policy = if !waiting.is_empty() && has_dependents {
        PropagationPolicy::Foreground
    } else if node.has_finalizer(ORPHAN_FINALIZER) {
        PropagationPolicy::Orphan
    } else if node.has_finalizer(FOREGROUND_FINALIZER) {
        PropagationPolicy::Foreground
    } else {
        PropagationPolicy::Background
    };
    tracing::info!(
        object = %node.name,
        resource = %node.resource.key(),
        ?policy,
        "deleting an object whose owners are gone or being deleted"
    );
    let params = DeleteParams {
        propagation_policy: Some(policy),
        preconditions: Some(Preconditions {
            uid: Some(uid.to_string()),
            resource_version: None,
        }),
        ..Default::default()
    };
    match node
        .api(&collector.client)
        .delete(&node.name, &params)
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.is_not_found() || status.code == 409 => Ok(()),
        Err(error) => Err(error),
    }
}

async fn remove_owner_refs(
    collector: &Collector,
    node: &GraphNode,
    owner_uids: &[&str],
) -> Result<(), kube::Error> {
    let kept: Vec<&OwnerReference> = node
        .owners
        .iter()
        .filter(|o| !owner_uids.contains(&o.uid.as_str()))
        .collect();
    if kept.len() == node.owners.len() {
        return Ok(());
    }
    let patch = json!({"metadata": {
        "ownerReferences": (!kept.is_empty()).then_some(kept),
        "resourceVersion": node.resource_version,
    }});
    ignore_gone(
        node.api(&collector.client)
            .patch(&node.name, &PatchParams::default(), &Patch::Merge(patch))
            .await,
    )
}

async fn remove_finalizer(
    collector: &Collector,
    node: &GraphNode,
    finalizer: &str,
) -> Result<(), kube::Error> {
    let kept: Vec<&String> = node.finalizers.iter().filter(|f| *f != finalizer).collect();
    let patch = json!({"metadata": {
        "finalizers": (!kept.is_empty()).then_some(kept),
        "resourceVersion": node.resource_version,
    }});
    ignore_gone(
        node.api(&collector.client)
            .patch(&node.name, &PatchParams::default(), &Patch::Merge(patch))
            .await,
    )
}

fn ignore_gone<T>(result: Result<T, kube::Error>) -> Result<(), kube::Error> {
    match result {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.is_not_found() => Ok(()),
        Err(error) => Err(error),
    }
}
