//! The namespace controller ("namespace"): when a namespace is deleted it deletes everything
//! in it (every namespaced resource the discovery API lists), reports progress in the
//! namespace's `NamespaceDeletion*`/`NamespaceContentRemaining`/`NamespaceFinalizersRemaining`
//! conditions, and once nothing is left removes the `kubernetes` finalizer through the
//! `finalize` subresource, which lets the namespace go. Every step is idempotent, so it also
//! works beside an apiserver that empties namespaces itself.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, NamespaceCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PostParams};
use kube::discovery::verbs;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use tokio_util::sync::CancellationToken;

use super::Context;
use super::garbage_collector::discover;

/// The finalizer in `spec.finalizers` this controller owns.
pub const FINALIZER: &str = "kubernetes";

/// Runs until `shutdown`.
pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    let client = ctx.client.clone();
    Controller::new(
        Api::<Namespace>::all(client.clone()),
        watcher::Config::default(),
    )
    .graceful_shutdown_on(shutdown.cancelled_owned())
    .run(reconcile, error_policy, Arc::new(client))
    .for_each(|result| async move {
        if let Err(error) = result {
            tracing::debug!(%error, "namespace reconcile");
        }
    })
    .await;
}

fn error_policy(_ns: Arc<Namespace>, error: &kube::Error, _client: Arc<Client>) -> Action {
    tracing::debug!(%error, "namespace sync failed; retrying");
    Action::requeue(Duration::from_secs(1))
}

fn has_finalizer(namespace: &Namespace) -> bool {
    namespace
        .spec
        .as_ref()
        .and_then(|s| s.finalizers.as_ref())
        .is_some_and(|f| f.iter().any(|f| f == FINALIZER))
}

/// What one pass over a namespace's content found.
#[derive(Default, Debug)]
struct Progress {
    discovery_error: Option<String>,
    delete_errors: Vec<String>,
    /// resource (plural.group) → objects left.
    remaining: BTreeMap<String, usize>,
    /// finalizer → objects still holding it.
    finalizers: BTreeMap<String, usize>,
}

async fn reconcile(cached: Arc<Namespace>, client: Arc<Client>) -> Result<Action, kube::Error> {
    if cached.metadata.deletion_timestamp.is_none() || !has_finalizer(&cached) {
        return Ok(Action::await_change());
    }
    let namespaces: Api<Namespace> = Api::all((*client).clone());
    let Some(namespace) = namespaces.get_opt(&cached.name_any()).await? else {
        return Ok(Action::await_change());
    };
    if namespace.metadata.deletion_timestamp.is_none() || !has_finalizer(&namespace) {
        return Ok(Action::await_change());
    }
    let name = namespace.name_any();
    let progress = delete_content(&client, &name).await;
    write_conditions(&namespaces, namespace.clone(), &progress).await?;
    if progress.discovery_error.is_some()
        || !progress.delete_errors.is_empty()
        || !progress.remaining.is_empty()
    {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    let mut finalized = namespace;
    if let Some(spec) = finalized.spec.as_mut() {
        spec.finalizers = Some(
            spec.finalizers
                .iter()
                .flatten()
                .filter(|f| *f != FINALIZER)
                .cloned()
                .collect(),
        );
    }
    match namespaces
        .replace_subresource("finalize", &name, &PostParams::default(), &finalized)
        .await
    {
        Ok(_) => {
            tracing::info!(namespace = %name, "namespace emptied; removed the kubernetes finalizer");
            Ok(Action::await_change())
        }
        Err(kube::Error::Api(status)) if status.is_not_found() || status.code == 409 => {
            Ok(Action::requeue(Duration::from_secs(1)))
        }
        Err(error) => Err(error),
    }
}

/// Deletes what is left in `namespace` and reports what remains.
async fn delete_content(client: &Client, namespace: &str) -> Progress {
    let mut progress = Progress::default();
    let resources = match discover(client).await {
        Ok(resources) => resources,
        Err(error) => {
            progress.discovery_error = Some(error.to_string());
            return progress;
        }
    };
    for resource in resources
        .iter()
        .filter(|r| r.namespaced && r.supports(verbs::LIST) && r.supports(verbs::DELETE))
    {
        let api: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), namespace, &resource.resource);
        let items = match api.list(&ListParams::default()).await {
            Ok(list) => list.items,
            Err(kube::Error::Api(status)) if status.is_not_found() || status.code == 405 => {
                continue;
            }
            Err(error) => {
                progress
                    .delete_errors
                    .push(format!("{}: {error}", resource.key()));
                continue;
            }
        };
        if items.is_empty() {
            continue;
        }
        let label = if resource.resource.group.is_empty() {
            resource.resource.plural.clone()
        } else {
            format!("{}.{}", resource.resource.plural, resource.resource.group)
        };
        progress.remaining.insert(label, items.len());
        for object in &items {
            for finalizer in object.finalizers() {
                *progress.finalizers.entry(finalizer.clone()).or_default() += 1;
            }
            if object.metadata.deletion_timestamp.is_some() {
                continue;
            }
            match api
                .delete(&object.name_any(), &DeleteParams::default())
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.is_not_found() || status.code == 409 => {}
                Err(error) => progress.delete_errors.push(format!(
                    "{}/{}: {error}",
                    resource.key(),
                    object.name_any()
                )),
            }
        }
    }
    progress
}

