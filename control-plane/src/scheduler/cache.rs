//! The scheduler's picture of the cluster: every node with the pods on it, updated from the
//! watches and, ahead of them, by the scheduler's own decisions: a pod is "assumed" on its node
//! the moment it is chosen (so the next decision already counts it), confirmed when the watch
//! shows it bound, and forgotten if the binding fails or is never confirmed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node;

use super::node_info::NodeInfo;
use super::nominations::Nominations;
use super::pod_info::PodInfo;

/// How long an assumed pod whose binding went through may wait for the watch to confirm it.
pub const ASSUMED_POD_TTL: Duration = Duration::from_secs(30);

struct PodPlace {
    node: String,
    /// Assumed by this scheduler, not yet seen bound; the deadline once its binding finished.
    assumed: Option<Option<Instant>>,
}

#[derive(Default)]
pub struct ClusterCache {
    nodes: Vec<NodeInfo>,
    by_name: HashMap<String, usize>,
    pods: HashMap<String, PodPlace>,
    /// Pods bound to nodes the cache does not know (yet): added when the node appears.
    orphans: HashMap<String, Vec<Arc<PodInfo>>>,
    /// Nodes held for preemptors, and the victims being deleted for them.
    nominations: Nominations,
}

impl ClusterCache {
    pub fn nodes(&self) -> &[NodeInfo] {
        &self.nodes
    }

    pub fn nominations(&self) -> &Nominations {
        &self.nominations
    }

