//! Pod garbage collection ("podgc"), every `period`: force-deletes pods bound to nodes that no
//! longer exist (after the node has been missing for `quarantine` and a live read confirms it;
//! a pod that has not finished is first marked Failed with a `DisruptionTarget` condition),
//! pods that are terminating but were never scheduled, and the oldest finished pods beyond
//! `--terminated-pod-gc-threshold` (0 turns that part off).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, Preconditions};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::Context;

/// How often podgc looks and how long a node must be gone before its pods are.
#[derive(Clone, Debug)]
pub struct PodGcSettings {
    pub period: Duration,
    pub quarantine: Duration,
    /// Finished pods kept before the oldest go; 0 keeps all.
    pub terminated_pod_threshold: usize,
}

impl PodGcSettings {
    /// kube-controller-manager's timing with the configured threshold.
    pub fn from_context(ctx: &Context) -> PodGcSettings {
        PodGcSettings {
            period: Duration::from_secs(20),
            quarantine: Duration::from_secs(40),
            terminated_pod_threshold: usize::try_from(ctx.config.terminated_pod_gc_threshold)
                .unwrap_or(0),
        }
    }
}

/// Runs with kube's timing until `shutdown`.
pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    let settings = PodGcSettings::from_context(&ctx);
    run_with(ctx.client.clone(), settings, shutdown).await;
}

/// Runs with the given timing until `shutdown`.
pub async fn run_with(client: Client, settings: PodGcSettings, shutdown: CancellationToken) {
    let mut missing_since: HashMap<String, Instant> = HashMap::new();
    loop {
        if let Err(error) = sweep(&client, &settings, &mut missing_since).await {
            tracing::warn!(%error, "pod garbage collection failed");
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(settings.period) => {}
        }
    }
}

fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

fn node_name(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or("")
}

/// The oldest finished pods beyond `threshold` (by creation time, then name).
pub fn terminated_over_threshold(pods: &[Pod], threshold: usize) -> Vec<&Pod> {
    if threshold == 0 {
        return Vec::new();
    }
    let mut finished: Vec<&Pod> = pods
        .iter()
        .filter(|p| is_terminal(p) && p.metadata.deletion_timestamp.is_none())
        .collect();
    if finished.len() <= threshold {
        return Vec::new();
    }
    finished.sort_by_key(|p| (p.metadata.creation_timestamp.clone(), p.name_any()));
    let excess = finished.len() - threshold;
    finished.truncate(excess);
    finished
}

async fn sweep(
    client: &Client,
    settings: &PodGcSettings,
    missing_since: &mut HashMap<String, Instant>,
) -> Result<(), kube::Error> {
    let pods = Api::<Pod>::all(client.clone())
        .list(&ListParams::default())
        .await?
        .items;
    let nodes: Api<Node> = Api::all(client.clone());
    let existing: HashSet<String> = nodes
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .map(ResourceExt::name_any)
        .collect();

    for pod in terminated_over_threshold(&pods, settings.terminated_pod_threshold) {
        force_delete(client, pod, "terminated pod over the threshold").await;
    }

    let now = Instant::now();
    let wanted: HashSet<&str> = pods
        .iter()
        .map(node_name)
        .filter(|n| !n.is_empty() && !existing.contains(*n))
        .collect();
    missing_since.retain(|n, _| wanted.contains(n.as_str()));
    for name in &wanted {
        missing_since.entry((*name).to_string()).or_insert(now);
    }
    let mut confirmed_gone: HashMap<String, bool> = HashMap::new();
    for pod in &pods {
        let node = node_name(pod);
        let Some(since) = missing_since.get(node) else {
            continue;
        };
        if now.duration_since(*since) < settings.quarantine {
            continue;
        }
        let gone = match confirmed_gone.get(node) {
            Some(gone) => *gone,
            None => {
                let gone = nodes.get_opt(node).await?.is_none();
                confirmed_gone.insert(node.to_string(), gone);
                gone
            }
        };
        if gone {
            if !is_terminal(pod) {
                mark_failed(client, pod).await;
            }
            force_delete(client, pod, "its node no longer exists").await;
        }
    }

    for pod in pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_some() && node_name(p).is_empty())
    {
        force_delete(client, pod, "terminating and never scheduled").await;
    }
    Ok(())
}

async fn mark_failed(client: &Client, pod: &Pod) {
    let api: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace().unwrap_or_default());
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let patch = json!({"status": {
        "phase": "Failed",
        "conditions": [{
            "type": "DisruptionTarget",
            "status": "True",
            "reason": "DeletionByPodGC",
            "message": "PodGC: node no longer exists",
            "lastTransitionTime": now,
        }],
    }});
    if let Err(error) = api
        .patch_status(
            &pod.name_any(),
            &PatchParams::default(),
            &Patch::Strategic(patch),
        )
        .await
    {
        tracing::debug!(%error, pod = %pod.name_any(), "marking an orphaned pod failed");
    }
}

async fn force_delete(client: &Client, pod: &Pod, why: &str) {
    let api: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace().unwrap_or_default());
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: pod.metadata.uid.clone(),
            resource_version: None,
        }),
        ..Default::default()
    };
    match api.delete(&pod.name_any(), &params).await {
        Ok(_) => {
            tracing::info!(pod = %pod.name_any(), namespace = ?pod.namespace(), "podgc deleted a pod: {why}")
        }
        Err(kube::Error::Api(status)) if status.is_not_found() || status.code == 409 => {}
        Err(error) => tracing::warn!(%error, pod = %pod.name_any(), "podgc could not delete a pod"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, created: &str, phase: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "creationTimestamp": created},
            "status": {"phase": phase}
        }))
        .expect("pod")
    }

    #[test]
    fn oldest_finished_pods_over_the_threshold_go() {
        let pods = vec![
            pod("new", "2024-01-03T00:00:00Z", "Succeeded"),
            pod("old", "2024-01-01T00:00:00Z", "Failed"),
            pod("running", "2023-01-01T00:00:00Z", "Running"),
            pod("mid", "2024-01-02T00:00:00Z", "Succeeded"),
        ];
        let names: Vec<String> = terminated_over_threshold(&pods, 1)
            .iter()
            .map(|p| p.name_any())
            .collect();
        assert_eq!(names, ["old", "mid"]);
        assert!(terminated_over_threshold(&pods, 3).is_empty());
        assert!(terminated_over_threshold(&pods, 0).is_empty());
    }
}
