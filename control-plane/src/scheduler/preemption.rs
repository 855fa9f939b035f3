//! Preemption (kube's DefaultPreemption), the pure part: when no node fits a pod, find a node
//! where deleting pods of strictly lower priority would let it fit, and the fewest, least
//! important of those pods.
//!
//! ```text
//! FitError ──► eligible? ── no (preemptionPolicy Never, or victims of an earlier preemption
//!                  │          still terminating on the nominated node) ──► NotEligible
//!                  ▼
//!   nodes whose failure removing pods may fix ── none ──► NotHelpful ("0/N nodes ...")
//!                  ▼
//!   per node (from a random offset, until enough candidates): remove every lower-priority
//!   pod, run the real filters (with nominated pods), then reprieve pods one by one, most
//!   important first, PDB-violating ones before the others; what cannot be reprieved is a
//!   victim ── no node works ──► NotHelpful
//!                  ▼
//!   pick the node: fewest PDB violations, lowest highest-victim priority, smallest priority
//!   sum, fewest victims, latest start of the highest-priority victims ──► Nominate
//! ```
//!
//! Nothing here writes to the API: `service` deletes the victims and nominates the node.

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use rand::Rng;

use super::filters::{NamespaceLabels, PreFilter, Unfit};
use super::node_info::NodeInfo;
use super::nominations::Nominations;
use super::placement::{FitError, filter_with_nominated};
use super::pod_info::PodInfo;
use super::selector::LabelMatcher;

/// Why a node whose failure preemption cannot fix is left out.
pub const NOT_HELPFUL: &str = "Preemption is not helpful for scheduling";
/// A node without pods of lower priority than the preemptor.
pub const NO_VICTIMS: &str = "No preemption victims found for incoming pod";
pub const NEVER_POLICY: &str = "not eligible due to preemptionPolicy=Never.";
pub const VICTIMS_TERMINATING: &str =
    "not eligible due to a terminating pod on the nominated node.";

/// Candidates are looked for on at least this many nodes (kube's minCandidateNodesAbsolute)...
const MIN_CANDIDATE_NODES: usize = 100;
/// ...or this percentage of the nodes that might do (minCandidateNodesPercentage).
const MIN_CANDIDATE_NODES_PERCENTAGE: usize = 10;

/// A PodDisruptionBudget as preemption reads it.
#[derive(Clone, Debug)]
pub struct Pdb {
    pub namespace: String,
    /// A missing or empty selector selects nothing here (as in kube's preemption).
    pub selector: LabelMatcher,
    pub disruptions_allowed: i32,
    /// Pods already counted as disrupted by the apiserver (`status.disruptedPods`).
    pub disrupted_pods: HashSet<String>,
}

impl Pdb {
    pub fn from_budget(budget: &PodDisruptionBudget) -> Pdb {
        let selector = budget.spec.as_ref().and_then(|s| s.selector.as_ref());
        let empty = selector.is_none_or(|s| {
            s.match_labels.as_ref().is_none_or(|l| l.is_empty())
                && s.match_expressions.as_ref().is_none_or(|e| e.is_empty())
        });
        let selector = if empty {
            LabelMatcher::nothing()
        } else {
            LabelMatcher::compile(selector).unwrap_or_else(|_| LabelMatcher::nothing())
        };
        let status = budget.status.as_ref();
        Pdb {
            namespace: budget.metadata.namespace.clone().unwrap_or_default(),
            selector,
            disruptions_allowed: status.map_or(0, |s| s.disruptions_allowed),
            disrupted_pods: status
                .and_then(|s| s.disrupted_pods.as_ref())
                .map(|d| d.keys().cloned().collect())
                .unwrap_or_default(),
        }
    }
}

/// A node where the preemptor fits once `victims` are gone.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub node: String,
    /// Most important first.
    pub victims: Vec<Arc<PodInfo>>,
    pub pdb_violations: usize,
}