    pub fn nominations_mut(&mut self) -> &mut Nominations {
        &mut self.nominations
    }

    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.by_name.get(name).map(|&i| &self.nodes[i])
    }

    pub fn upsert_node(&mut self, node: &Node) {
        let name = node.metadata.name.clone().unwrap_or_default();
        match self.by_name.get(&name) {
            Some(&index) => self.nodes[index].set_node(node),
            None => {
                let mut info = NodeInfo::from_node(node);
                for pod in self.orphans.remove(&name).into_iter().flatten() {
                    info.add_pod(pod);
                }
                self.by_name.insert(name, self.nodes.len());
                self.nodes.push(info);
            }
        }
    }

    pub fn remove_node(&mut self, name: &str) {
        let Some(index) = self.by_name.remove(name) else {
            return;
        };
        let removed = self.nodes.swap_remove(index);
        if let Some(moved) = self.nodes.get(index) {
            self.by_name.insert(moved.name.clone(), index);
        }
        // Its pods wait as orphans: the node may come back (or the pods get deleted).
        self.orphans.insert(removed.name.clone(), removed.pods);
    }

    fn attach(&mut self, pod: Arc<PodInfo>) {
        match self.by_name.get(&pod.node_name) {
            Some(&index) => self.nodes[index].add_pod(pod),
            None => self
                .orphans
                .entry(pod.node_name.clone())
                .or_default()
                .push(pod),
        }
    }

    fn detach(&mut self, uid: &str, node: &str) {
        match self.by_name.get(node) {
            Some(&index) => {
                self.nodes[index].remove_pod(uid);
            }
            None => {
                if let Some(list) = self.orphans.get_mut(node) {
                    list.retain(|p| p.uid != uid);
                }
            }
        }
    }

    /// A pod the watch shows bound to `pod.node_name` (new, changed, or confirming an
    /// assumption).
    pub fn upsert_bound_pod(&mut self, pod: PodInfo) {
        self.nominations.remove(&pod.uid);
        if let Some(place) = self.pods.remove(&pod.uid) {
            self.detach(&pod.uid, &place.node);
        }
        self.pods.insert(
            pod.uid.clone(),
            PodPlace {
                node: pod.node_name.clone(),
                assumed: None,
            },
        );
        self.attach(Arc::new(pod));
    }

    /// A pod left its node (deleted, or finished).
    pub fn remove_pod(&mut self, uid: &str) {
        self.nominations.remove(uid);
        self.nominations.unmark_victim(uid);
        if let Some(place) = self.pods.remove(uid) {
            self.detach(uid, &place.node);
        }
    }

    /// Whether the cache holds this pod (bound or assumed).
    pub fn contains_pod(&self, uid: &str) -> bool {
        self.pods.contains_key(uid)
    }

    /// Counts `pod` on `node` before the binding is written.
    pub fn assume(&mut self, mut pod: PodInfo, node: &str) {
        pod.node_name = node.to_string();
        self.remove_pod(&pod.uid);
        self.pods.insert(
            pod.uid.clone(),
            PodPlace {
                node: node.to_string(),
                assumed: Some(None),
            },
        );
        self.attach(Arc::new(pod));
    }

    /// The binding of an assumed pod was written; the watch should confirm it soon.
    pub fn binding_finished(&mut self, uid: &str, now: Instant) {
        if let Some(PodPlace {
            assumed: Some(deadline),
            ..
        }) = self.pods.get_mut(uid)
        {
            *deadline = Some(now + ASSUMED_POD_TTL);
        }
    }

    /// The binding failed: the assumed pod no longer counts.
    pub fn forget(&mut self, uid: &str) {
        if self.pods.get(uid).is_some_and(|p| p.assumed.is_some()) {
            self.remove_pod(uid);
        }
    }

    /// Drops assumed pods whose confirmation never came.
    pub fn expire_assumed(&mut self, now: Instant) -> usize {
        let expired: Vec<String> = self
            .pods
            .iter()
            .filter(|(_, p)| matches!(p.assumed, Some(Some(deadline)) if deadline <= now))
            .map(|(uid, _)| uid.clone())
            .collect();
        for uid in &expired {
            self.remove_pod(uid);
        }
        expired.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str) -> Node {
        serde_json::from_value(json!({"metadata": {"name": name}, "status": {"allocatable": {"cpu": "2", "memory": "2Gi"}}}))
            .expect("a node")
    }

    fn pod(uid: &str, node: &str, cpu: &str) -> PodInfo {
        let pod = serde_json::from_value(json!({
            "metadata": {"name": uid, "namespace": "d", "uid": uid},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "x", "resources": {"requests": {"cpu": cpu}}}]}
        }))
        .expect("a pod");
        PodInfo::from_pod(&pod)
    }

    fn cpu_on(cache: &ClusterCache, node: &str) -> i64 {
        cache.node(node).map_or(-1, |n| n.requested.milli_cpu)
    }

    #[test]
    fn assume_confirm_forget_and_expire() {
        let mut cache = ClusterCache::default();
        cache.upsert_node(&node("a"));
        cache.upsert_node(&node("b"));
        cache.assume(pod("p1", "", "500m"), "a");
        assert_eq!(cpu_on(&cache, "a"), 500);
        // The watch confirms it: still counted once.
        cache.upsert_bound_pod(pod("p1", "a", "500m"));
        assert_eq!(cpu_on(&cache, "a"), 500);
        cache.forget("p1");
        assert_eq!(cpu_on(&cache, "a"), 500, "a confirmed pod is not forgotten");
        cache.assume(pod("p2", "", "1"), "b");
        cache.forget("p2");
        assert_eq!(cpu_on(&cache, "b"), 0);
        let now = Instant::now();
        cache.assume(pod("p3", "", "1"), "b");
        cache.binding_finished("p3", now);
        assert_eq!(cache.expire_assumed(now), 0);
        assert_eq!(cache.expire_assumed(now + ASSUMED_POD_TTL), 1);
        assert_eq!(cpu_on(&cache, "b"), 0);
    }

    #[test]
    fn nominations_end_when_the_pod_is_placed_and_victims_when_they_leave() {
        let mut cache = ClusterCache::default();
        cache.upsert_node(&node("a"));
        cache.upsert_bound_pod(pod("victim", "a", "1"));
        cache.nominations_mut().mark_victim("victim");
        cache
            .nominations_mut()
            .nominate(pod("preemptor", "", "1"), "a");
        let victim = cache
            .node("a")
            .map(|n| n.pods[0].clone())
            .expect("the victim");
        assert!(cache.nominations().is_terminating_victim(&victim));
        cache.remove_pod("victim");
        assert!(!cache.nominations().is_terminating_victim(&victim));
        assert_eq!(cache.nominations().node_of("preemptor"), Some("a"));
        cache.upsert_bound_pod(pod("preemptor", "a", "1"));
        assert_eq!(cache.nominations().node_of("preemptor"), None);
        assert!(cache.nominations().on_node("a").is_empty());
    }

    #[test]
    fn pods_follow_nodes_that_leave_and_return() {
        let mut cache = ClusterCache::default();
        cache.upsert_bound_pod(pod("early", "late-node", "250m"));
        cache.upsert_node(&node("late-node"));
        assert_eq!(cpu_on(&cache, "late-node"), 250);
        cache.upsert_node(&node("other"));
        cache.remove_node("late-node");
        assert_eq!(cache.nodes().len(), 1);
        assert_eq!(cache.node("other").map(|n| n.name.as_str()), Some("other"));
        cache.upsert_node(&node("late-node"));
        assert_eq!(cpu_on(&cache, "late-node"), 250);
        cache.remove_pod("early");
        assert_eq!(cpu_on(&cache, "late-node"), 0);
    }
}
