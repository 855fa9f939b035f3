//! The taint eviction controller ("taint-eviction-controller", kube's TaintManager): pods on a
//! node with NoExecute taints they do not tolerate are deleted at once; pods tolerating them
//! for `tolerationSeconds` are deleted when the shortest of those runs out (counted from when
//! the controller first saw the taint), and a pod tolerating them forever stays. A taint that
//! goes away, or a toleration that grows to forever, cancels the pending deletion. Before the
//! delete the pod gets kube's `DisruptionTarget` condition (DeletionByTaintManager); both the
//! marking and the cancelling are recorded as `TaintManagerEviction` events.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod, PodCondition, Taint, Toleration};
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::Context;
use super::informer::{self, WorkQueue, now_time, reference_to};

const COMPONENT: &str = "taint-eviction-controller";

/// True when `toleration` tolerates `taint` (kube's `ToleratesTaint`).
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    if let Some(effect) = toleration.effect.as_deref().filter(|e| !e.is_empty())
        && effect != taint.effect
    {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or_default();
    let operator = toleration.operator.as_deref().unwrap_or("Equal");
    if key.is_empty() {
        return operator == "Exists";
    }
    if key != taint.key {
        return false;
    }
    match operator {
        "Exists" => true,
        "Equal" => {
            toleration.value.as_deref().unwrap_or_default()
                == taint.value.as_deref().unwrap_or_default()
        }
        _ => false,
    }
}

/// How long the pod may stay: None when some taint is not tolerated (evict now), `Some(None)`
/// when it tolerates them all forever, `Some(Some(d))` for the shortest tolerationSeconds
/// among the tolerations used.
fn allowed_stay(taints: &[Taint], tolerations: &[Toleration]) -> Option<Option<Duration>> {
    let mut shortest: Option<Duration> = None;
    for taint in taints {
        let used = tolerations.iter().find(|t| tolerates(t, taint))?;
        if let Some(seconds) = used.toleration_seconds {
            let stay = Duration::from_secs(seconds.max(0) as u64);
            shortest = Some(shortest.map_or(stay, |s| s.min(stay)));
        }
    }
    Some(shortest)
}

/// A deletion waiting for its pod's toleration to run out.
struct Pending {
    started: Instant,
    due: Instant,
}

struct TaintEviction {
    client: Client,
    nodes: Store<Node>,
    pods: Store<Pod>,
    queue: Arc<WorkQueue>,
    /// By pod uid.
    pending: Mutex<HashMap<String, Pending>>,
}

/// Runs until `shutdown`.
pub async fn run(context: Arc<Context>, shutdown: CancellationToken) {
    let client = context.client.clone();
    let queue = WorkQueue::new();
    let q = queue.clone();
    let (nodes, nodes_task) = informer::watch(Api::<Node>::all(client.clone()), move |n| match n {
        Some(n) => q.add(n.metadata.name.clone().unwrap_or_default()),
        None => q.add(ALL),
    });
    let q = queue.clone();
    let (pods, pods_task) = informer::watch(Api::<Pod>::all(client.clone()), move |p| match p {
        Some(p) => {
            if let Some(node) = p.spec.as_ref().and_then(|s| s.node_name.clone()) {
                q.add(node);
            }
        }
        None => q.add(ALL),
    });
    let controller = Arc::new(TaintEviction {
        client,
        nodes,
        pods,
        queue,
        pending: Mutex::new(HashMap::new()),
    });
    let worker = tokio::spawn(work(controller));
    shutdown.cancelled().await;
    for task in [nodes_task, pods_task, worker] {
        task.abort();
    }
}

const ALL: &str = "\u{0}all";

async fn work(controller: Arc<TaintEviction>) {
    let _ = controller.nodes.wait_until_ready().await;
    let _ = controller.pods.wait_until_ready().await;
    loop {
        let key = controller.queue.next().await;
        if key == ALL {
            for node in controller.nodes.state() {
                controller
                    .queue
                    .add(node.metadata.name.clone().unwrap_or_default());
            }
            continue;
        }
        controller.sync_node(&key).await;
    }
}