/// What preemption decided for a pod that fits nowhere.
#[derive(Debug)]
pub enum Outcome {
    /// The pod may not preempt now; its nomination (if any) stays.
    NotEligible(&'static str),
    /// No node would take it even with victims gone; its nomination (if any) ends.
    NotHelpful(FitError),
    /// Delete the victims and nominate the node.
    Nominate(Candidate),
}

impl Outcome {
    /// The part kube appends to the FailedScheduling message ("preemption: ...").
    pub fn message(&self) -> Option<String> {
        match self {
            Outcome::NotEligible(why) => Some(format!("preemption: {why}")),
            Outcome::NotHelpful(error) => Some(format!("preemption: {error}")),
            Outcome::Nominate(_) => None,
        }
    }
}

/// The cluster as preemption reads it.
pub struct Cluster<'a> {
    pub nodes: &'a [NodeInfo],
    pub nominations: &'a Nominations,
    pub pdbs: &'a [Pdb],
    pub namespaces: NamespaceLabels<'a>,
}

/// How many candidates to find among `potential` nodes before choosing.
pub fn candidates_to_find(potential: usize) -> usize {
    (potential * MIN_CANDIDATE_NODES_PERCENTAGE / 100)
        .max(MIN_CANDIDATE_NODES)
        .min(potential)
}

/// Runs preemption for `pod`, which failed on every node as `fit` says.
pub fn preempt(
    pod: &PodInfo,
    cluster: &Cluster<'_>,
    fit: &FitError,
    rng: &mut impl Rng,
) -> Outcome {
    if pod.never_preempts {
        return Outcome::NotEligible(NEVER_POLICY);
    }
    if victims_still_terminating(pod, cluster, fit) {
        return Outcome::NotEligible(VICTIMS_TERMINATING);
    }
    let potential: Vec<&NodeInfo> = cluster
        .nodes
        .iter()
        .filter(|n| fit.per_node.get(&n.name).is_some_and(|u| u.resolvable))
        .collect();
    let mut statuses: BTreeMap<String, Unfit> = BTreeMap::new();
    let mut candidates = Vec::new();
    if !potential.is_empty() {
        let shared = (!PreFilter::depends_on_pods(pod, cluster.nodes))
            .then(|| PreFilter::compute(pod, cluster.nodes, cluster.namespaces));
        let wanted = candidates_to_find(potential.len());
        let offset = rng.random_range(0..potential.len());
        let mut violating = 0;
        for i in 0..potential.len() {
            let node = potential[(offset + i) % potential.len()];
            match select_victims(pod, node, cluster, shared.as_ref()) {
                Ok(candidate) => {
                    violating += usize::from(candidate.pdb_violations > 0);
                    candidates.push(candidate);
                    if candidates.len() > violating && candidates.len() >= wanted {
                        break;
                    }
                }
                Err(unfit) => {
                    statuses.insert(node.name.clone(), unfit);
                }
            }
        }
    }
    if candidates.is_empty() {
        for node in cluster.nodes {
            statuses
                .entry(node.name.clone())
                .or_insert_with(|| Unfit::unresolvable(NOT_HELPFUL));
        }
        return Outcome::NotHelpful(FitError::from_nodes(cluster.nodes.len(), statuses));
    }
    match pick_one(candidates) {
        Some(best) => Outcome::Nominate(best),
        None => Outcome::NotHelpful(FitError::from_nodes(cluster.nodes.len(), statuses)),
    }
}

/// kube's eligibility rule: a pod nominated to a node where pods it preempted are still
/// terminating waits for them instead of preempting more (unless the node can no longer
/// take it whatever is removed).
fn victims_still_terminating(pod: &PodInfo, cluster: &Cluster<'_>, fit: &FitError) -> bool {
    let nominated = cluster
        .nominations
        .node_of(&pod.uid)
        .unwrap_or(&pod.nominated_node_name);
    if nominated.is_empty() || fit.per_node.get(nominated).is_some_and(|u| !u.resolvable) {
        return false;
    }
    cluster
        .nodes
        .iter()
        .find(|n| n.name == nominated)
        .is_some_and(|node| {
            node.pods
                .iter()
                .any(|p| p.priority < pod.priority && cluster.nominations.is_terminating_victim(p))
        })
}

/// Sorts most important first: higher priority, then the one running longer.
pub fn sort_by_importance(pods: &mut [Arc<PodInfo>]) {
    pods.sort_by_key(|p| (Reverse(p.priority), start_key(p)));
}

/// A pod that has not started counts as starting now: after every started one.
fn start_key(pod: &PodInfo) -> (bool, Option<k8s_openapi::jiff::Timestamp>) {
    (pod.start_time.is_none(), pod.start_time)
}

