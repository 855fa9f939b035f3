//! The filters: whether a pod may run on a node, and if not, the reasons users read in
//! `kubectl describe pod` ("Insufficient cpu", "node(s) had untolerated taint {k: v}", ...).
//! In kube's default order — NodeUnschedulable, NodeName, TaintToleration, NodeAffinity,
//! NodePorts, NodeResourcesFit, PodTopologySpread, InterPodAffinity — stopping at the first
//! filter that fails. What needs the whole cluster (inter-pod affinity domains, topology spread
//! counts) is computed once per pod by `PreFilter`.

use std::collections::{BTreeMap, HashMap, HashSet};

use k8s_openapi::api::core::v1::{Taint, Toleration};

use super::node_info::NodeInfo;
use super::pod_info::{AffinityTerm, PodInfo, SpreadConstraint};

pub const REASON_UNSCHEDULABLE: &str = "node(s) were unschedulable";
pub const REASON_NODE_NAME: &str = "node(s) didn't match the requested node name";
pub const REASON_NODE_AFFINITY: &str = "node(s) didn't match Pod's node affinity/selector";
pub const REASON_NODE_PORTS: &str = "node(s) didn't have free ports for the requested pod ports";
pub const REASON_TOO_MANY_PODS: &str = "Too many pods";
pub const REASON_SPREAD: &str = "node(s) didn't match pod topology spread constraints";
pub const REASON_SPREAD_LABEL: &str =
    "node(s) didn't match pod topology spread constraints (missing required label)";
pub const REASON_AFFINITY: &str = "node(s) didn't match pod affinity rules";
pub const REASON_ANTI_AFFINITY: &str = "node(s) didn't match pod anti-affinity rules";
pub const REASON_EXISTING_ANTI_AFFINITY: &str =
    "node(s) didn't satisfy existing pods anti-affinity rules";

/// The labels of a namespace by name (for namespace selectors in affinity terms).
pub type NamespaceLabels<'a> = &'a dyn Fn(&str) -> Option<BTreeMap<String, String>>;

/// Whether `tolerations` tolerate `taint`.
pub fn tolerates(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| {
        let effect_matches = t
            .effect
            .as_deref()
            .is_none_or(|e| e.is_empty() || e == taint.effect);
        let key = t.key.as_deref().unwrap_or_default();
        let operator = t.operator.as_deref().unwrap_or("Equal");
        let key_matches = if key.is_empty() {
            operator == "Exists"
        } else {
            key == taint.key
        };
        let value_matches = match operator {
            "Exists" => true,
            _ => {
                t.value.as_deref().unwrap_or_default() == taint.value.as_deref().unwrap_or_default()
            }
        };
        effect_matches && key_matches && value_matches
    })
}

/// The first NoSchedule/NoExecute taint of the node that the tolerations do not tolerate.
pub fn untolerated_taint<'a>(taints: &'a [Taint], tolerations: &[Toleration]) -> Option<&'a Taint> {
    taints
        .iter()
        .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
        .find(|t| !tolerates(tolerations, t))
}

/// Cluster-wide facts for one pod, computed before filtering its nodes.
pub struct PreFilter {
    /// Per required affinity term: the topology values where a selected pod runs.
    affinity_domains: Vec<HashSet<String>>,
    /// No pod in the cluster matches the pod's affinity terms while the pod matches them
    /// itself: the first pod of a group may go anywhere (kube's rule).
    affinity_bootstrap: bool,
    /// Per required anti-affinity term: the topology values where a selected pod runs.
    anti_affinity_domains: Vec<HashSet<String>>,
    /// (topology key, value) pairs where an existing pod's anti-affinity forbids this pod.
    existing_anti_affinity: HashSet<(String, String)>,
    spread: Vec<SpreadCounts>,
}

/// Matching pods per topology value, for one hard spread constraint.
struct SpreadCounts {
    counts: HashMap<String, i64>,
    min: i64,
    self_match: i64,
}

impl PreFilter {
    pub fn compute(
        pod: &PodInfo,
        nodes: &[NodeInfo],
        namespaces: NamespaceLabels<'_>,
    ) -> PreFilter {
        PreFilter::compute_over(pod, nodes.iter(), namespaces)
    }

    /// Whether the result depends on the pods on the nodes (inter-pod affinity, anti-affinity
    /// of existing pods, spread counts): when not, it need not be recomputed as pods come and go.
    pub fn depends_on_pods(pod: &PodInfo, nodes: &[NodeInfo]) -> bool {
        !pod.required_affinity.is_empty()
            || !pod.required_anti_affinity.is_empty()
            || pod.spread_constraints.iter().any(|c| c.hard)
            || nodes.iter().any(|n| n.pods_with_required_anti_affinity > 0)
    }

