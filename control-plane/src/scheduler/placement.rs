//! One scheduling decision: filter the nodes (starting where the last pod's search stopped, and
//! stopping once enough feasible nodes are found, as kube's `percentageOfNodesToScore` does),
//! score the feasible ones, pick the best (ties at random). When no node fits, a `FitError`
//! carries the reasons per node, rendered as kube renders them:
//! "0/5 nodes are available: 2 Insufficient cpu, 3 node(s) had untolerated taint {k: v}."

use std::collections::BTreeMap;
use std::fmt;

use rand::Rng;

use super::filters::{NamespaceLabels, PreFilter, Unfit, filter};
use super::node_info::NodeInfo;
use super::nominations::Nominations;
use super::pod_info::PodInfo;
use super::scores::score;

/// Below this many nodes, every node is examined.
const MIN_FEASIBLE_NODES_TO_FIND: usize = 100;
/// The adaptive percentage never goes below this.
const MIN_FEASIBLE_NODES_PERCENTAGE: usize = 5;

/// How many feasible nodes to find before scoring (kube's adaptive default: 50% minus 1% per
/// 125 nodes, at least 5%, at least 100 nodes).
pub fn feasible_nodes_to_find(total: usize) -> usize {
    if total < MIN_FEASIBLE_NODES_TO_FIND {
        return total;
    }
    let percentage = 50usize
        .saturating_sub(total / 125)
        .max(MIN_FEASIBLE_NODES_PERCENTAGE);
    (total * percentage / 100).max(MIN_FEASIBLE_NODES_TO_FIND)
}

/// No node fits: how many nodes there were and why each failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FitError {
    pub nodes: usize,
    /// Reason → number of nodes that failed for it.
    pub reasons: BTreeMap<String, usize>,
    /// Node name → why it failed (preemption looks only where removing pods may help).
    pub per_node: BTreeMap<String, Unfit>,
    /// The preemption outcome, when preemption ran ("preemption: 0/3 nodes are available: ...").
    pub preemption: Option<String>,
}

impl fmt::Display for FitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0/{} nodes are available", self.nodes)?;
        let mut counted: Vec<String> = self
            .reasons
            .iter()
            .map(|(r, n)| format!("{n} {r}"))
            .collect();
        counted.sort();
        if counted.is_empty() {
            write!(f, ".")?;
        } else {
            write!(f, ": {}.", counted.join(", "))?;
        }
        if let Some(preemption) = &self.preemption {
            write!(f, " {preemption}")?;
        }
        Ok(())
    }
}

/// Where the next search starts (rotates so that all nodes get their turn).
#[derive(Debug, Default)]
pub struct SearchStart(usize);

impl FitError {
    /// Counts the reasons of `per_node` (every node of `nodes` failed).
    pub fn from_nodes(nodes: usize, per_node: BTreeMap<String, Unfit>) -> FitError {
        let mut reasons = BTreeMap::new();
        for unfit in per_node.values() {
            for reason in &unfit.reasons {
                *reasons.entry(reason.clone()).or_insert(0) += 1;
            }
        }
        FitError {
            nodes,
            reasons,
            per_node,
            preemption: None,
        }
    }
}

/// The filters as kube runs them with nominated pods: when pods of equal or higher priority
/// are nominated to the node, the pod must fit with them counted, and also without them.
pub fn filter_with_nominated(
    pod: &PodInfo,
    node: &NodeInfo,
    pre: &PreFilter,
    nominations: &Nominations,
) -> Result<(), Unfit> {
    if let Some(reserved) = nominations.reserved_view(pod, node) {
        filter(pod, &reserved, pre)?;
    }
    filter(pod, node, pre)
}

/// Chooses a node for `pod` among `nodes` (counting the room held for nominated pods), or
/// says why none fits.
pub fn schedule(
    pod: &PodInfo,
    nodes: &[NodeInfo],
    nominations: &Nominations,
    start: &mut SearchStart,
    namespaces: NamespaceLabels<'_>,
    rng: &mut impl Rng,
) -> Result<usize, FitError> {
    if nodes.is_empty() {
        return Err(FitError::from_nodes(0, BTreeMap::new()));
    }
    let pre = PreFilter::compute(pod, nodes, namespaces);
    let wanted = feasible_nodes_to_find(nodes.len());
    let mut feasible = Vec::with_capacity(wanted);
    let mut per_node = BTreeMap::new();
    let mut examined = 0;
    while examined < nodes.len() && feasible.len() < wanted {
        let index = (start.0 + examined) % nodes.len();
        examined += 1;
        match filter_with_nominated(pod, &nodes[index], &pre, nominations) {
            Ok(()) => feasible.push(index),
            Err(unfit) => {
                per_node.insert(nodes[index].name.clone(), unfit);
            }
        }
    }
    start.0 = (start.0 + examined) % nodes.len();
    if feasible.is_empty() {
        return Err(FitError::from_nodes(nodes.len(), per_node));
    }
    if feasible.len() == 1 {
        return Ok(feasible[0]);
    }
    let scores = score(pod, nodes, &feasible, namespaces);
    let mut best = feasible[0];
    let mut best_score = i64::MIN;
    let mut ties = 0u32;
    for (&index, &total) in feasible.iter().zip(&scores) {
        if total > best_score {
            best = index;
            best_score = total;
            ties = 1;
        } else if total == best_score {
            ties += 1;
            if rng.random_range(0..ties) == 0 {
                best = index;
            }
        }
    }
    Ok(best)
}
