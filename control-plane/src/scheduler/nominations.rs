//! Room held for preemptors: the pods nominated to a node (`status.nominatedNodeName`, set when
//! a preemption made room there) and the victims whose deletion this scheduler started. A pod
//! being filtered sees a node with the nominated pods of equal or higher priority already on
//! it (kube's "filters with nominated pods"), so lower-priority pods do not take the room the
//! victims free. Owned by the cache; knows nothing of the API.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::node_info::NodeInfo;
use super::pod_info::PodInfo;

#[derive(Default)]
pub struct Nominations {
    by_node: HashMap<String, Vec<Arc<PodInfo>>>,
    node_of: HashMap<String, String>,
    /// Pods this scheduler preempted, until they are gone.
    victims: HashSet<String>,
}

impl Nominations {
    /// Holds `node` for `pod` (replacing an earlier nomination).
    pub fn nominate(&mut self, pod: PodInfo, node: &str) {
        self.remove(&pod.uid);
        self.node_of.insert(pod.uid.clone(), node.to_string());
        self.by_node
            .entry(node.to_string())
            .or_default()
            .push(Arc::new(pod));
    }

    /// The pod was bound, deleted or lost its nomination.
    pub fn remove(&mut self, uid: &str) {
        let Some(node) = self.node_of.remove(uid) else {
            return;
        };
        if let Some(pods) = self.by_node.get_mut(&node) {
            pods.retain(|p| p.uid != uid);
            if pods.is_empty() {
                self.by_node.remove(&node);
            }
        }
    }

    pub fn node_of(&self, uid: &str) -> Option<&str> {
        self.node_of.get(uid).map(String::as_str)
    }

    pub fn on_node(&self, node: &str) -> &[Arc<PodInfo>] {
        self.by_node.get(node).map_or(&[], Vec::as_slice)
    }

    /// Pods nominated to `node` with a lower priority than `pod` (a higher one taking the node
    /// ends their nomination, as in kube).
    pub fn lower_than(&self, pod: &PodInfo, node: &str) -> Vec<Arc<PodInfo>> {
        self.on_node(node)
            .iter()
            .filter(|p| p.priority < pod.priority && p.uid != pod.uid)
            .cloned()
            .collect()
    }

    pub fn mark_victim(&mut self, uid: &str) {
        self.victims.insert(uid.to_string());
    }

    /// The victim left, or deleting it failed.
    pub fn unmark_victim(&mut self, uid: &str) {
        self.victims.remove(uid);
    }

    /// Whether this pod's deletion for a preemptor is under way (started here, or seen in its
    /// deletionTimestamp and DisruptionTarget condition).
    pub fn is_terminating_victim(&self, pod: &PodInfo) -> bool {
        pod.terminating_by_preemption || self.victims.contains(&pod.uid)
    }

    /// `node` as `pod` must see it: with the pods nominated there that are at least as
    /// important as `pod` counted; None when there are none.
    pub fn reserved_view(&self, pod: &PodInfo, node: &NodeInfo) -> Option<NodeInfo> {
        let mut reserved = self
            .on_node(&node.name)
            .iter()
            .filter(|p| p.priority >= pod.priority && p.uid != pod.uid)
            .peekable();
        reserved.peek()?;
        let mut view = node.clone();
        for nominated in reserved {
            view.add_pod(nominated.clone());
        }
        Some(view)
    }
}
