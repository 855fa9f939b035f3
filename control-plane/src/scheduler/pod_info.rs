//! `PodInfo`: what the scheduler needs of a pod, compiled once from the Pod object — its
//! requests, host ports, tolerations, node selector and affinity, inter-pod (anti-)affinity
//! terms and topology spread constraints — so that filtering and scoring thousands of nodes
//! does no parsing.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, PodAffinityTerm, Toleration};

use super::resources::{Resources, pod_requests, pod_requests_for_scoring};
use super::selector::{LabelMatcher, NodeTerm, NodeTerms};

/// A host port a pod binds: (ip, protocol, port); ip "0.0.0.0" when unset.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HostPort {
    pub ip: String,
    pub protocol: String,
    pub port: i32,
}

impl HostPort {
    /// Two bindings collide on the same protocol and port when either is on every address
    /// or both are on the same one.
    pub fn conflicts_with(&self, other: &HostPort) -> bool {
        self.port == other.port
            && self.protocol == other.protocol
            && (self.ip == other.ip || self.ip == "0.0.0.0" || other.ip == "0.0.0.0")
    }
}

/// An inter-pod (anti-)affinity term: the pods it selects and the topology key.
#[derive(Clone, Debug)]
pub struct AffinityTerm {
    pub selector: LabelMatcher,
    /// Explicit namespaces; with no namespace selector and none listed, the pod's own.
    pub namespaces: Vec<String>,
    pub namespace_selector: Option<LabelMatcher>,
    pub topology_key: String,
}

impl AffinityTerm {
    fn compile(term: &PodAffinityTerm, own_namespace: &str) -> Option<AffinityTerm> {
        let selector = LabelMatcher::compile(term.label_selector.as_ref()).ok()?;
        let namespace_selector = match &term.namespace_selector {
            Some(s) => Some(LabelMatcher::compile(Some(s)).ok()?),
            None => None,
        };
        let mut namespaces = term.namespaces.clone().unwrap_or_default();
        if namespaces.is_empty() && namespace_selector.is_none() {
            namespaces.push(own_namespace.to_string());
        }
        Some(AffinityTerm {
            selector,
            namespaces,
            namespace_selector,
            topology_key: term.topology_key.clone(),
        })
    }

    /// Whether `pod` is one of the pods this term selects. `namespace_labels` gives the labels
    /// of a namespace, for namespace selectors.
    pub fn selects(
        &self,
        pod: &PodInfo,
        namespace_labels: &dyn Fn(&str) -> Option<BTreeMap<String, String>>,
    ) -> bool {
        let in_namespace = self.namespaces.contains(&pod.namespace)
            || self.namespace_selector.as_ref().is_some_and(|s| {
                namespace_labels(&pod.namespace).is_some_and(|labels| s.matches(&labels))
            });
        in_namespace && self.selector.matches(&pod.labels)
    }
}

/// A topology spread constraint.
#[derive(Clone, Debug)]
pub struct SpreadConstraint {
    pub max_skew: i32,
    pub topology_key: String,
    /// True for DoNotSchedule (a filter), false for ScheduleAnyway (a score).
    pub hard: bool,
    pub selector: LabelMatcher,
    pub min_domains: i32,
    /// nodeAffinityPolicy Honor (the default): only nodes matching the pod's node affinity
    /// and selector count as domains.
    pub honor_node_affinity: bool,
    /// nodeTaintsPolicy Honor: only nodes whose taints the pod tolerates count.
    pub honor_node_taints: bool,
}

#[derive(Clone, Debug, Default)]
pub struct PodInfo {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub labels: BTreeMap<String, String>,
    /// `spec.nodeName`: where the pod is bound (or assumed).
    pub node_name: String,
    pub priority: i32,
    pub scheduler_name: String,
    pub requests: Resources,
    /// CPU and memory with kube's non-zero defaults, for scoring.
    pub scoring_requests: (i64, i64),
    pub host_ports: Vec<HostPort>,
    pub tolerations: Vec<Toleration>,
    pub node_selector: BTreeMap<String, String>,
    /// Required node affinity; None when the pod has none.
    pub required_node_terms: Option<NodeTerms>,
    pub preferred_node_terms: Vec<(i32, NodeTerm)>,
    pub required_affinity: Vec<AffinityTerm>,
    pub required_anti_affinity: Vec<AffinityTerm>,
    pub preferred_affinity: Vec<(i32, AffinityTerm)>,
    pub preferred_anti_affinity: Vec<(i32, AffinityTerm)>,
    pub spread_constraints: Vec<SpreadConstraint>,
    /// Container images, normalized (`busybox` → `docker.io/library/busybox:latest`).
    pub images: Vec<String>,
    /// `spec.preemptionPolicy: Never`: the pod may not preempt others.
    pub never_preempts: bool,
    /// `status.nominatedNodeName`: where a preemption made room for the pod.
    pub nominated_node_name: String,
    /// Deletion requested (`metadata.deletionTimestamp`).
    pub deleting: bool,
    /// Being deleted because a scheduler preempted it (a `DisruptionTarget` condition with
    /// reason `PreemptionByScheduler`).
    pub terminating_by_preemption: bool,
    /// `status.startTime`; none for a pod that has not started.
    pub start_time: Option<k8s_openapi::jiff::Timestamp>,
}