fn condition(type_: &str, failing: bool, reason: &str, message: String) -> NamespaceCondition {
    NamespaceCondition {
        type_: type_.into(),
        status: if failing { "True" } else { "False" }.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_transition_time: Some(Time(k8s_openapi::jiff::Timestamp::now())),
    }
}

/// kube's five deletion conditions for `progress`.
fn conditions_for(progress: &Progress) -> Vec<NamespaceCondition> {
    let mut conditions = Vec::new();
    conditions.push(match &progress.discovery_error {
        Some(error) => condition(
            "NamespaceDeletionDiscoveryFailure",
            true,
            "DiscoveryFailed",
            format!("Discovery failed for some groups: {error}"),
        ),
        None => condition(
            "NamespaceDeletionDiscoveryFailure",
            false,
            "ResourcesDiscovered",
            "All resources successfully discovered".into(),
        ),
    });
    conditions.push(condition(
        "NamespaceDeletionGroupVersionParsingFailure",
        false,
        "ParsedGroupVersions",
        "All legacy kube types successfully parsed".into(),
    ));
    conditions.push(if progress.delete_errors.is_empty() {
        condition(
            "NamespaceDeletionContentFailure",
            false,
            "ContentDeleted",
            "All content successfully deleted, may be waiting on finalization".into(),
        )
    } else {
        condition(
            "NamespaceDeletionContentFailure",
            true,
            "ContentDeletionFailed",
            format!(
                "Failed to delete all resource types, {} remaining: {}",
                progress.delete_errors.len(),
                progress.delete_errors.join(", ")
            ),
        )
    });
    conditions.push(if progress.remaining.is_empty() {
        condition(
            "NamespaceContentRemaining",
            false,
            "ContentRemoved",
            "All content successfully removed".into(),
        )
    } else {
        let listed: Vec<String> = progress
            .remaining
            .iter()
            .map(|(r, n)| format!("{r} has {n} resource instances"))
            .collect();
        condition(
            "NamespaceContentRemaining",
            true,
            "SomeResourcesRemain",
            format!("Some resources are remaining: {}", listed.join(", ")),
        )
    });
    conditions.push(if progress.finalizers.is_empty() {
        condition(
            "NamespaceFinalizersRemaining",
            false,
            "ContentHasNoFinalizers",
            "All content-preserving finalizers finished".into(),
        )
    } else {
        let listed: Vec<String> = progress
            .finalizers
            .iter()
            .map(|(f, n)| format!("{f} in {n} resource instances"))
            .collect();
        condition(
            "NamespaceFinalizersRemaining",
            true,
            "SomeFinalizersRemain",
            format!(
                "Some content in the namespace has finalizers remaining: {}",
                listed.join(", ")
            ),
        )
    });
    conditions
}

async fn write_conditions(
    namespaces: &Api<Namespace>,
    mut namespace: Namespace,
    progress: &Progress,
) -> Result<(), kube::Error> {
    let status = namespace.status.get_or_insert_with(Default::default);
    let existing = status.conditions.clone().unwrap_or_default();
    let mut changed = false;
    let mut merged = Vec::new();
    for mut wanted in conditions_for(progress) {
        if let Some(old) = existing.iter().find(|c| c.type_ == wanted.type_) {
            if old.status == wanted.status {
                wanted.last_transition_time = old.last_transition_time.clone();
            }
            changed |= old.status != wanted.status
                || old.reason != wanted.reason
                || old.message != wanted.message;
        } else {
            changed = true;
        }
        merged.push(wanted);
    }
    if !changed {
        return Ok(());
    }
    status.conditions = Some(merged);
    match namespaces
        .replace_status(&namespace.name_any(), &PostParams::default(), &namespace)
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.is_not_found() || status.code == 409 => Ok(()),
        Err(error) => Err(error),
    }
}