    /// The same over any view of the nodes (preemption passes one with a node's pods removed).
    pub fn compute_over<'n>(
        pod: &PodInfo,
        nodes: impl Iterator<Item = &'n NodeInfo> + Clone,
        namespaces: NamespaceLabels<'_>,
    ) -> PreFilter {
        let mut affinity_domains = vec![HashSet::new(); pod.required_affinity.len()];
        let mut anti_affinity_domains = vec![HashSet::new(); pod.required_anti_affinity.len()];
        let mut existing_anti_affinity = HashSet::new();
        let mut any_affinity_match = false;
        let wants_pods =
            !pod.required_affinity.is_empty() || !pod.required_anti_affinity.is_empty();
        for node in nodes.clone() {
            if !wants_pods && node.pods_with_required_anti_affinity == 0 {
                continue;
            }
            for other in &node.pods {
                if wants_pods {
                    collect_domains(
                        &pod.required_affinity,
                        other,
                        node,
                        namespaces,
                        &mut affinity_domains,
                    );
                    collect_domains(
                        &pod.required_anti_affinity,
                        other,
                        node,
                        namespaces,
                        &mut anti_affinity_domains,
                    );
                    if !pod.required_affinity.is_empty()
                        && pod
                            .required_affinity
                            .iter()
                            .all(|t| t.selects(other, namespaces))
                    {
                        any_affinity_match = true;
                    }
                }
                for term in &other.required_anti_affinity {
                    if let Some(value) = node.labels.get(&term.topology_key)
                        && term.selects(pod, namespaces)
                    {
                        existing_anti_affinity.insert((term.topology_key.clone(), value.clone()));
                    }
                }
            }
        }
        let affinity_bootstrap = !pod.required_affinity.is_empty()
            && !any_affinity_match
            && pod
                .required_affinity
                .iter()
                .all(|t| t.selects(pod, namespaces));
        let spread = pod
            .spread_constraints
            .iter()
            .filter(|c| c.hard)
            .map(|c| spread_counts(pod, c, nodes.clone()))
            .collect();
        PreFilter {
            affinity_domains,
            affinity_bootstrap,
            anti_affinity_domains,
            existing_anti_affinity,
            spread,
        }
    }
}

fn collect_domains(
    terms: &[AffinityTerm],
    other: &PodInfo,
    node: &NodeInfo,
    namespaces: NamespaceLabels<'_>,
    domains: &mut [HashSet<String>],
) {
    for (term, found) in terms.iter().zip(domains.iter_mut()) {
        if let Some(value) = node.labels.get(&term.topology_key)
            && term.selects(other, namespaces)
        {
            found.insert(value.clone());
        }
    }
}

/// Whether a node counts as a domain of a spread constraint (inclusion policies and the key).
pub fn spread_counts_node(pod: &PodInfo, constraint: &SpreadConstraint, node: &NodeInfo) -> bool {
    node.labels.contains_key(&constraint.topology_key)
        && (!constraint.honor_node_affinity || pod.matches_node(&node.name, &node.labels))
        && (!constraint.honor_node_taints
            || untolerated_taint(&node.taints, &pod.tolerations).is_none())
}

fn spread_counts<'n>(
    pod: &PodInfo,
    constraint: &SpreadConstraint,
    nodes: impl Iterator<Item = &'n NodeInfo>,
) -> SpreadCounts {
    let mut counts: HashMap<String, i64> = HashMap::new();
    for node in nodes.filter(|n| spread_counts_node(pod, constraint, n)) {
        let Some(value) = node.labels.get(&constraint.topology_key) else {
            continue;
        };
        let matching = node
            .pods
            .iter()
            .filter(|p| p.namespace == pod.namespace && constraint.selector.matches(&p.labels))
            .count() as i64;
        *counts.entry(value.clone()).or_default() += matching;
    }
    let min = if (counts.len() as i64) < i64::from(constraint.min_domains) {
        0
    } else {
        counts.values().copied().min().unwrap_or(0)
    };
    SpreadCounts {
        counts,
        min,
        self_match: i64::from(constraint.selector.matches(&pod.labels)),
    }
}

/// Why a node does not take a pod: the reasons of the first filter that failed, and whether
/// removing pods from the node could change the verdict (kube's Unschedulable) or not (its
/// UnschedulableAndUnresolvable: node name, unschedulable, taints, node affinity, a request
/// larger than the node, a missing topology label, unmet pod affinity).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unfit {
    pub reasons: Vec<String>,
    pub resolvable: bool,
}

impl Unfit {
    pub fn resolvable(reason: &str) -> Unfit {
        Unfit {
            reasons: vec![reason.to_string()],
            resolvable: true,
        }
    }

    pub fn unresolvable(reason: impl Into<String>) -> Unfit {
        Unfit {
            reasons: vec![reason.into()],
            resolvable: false,
        }
    }
}