impl TaintEviction {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Pending>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn sync_node(&self, node_name: &str) {
        let taints: Vec<Taint> = self
            .nodes
            .get(&ObjectRef::new(node_name))
            .and_then(|n| n.spec.as_ref()?.taints.clone())
            .unwrap_or_default()
            .into_iter()
            .filter(|t| t.effect == "NoExecute")
            .collect();
        let pods: Vec<Arc<Pod>> = self
            .pods
            .state()
            .into_iter()
            .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node_name))
            .collect();
        let now = Instant::now();
        for pod in pods {
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            if pod.metadata.deletion_timestamp.is_some() {
                self.lock().remove(&uid);
                continue;
            }
            let tolerations = pod
                .spec
                .as_ref()
                .and_then(|s| s.tolerations.clone())
                .unwrap_or_default();
            let stay = if taints.is_empty() {
                Some(None)
            } else {
                allowed_stay(&taints, &tolerations)
            };
            match stay {
                None => self.evict(&pod).await,
                Some(None) => {
                    if self.lock().remove(&uid).is_some() {
                        self.cancelled(&pod).await;
                    }
                }
                Some(Some(stay)) => {
                    let due = {
                        let mut pending = self.lock();
                        let entry = pending.entry(uid.clone()).or_insert(Pending {
                            started: now,
                            due: now + stay,
                        });
                        entry.due = entry.started + stay;
                        entry.due
                    };
                    if due <= now {
                        self.evict(&pod).await;
                    } else {
                        self.queue.add_after(node_name, due - now);
                    }
                }
            }
        }
        let alive: Vec<String> = self
            .pods
            .state()
            .iter()
            .filter_map(|p| p.metadata.uid.clone())
            .collect();
        self.lock().retain(|uid, _| alive.contains(uid));
    }

    async fn evict(&self, pod: &Pod) {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        self.lock().remove(&uid);
        let name = pod.metadata.name.clone().unwrap_or_default();
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        tracing::info!(pod = %format!("{ns}/{name}"), "deleting a pod for a NoExecute taint");
        crate::events::write(
            &self.client,
            COMPONENT,
            reference_to(pod),
            "Normal",
            "TaintManagerEviction",
            &format!("Marking for deletion Pod {ns}/{name}"),
        )
        .await;
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        let condition = PodCondition {
            type_: "DisruptionTarget".into(),
            status: "True".into(),
            reason: Some("DeletionByTaintManager".into()),
            message: Some("Taint manager: deleting due to NoExecute taint".into()),
            last_transition_time: Some(now_time()),
            ..Default::default()
        };
        let patch = json!({"status": {"conditions": [condition]}});
        if let Err(error) = api
            .patch_status(&name, &PatchParams::default(), &Patch::Strategic(patch))
            .await
        {
            tracing::debug!(%error, "adding the DisruptionTarget condition failed");
        }
        let params = DeleteParams {
            preconditions: Some(kube::api::Preconditions {
                uid: Some(uid),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match api.delete(&name, &params).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.is_not_found() => {}
            Err(error) => {
                tracing::warn!(pod = %format!("{ns}/{name}"), %error, "deleting the pod failed; retrying");
                if let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) {
                    self.queue.add_after(node, Duration::from_secs(1));
                }
            }
        }
    }

    async fn cancelled(&self, pod: &Pod) {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        crate::events::write(
            &self.client,
            COMPONENT,
            reference_to(pod),
            "Normal",
            "TaintManagerEviction",
            &format!("Cancelling deletion of Pod {ns}/{name}"),
        )
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taint(key: &str) -> Taint {
        Taint {
            key: key.into(),
            effect: "NoExecute".into(),
            ..Default::default()
        }
    }

    fn toleration(key: &str, seconds: Option<i64>) -> Toleration {
        Toleration {
            key: Some(key.into()),
            operator: Some("Exists".into()),
            effect: Some("NoExecute".into()),
            toleration_seconds: seconds,
            ..Default::default()
        }
    }

    #[test]
    fn stay_follows_the_shortest_used_toleration() {
        let taints = [taint("a"), taint("b")];
        assert_eq!(allowed_stay(&taints, &[toleration("a", None)]), None);
        assert_eq!(
            allowed_stay(&taints, &[toleration("a", None), toleration("b", None)]),
            Some(None)
        );
        assert_eq!(
            allowed_stay(
                &taints,
                &[toleration("a", Some(5)), toleration("b", Some(2))]
            ),
            Some(Some(Duration::from_secs(2)))
        );
        let everything = Toleration {
            operator: Some("Exists".into()),
            ..Default::default()
        };
        assert_eq!(allowed_stay(&taints, &[everything]), Some(None));
        let wrong_effect = Toleration {
            effect: Some("NoSchedule".into()),
            ..toleration("a", None)
        };
        assert!(!tolerates(&wrong_effect, &taint("a")));
    }
}