/// Splits `pods` (keeping their order) into those whose deletion would violate a budget and
/// the others, counting each budget down as its pods are taken.
pub fn split_by_budgets(
    pods: Vec<Arc<PodInfo>>,
    pdbs: &[Pdb],
) -> (Vec<Arc<PodInfo>>, Vec<Arc<PodInfo>>) {
    let mut allowed: Vec<i32> = pdbs.iter().map(|p| p.disruptions_allowed).collect();
    let (mut violating, mut fine) = (Vec::new(), Vec::new());
    for pod in pods {
        let mut violates = false;
        if !pod.labels.is_empty() {
            for (pdb, left) in pdbs.iter().zip(allowed.iter_mut()) {
                if pdb.namespace != pod.namespace
                    || !pdb.selector.matches(&pod.labels)
                    || pdb.disrupted_pods.contains(&pod.name)
                {
                    continue;
                }
                *left -= 1;
                violates |= *left < 0;
            }
        }
        if violates {
            violating.push(pod);
        } else {
            fine.push(pod);
        }
    }
    (violating, fine)
}

/// The fewest victims on `node` that let `pod` fit, or why none do. `shared` is the
/// PreFilter when it does not depend on pods (else it is recomputed for each trial).
pub fn select_victims(
    pod: &PodInfo,
    node: &NodeInfo,
    cluster: &Cluster<'_>,
    shared: Option<&PreFilter>,
) -> Result<Candidate, Unfit> {
    let mut potential: Vec<Arc<PodInfo>> = node
        .pods
        .iter()
        .filter(|p| p.priority < pod.priority)
        .cloned()
        .collect();
    if potential.is_empty() {
        return Err(Unfit::unresolvable(NO_VICTIMS));
    }
    let mut view = node.clone();
    for victim in &potential {
        view.remove_pod(&victim.uid);
    }
    let fits = |view: &NodeInfo| match shared {
        Some(pre) => filter_with_nominated(pod, view, pre, cluster.nominations),
        None => {
            let nodes = cluster
                .nodes
                .iter()
                .map(|n| if n.name == view.name { view } else { n });
            let pre = PreFilter::compute_over(pod, nodes, cluster.namespaces);
            filter_with_nominated(pod, view, &pre, cluster.nominations)
        }
    };
    fits(&view)?;
    sort_by_importance(&mut potential);
    let (violating, fine) = split_by_budgets(potential, cluster.pdbs);
    let mixed = !violating.is_empty() && !fine.is_empty();
    let mut victims = Vec::new();
    let mut pdb_violations = 0;
    for (group, violates) in [(violating, true), (fine, false)] {
        for pod_back in group {
            view.add_pod(pod_back.clone());
            if fits(&view).is_err() {
                view.remove_pod(&pod_back.uid);
                pdb_violations += usize::from(violates);
                victims.push(pod_back);
            }
        }
    }
    if mixed {
        sort_by_importance(&mut victims);
    }
    Ok(Candidate {
        node: node.name.clone(),
        victims,
        pdb_violations,
    })
}

/// kube's choice among candidates: each rule keeps the best-scoring ones, the next breaks
/// their tie; the first remaining wins. None when there are none.
pub fn pick_one(mut candidates: Vec<Candidate>) -> Option<Candidate> {
    let rules: [fn(&Candidate) -> i128; 5] = [
        |c| -(c.pdb_violations as i128),
        |c| -i128::from(c.victims.first().map_or(i32::MIN, |v| v.priority)),
        |c| {
            -c.victims
                .iter()
                .map(|v| i128::from(v.priority) + (1i128 << 31))
                .sum::<i128>()
        },
        |c| -(c.victims.len() as i128),
        // The latest start among the earliest-started highest-priority victims.
        |c| {
            let highest = c.victims.first().map_or(i32::MIN, |v| v.priority);
            c.victims
                .iter()
                .filter(|v| v.priority == highest)
                .map(|v| v.start_time.map_or(i128::MAX, |t| t.as_nanosecond()))
                .min()
                .unwrap_or(i128::MAX)
        },
    ];
    for rule in rules {
        if candidates.len() == 1 {
            break;
        }
        let best = candidates.iter().map(rule).max().unwrap_or(0);
        candidates.retain(|c| rule(c) == best);
    }
    candidates.into_iter().next()
}