impl PodInfo {
    pub fn from_pod(pod: &Pod) -> PodInfo {
        let meta = &pod.metadata;
        let namespace = meta.namespace.clone().unwrap_or_default();
        let spec = pod.spec.clone().unwrap_or_default();
        let status = pod.status.as_ref();
        let mut host_ports = Vec::new();
        for container in spec
            .init_containers
            .iter()
            .flatten()
            .chain(&spec.containers)
        {
            for port in container.ports.iter().flatten() {
                if let Some(host_port) = port.host_port.filter(|p| *p > 0) {
                    host_ports.push(HostPort {
                        ip: port
                            .host_ip
                            .clone()
                            .filter(|ip| !ip.is_empty())
                            .unwrap_or_else(|| "0.0.0.0".into()),
                        protocol: port.protocol.clone().unwrap_or_else(|| "TCP".into()),
                        port: host_port,
                    });
                }
            }
        }
        let affinity = spec.affinity.clone().unwrap_or_default();
        let node_affinity = affinity.node_affinity.unwrap_or_default();
        let required_node_terms = node_affinity
            .required_during_scheduling_ignored_during_execution
            .map(|s| NodeTerms::compile(&s.node_selector_terms));
        let preferred_node_terms = node_affinity
            .preferred_during_scheduling_ignored_during_execution
            .into_iter()
            .flatten()
            .filter_map(|p| Some((p.weight, NodeTerm::compile(&p.preference).ok()?)))
            .collect();
        let compile_terms = |terms: Option<Vec<PodAffinityTerm>>| -> Vec<AffinityTerm> {
            terms
                .into_iter()
                .flatten()
                .filter_map(|t| AffinityTerm::compile(&t, &namespace))
                .collect()
        };
        let pod_affinity = affinity.pod_affinity.unwrap_or_default();
        let pod_anti_affinity = affinity.pod_anti_affinity.unwrap_or_default();
        let weighted = |terms: Option<Vec<k8s_openapi::api::core::v1::WeightedPodAffinityTerm>>| {
            terms
                .into_iter()
                .flatten()
                .filter_map(|w| {
                    Some((
                        w.weight,
                        AffinityTerm::compile(&w.pod_affinity_term, &namespace)?,
                    ))
                })
                .collect::<Vec<_>>()
        };
        let spread_constraints = spec
            .topology_spread_constraints
            .iter()
            .flatten()
            .filter_map(|c| {
                let mut selector = LabelMatcher::compile(c.label_selector.as_ref()).ok()?;
                if let Some(keys) = &c.match_label_keys {
                    // matchLabelKeys: the pod's own values of these keys join the selector.
                    let mut extended = c.label_selector.clone().unwrap_or_default();
                    let labels = extended.match_labels.get_or_insert_with(BTreeMap::new);
                    for key in keys {
                        if let Some(value) = meta.labels.as_ref().and_then(|l| l.get(key)) {
                            labels.insert(key.clone(), value.clone());
                        }
                    }
                    selector = LabelMatcher::compile(Some(&extended)).ok()?;
                }
                Some(SpreadConstraint {
                    max_skew: c.max_skew,
                    topology_key: c.topology_key.clone(),
                    hard: c.when_unsatisfiable == "DoNotSchedule",
                    selector,
                    min_domains: c.min_domains.unwrap_or(1).max(1),
                    honor_node_affinity: c.node_affinity_policy.as_deref() != Some("Ignore"),
                    honor_node_taints: c.node_taints_policy.as_deref() == Some("Honor"),
                })
            })
            .collect();
        PodInfo {
            namespace: namespace.clone(),
            name: meta.name.clone().unwrap_or_default(),
            uid: meta.uid.clone().unwrap_or_default(),
            labels: meta.labels.clone().unwrap_or_default(),
            node_name: spec.node_name.clone().unwrap_or_default(),
            priority: spec.priority.unwrap_or(0),
            scheduler_name: spec
                .scheduler_name
                .clone()
                .unwrap_or_else(|| "default-scheduler".into()),
            requests: pod_requests(&spec),
            scoring_requests: pod_requests_for_scoring(&spec),
            host_ports,
            tolerations: spec.tolerations.clone().unwrap_or_default(),
            node_selector: spec.node_selector.clone().unwrap_or_default(),
            required_node_terms,
            preferred_node_terms,
            required_affinity: compile_terms(
                pod_affinity.required_during_scheduling_ignored_during_execution,
            ),
            required_anti_affinity: compile_terms(
                pod_anti_affinity.required_during_scheduling_ignored_during_execution,
            ),
            preferred_affinity: weighted(
                pod_affinity.preferred_during_scheduling_ignored_during_execution,
            ),
            preferred_anti_affinity: weighted(
                pod_anti_affinity.preferred_during_scheduling_ignored_during_execution,
            ),
            spread_constraints,
            images: spec
                .containers
                .iter()
                .filter_map(|c| c.image.as_deref())
                .map(normalize_image)
                .collect(),
            never_preempts: spec.preemption_policy.as_deref() == Some("Never"),
            nominated_node_name: status
                .and_then(|s| s.nominated_node_name.clone())
                .unwrap_or_default(),
            deleting: meta.deletion_timestamp.is_some(),
            terminating_by_preemption: meta.deletion_timestamp.is_some()
                && status
                    .and_then(|s| s.conditions.as_ref())
                    .and_then(|c| c.iter().find(|c| c.type_ == "DisruptionTarget"))
                    .is_some_and(|c| {
                        c.status == "True" && c.reason.as_deref() == Some("PreemptionByScheduler")
                    }),
            start_time: status.and_then(|s| s.start_time.as_ref()).map(|t| t.0),
        }
    }