/// Runs the filters on one node: Ok, or why the first filter that failed refused it.
pub fn filter(pod: &PodInfo, node: &NodeInfo, pre: &PreFilter) -> Result<(), Unfit> {
    if node.unschedulable {
        let taint = Taint {
            key: "node.kubernetes.io/unschedulable".into(),
            effect: "NoSchedule".into(),
            ..Default::default()
        };
        if !tolerates(&pod.tolerations, &taint) {
            return Err(Unfit::unresolvable(REASON_UNSCHEDULABLE));
        }
    }
    if !pod.node_name.is_empty() && pod.node_name != node.name {
        return Err(Unfit::unresolvable(REASON_NODE_NAME));
    }
    if let Some(taint) = untolerated_taint(&node.taints, &pod.tolerations) {
        return Err(Unfit::unresolvable(format!(
            "node(s) had untolerated taint {{{}: {}}}",
            taint.key,
            taint.value.as_deref().unwrap_or_default()
        )));
    }
    if !pod.matches_node(&node.name, &node.labels) {
        return Err(Unfit::unresolvable(REASON_NODE_AFFINITY));
    }
    if pod.host_ports.iter().any(|wanted| {
        node.used_ports
            .iter()
            .any(|used| used.conflicts_with(wanted))
    }) {
        return Err(Unfit::resolvable(REASON_NODE_PORTS));
    }
    let (insufficient, beyond_node) = insufficient_resources(pod, node);
    if !insufficient.is_empty() {
        return Err(Unfit {
            reasons: insufficient,
            resolvable: !beyond_node,
        });
    }
    let hard_constraints = pod.spread_constraints.iter().filter(|c| c.hard);
    for (constraint, counts) in hard_constraints.zip(&pre.spread) {
        let Some(value) = node.labels.get(&constraint.topology_key) else {
            return Err(Unfit::unresolvable(REASON_SPREAD_LABEL));
        };
        let here = counts.counts.get(value).copied().unwrap_or(0);
        if here + counts.self_match - counts.min > i64::from(constraint.max_skew) {
            return Err(Unfit::resolvable(REASON_SPREAD));
        }
    }
    let in_domain = |key: &str, domains: &HashSet<String>| {
        node.labels.get(key).is_some_and(|v| domains.contains(v))
    };
    if !pre.existing_anti_affinity.is_empty()
        && node
            .labels
            .iter()
            .any(|(k, v)| pre.existing_anti_affinity.contains(&(k.clone(), v.clone())))
    {
        return Err(Unfit::resolvable(REASON_EXISTING_ANTI_AFFINITY));
    }
    let affinity_ok = pod
        .required_affinity
        .iter()
        .zip(&pre.affinity_domains)
        .all(|(term, domains)| in_domain(&term.topology_key, domains));
    let has_keys = pod
        .required_affinity
        .iter()
        .all(|t| node.labels.contains_key(&t.topology_key));
    if !(affinity_ok || pre.affinity_bootstrap && has_keys) {
        return Err(Unfit::unresolvable(REASON_AFFINITY));
    }
    if pod
        .required_anti_affinity
        .iter()
        .zip(&pre.anti_affinity_domains)
        .any(|(term, domains)| in_domain(&term.topology_key, domains))
    {
        return Err(Unfit::resolvable(REASON_ANTI_AFFINITY));
    }
    Ok(())
}

/// NodeResourcesFit: "Too many pods", then "Insufficient <resource>" for each short resource;
/// true with them when some request exceeds what the node can allocate at all (no removal
/// of pods helps).
fn insufficient_resources(pod: &PodInfo, node: &NodeInfo) -> (Vec<String>, bool) {
    let mut reasons = Vec::new();
    let mut beyond_node = false;
    if node.pods.len() as i64 + 1 > node.allowed_pods {
        reasons.push(REASON_TOO_MANY_PODS.to_string());
    }
    let wanted = &pod.requests;
    let allocatable = &node.allocatable;
    let requested = &node.requested;
    let mut check = |name: &str, want: i64, allocatable: i64, requested: i64| {
        if want > 0 && want > allocatable - requested {
            reasons.push(format!("Insufficient {name}"));
            beyond_node |= want > allocatable;
        }
    };
    check(
        "cpu",
        wanted.milli_cpu,
        allocatable.milli_cpu,
        requested.milli_cpu,
    );
    check(
        "memory",
        wanted.memory,
        allocatable.memory,
        requested.memory,
    );
    check(
        "ephemeral-storage",
        wanted.ephemeral_storage,
        allocatable.ephemeral_storage,
        requested.ephemeral_storage,
    );
    for (name, amount) in &wanted.scalar {
        check(
            name,
            *amount,
            allocatable.scalar(name),
            requested.scalar(name),
        );
    }
    (reasons, beyond_node)
}
