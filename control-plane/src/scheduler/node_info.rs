//! `NodeInfo`: a node as the scheduler sees it — labels, taints, what it can allocate, the pods
//! on it (bound or assumed) and what they use (requests, host ports), and its images — kept
//! up to date incrementally as pods are bound, assumed, deleted or moved.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Taint};

use super::pod_info::{HostPort, PodInfo};
use super::resources::Resources;

/// Pods a node takes when its status does not say (kube's kubelet default).
const DEFAULT_MAX_PODS: i64 = 110;

#[derive(Clone, Debug, Default)]
pub struct NodeInfo {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    pub unschedulable: bool,
    pub allocatable: Resources,
    pub allowed_pods: i64,
    /// The sum of the requests of the pods on the node.
    pub requested: Resources,
    /// The same with kube's non-zero defaults, for scoring.
    pub scoring_requested: (i64, i64),
    pub pods: Vec<Arc<PodInfo>>,
    pub used_ports: Vec<HostPort>,
    /// Image name → size in bytes, from `status.images`.
    pub image_sizes: HashMap<String, i64>,
    /// How many pods on the node have required anti-affinity terms (to skip work when none).
    pub pods_with_required_anti_affinity: usize,
    /// How many pods on the node have preferred (anti-)affinity terms.
    pub pods_with_preferred_affinity: usize,
}

impl NodeInfo {
    pub fn from_node(node: &Node) -> NodeInfo {
        let mut info = NodeInfo {
            name: node.metadata.name.clone().unwrap_or_default(),
            ..Default::default()
        };
        info.set_node(node);
        info
    }

    /// Takes the node's own fields (labels, taints, allocatable, images), keeping its pods.
    pub fn set_node(&mut self, node: &Node) {
        self.labels = node.metadata.labels.clone().unwrap_or_default();
        let spec = node.spec.clone().unwrap_or_default();
        self.taints = spec.taints.unwrap_or_default();
        self.unschedulable = spec.unschedulable.unwrap_or(false);
        let status = node.status.clone().unwrap_or_default();
        let allocatable = status.allocatable.or(status.capacity);
        self.allocatable = Resources::from_list(allocatable.as_ref());
        self.allowed_pods = allocatable
            .as_ref()
            .and_then(|a| a.get("pods"))
            .and_then(|q| crate::apiserver::quantity::parse_quantity(&q.0).ok())
            .map(|q| q.value())
            .unwrap_or(DEFAULT_MAX_PODS);
        self.image_sizes.clear();
        for image in status.images.iter().flatten() {
            for name in image.names.iter().flatten() {
                self.image_sizes
                    .insert(name.clone(), image.size_bytes.unwrap_or(0));
            }
        }
    }

    pub fn add_pod(&mut self, pod: Arc<PodInfo>) {
        self.requested.add(&pod.requests);
        self.scoring_requested.0 += pod.scoring_requests.0;
        self.scoring_requested.1 += pod.scoring_requests.1;
        self.used_ports.extend(pod.host_ports.iter().cloned());
        if !pod.required_anti_affinity.is_empty() {
            self.pods_with_required_anti_affinity += 1;
        }
        if pod.has_preferred_affinity() {
            self.pods_with_preferred_affinity += 1;
        }
        self.pods.push(pod);
    }

    /// Removes the pod with this uid; false when it was not here.
    pub fn remove_pod(&mut self, uid: &str) -> bool {
        let Some(index) = self.pods.iter().position(|p| p.uid == uid) else {
            return false;
        };
        let pod = self.pods.swap_remove(index);
        self.requested.subtract(&pod.requests);
        self.scoring_requested.0 -= pod.scoring_requests.0;
        self.scoring_requested.1 -= pod.scoring_requests.1;
        for port in &pod.host_ports {
            if let Some(i) = self.used_ports.iter().position(|p| p == port) {
                self.used_ports.swap_remove(i);
            }
        }
        if !pod.required_anti_affinity.is_empty() {
            self.pods_with_required_anti_affinity -= 1;
        }
        if pod.has_preferred_affinity() {
            self.pods_with_preferred_affinity -= 1;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeStatus, Pod};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use serde_json::json;

    #[test]
    fn pods_add_and_remove_their_usage() {
        let node = Node {
            status: Some(NodeStatus {
                allocatable: Some(
                    [("cpu", "4"), ("memory", "8Gi"), ("pods", "20")]
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), Quantity(v.into())))
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut info = NodeInfo::from_node(&node);
        assert_eq!(info.allocatable.milli_cpu, 4000);
        assert_eq!(info.allowed_pods, 20);
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "d", "uid": "u1"},
            "spec": {"containers": [{"name": "c", "image": "x",
                "resources": {"requests": {"cpu": "500m"}},
                "ports": [{"containerPort": 80, "hostPort": 8080}]}]}
        }))
        .expect("valid in the test");
        info.add_pod(Arc::new(PodInfo::from_pod(&pod)));
        assert_eq!(info.requested.milli_cpu, 500);
        assert_eq!(info.used_ports.len(), 1);
        assert_eq!(
            info.scoring_requested,
            (500, super::super::resources::DEFAULT_MEMORY_REQUEST)
        );
        assert!(info.remove_pod("u1"));
        assert!(!info.remove_pod("u1"));
        assert_eq!(
            info.requested,
            Resources {
                scalar: BTreeMap::new(),
                ..Default::default()
            }
        );
        assert!(info.used_ports.is_empty());
    }
}