    pub fn has_preferred_affinity(&self) -> bool {
        !self.preferred_affinity.is_empty() || !self.preferred_anti_affinity.is_empty()
    }

    /// `namespace/name`, for messages.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// Whether the pod matches its node selector and required node affinity on this node.
    pub fn matches_node(&self, node_name: &str, labels: &BTreeMap<String, String>) -> bool {
        self.node_selector
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self
                .required_node_terms
                .as_ref()
                .is_none_or(|t| t.matches(node_name, labels))
    }
}

/// Image names as nodes report them: a registry host, a repository path and a tag.
pub fn normalize_image(image: &str) -> String {
    let (name, reference) = match image.rsplit_once('@') {
        Some((name, digest)) => (name, format!("@{digest}")),
        None => match image.rsplit_once(':') {
            Some((name, tag)) if !tag.contains('/') => (name, format!(":{tag}")),
            _ => (image, ":latest".to_string()),
        },
    };
    let first = name.split('/').next().unwrap_or_default();
    let has_host =
        name.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    let full = match (has_host, name.contains('/')) {
        (true, _) => name.to_string(),
        (false, true) => format!("docker.io/{name}"),
        (false, false) => format!("docker.io/library/{name}"),
    };
    format!("{full}{reference}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_names_normalize_as_nodes_report_them() {
        assert_eq!(
            normalize_image("busybox"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(normalize_image("user/app:1"), "docker.io/user/app:1");
        assert_eq!(
            normalize_image("127.0.0.1:5000/keel/pause:3.9"),
            "127.0.0.1:5000/keel/pause:3.9"
        );
        assert_eq!(normalize_image("localhost/x"), "localhost/x:latest");
        assert_eq!(
            normalize_image("registry.k8s.io/pause@sha256:ab"),
            "registry.k8s.io/pause@sha256:ab"
        );
    }

    #[test]
    fn host_ports_collide_on_shared_addresses() {
        let any = HostPort {
            ip: "0.0.0.0".into(),
            protocol: "TCP".into(),
            port: 80,
        };
        let one = HostPort {
            ip: "10.0.0.1".into(),
            protocol: "TCP".into(),
            port: 80,
        };
        let other = HostPort {
            ip: "10.0.0.2".into(),
            protocol: "TCP".into(),
            port: 80,
        };
        let udp = HostPort {
            ip: "0.0.0.0".into(),
            protocol: "UDP".into(),
            port: 80,
        };
        assert!(any.conflicts_with(&one) && one.conflicts_with(&any));
        assert!(!one.conflicts_with(&other));
        assert!(!any.conflicts_with(&udp));
    }
}
