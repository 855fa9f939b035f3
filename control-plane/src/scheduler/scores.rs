//! The scores: among the nodes that fit, which suits the pod best. Each score is 0..=100,
//! weighted as kube's default profile weighs them — LeastAllocated 1, BalancedAllocation 1,
//! ImageLocality 1, NodeAffinity 2, InterPodAffinity 2, PodTopologySpread 2,
//! TaintToleration 3 — and summed.

use std::collections::HashMap;

use super::filters::{NamespaceLabels, spread_counts_node, tolerates};
use super::node_info::NodeInfo;
use super::pod_info::{AffinityTerm, PodInfo};

const MAX_SCORE: i64 = 100;
/// ImageLocality's bounds: below 23 MB nothing, at 1000 MB per container the full score.
const MIN_IMAGE_BYTES: i64 = 23 * 1024 * 1024;
const MAX_IMAGE_BYTES_PER_CONTAINER: i64 = 1000 * 1024 * 1024;

/// The weighted total score of each of `feasible` (indexes into `nodes`), in the same order.
pub fn score(
    pod: &PodInfo,
    nodes: &[NodeInfo],
    feasible: &[usize],
    namespaces: NamespaceLabels<'_>,
) -> Vec<i64> {
    let mut totals = vec![0i64; feasible.len()];
    let mut add = |weight: i64, scores: Vec<i64>| {
        for (total, s) in totals.iter_mut().zip(scores) {
            *total += weight * s;
        }
    };
    let candidates: Vec<&NodeInfo> = feasible.iter().map(|&i| &nodes[i]).collect();
    add(
        1,
        candidates.iter().map(|n| least_allocated(pod, n)).collect(),
    );
    add(
        1,
        candidates
            .iter()
            .map(|n| balanced_allocation(pod, n))
            .collect(),
    );
    add(1, image_locality(pod, nodes, &candidates));
    if !pod.preferred_node_terms.is_empty() {
        let raw = candidates
            .iter()
            .map(|n| {
                pod.preferred_node_terms
                    .iter()
                    .filter(|(_, t)| t.matches(&n.name, &n.labels))
                    .map(|(w, _)| i64::from(*w))
                    .sum()
            })
            .collect();
        add(2, normalize_to_max(raw, false));
    }
    let intolerable = candidates
        .iter()
        .map(|n| {
            n.taints
                .iter()
                .filter(|t| t.effect == "PreferNoSchedule" && !tolerates(&pod.tolerations, t))
                .count() as i64
        })
        .collect();
    add(3, normalize_to_max(intolerable, true));
    if let Some(scores) = inter_pod_affinity(pod, nodes, &candidates, namespaces) {
        add(2, scores);
    }
    if let Some(scores) = soft_topology_spread(pod, nodes, &candidates) {
        add(2, scores);
    }
    totals
}

/// 0..=100 from raw values: proportional to the maximum, or its reverse (fewer is better).
fn normalize_to_max(raw: Vec<i64>, reverse: bool) -> Vec<i64> {
    let max = raw.iter().copied().max().unwrap_or(0);
    raw.into_iter()
        .map(|r| match (max, reverse) {
            (0, true) => MAX_SCORE,
            (0, false) => 0,
            (max, false) => r * MAX_SCORE / max,
            (max, true) => MAX_SCORE - r * MAX_SCORE / max,
        })
        .collect()
}

fn fraction(requested: i64, allocatable: i64) -> f64 {
    if allocatable <= 0 {
        return 1.0;
    }
    (requested as f64 / allocatable as f64).min(1.0)
}

/// LeastAllocated: the share of CPU and memory left free after placing the pod.
fn least_allocated(pod: &PodInfo, node: &NodeInfo) -> i64 {
    let free = |requested: i64, allocatable: i64| {
        if allocatable <= 0 || requested > allocatable {
            0
        } else {
            (allocatable - requested) * MAX_SCORE / allocatable
        }
    };
    let cpu = free(
        node.scoring_requested.0 + pod.scoring_requests.0,
        node.allocatable.milli_cpu,
    );
    let memory = free(
        node.scoring_requested.1 + pod.scoring_requests.1,
        node.allocatable.memory,
    );
    (cpu + memory) / 2
}

/// BalancedAllocation: CPU and memory used in like proportions score high.
fn balanced_allocation(pod: &PodInfo, node: &NodeInfo) -> i64 {
    let cpu = fraction(
        node.scoring_requested.0 + pod.scoring_requests.0,
        node.allocatable.milli_cpu,
    );
    let memory = fraction(
        node.scoring_requested.1 + pod.scoring_requests.1,
        node.allocatable.memory,
    );
    let deviation = (cpu - memory).abs() / 2.0;
    ((1.0 - deviation) * MAX_SCORE as f64) as i64
}

/// ImageLocality: the pod's images already on the node, by size, discounted by how few nodes
/// have them (so that pods do not all pile onto the one node with the image).
fn image_locality(pod: &PodInfo, nodes: &[NodeInfo], candidates: &[&NodeInfo]) -> Vec<i64> {
    if pod.images.is_empty() {
        return vec![0; candidates.len()];
    }
    let total = nodes.len().max(1) as f64;
    let spread: HashMap<&str, f64> = pod
        .images
        .iter()
        .map(|image| {
            let having = nodes
                .iter()
                .filter(|n| !n.image_sizes.is_empty() && n.image_sizes.contains_key(image))
                .count();
            (image.as_str(), having as f64 / total)
        })
        .collect();
    let max = MAX_IMAGE_BYTES_PER_CONTAINER * pod.images.len() as i64;
    candidates
        .iter()
        .map(|node| {
            let sum: f64 = pod
                .images
                .iter()
                .filter_map(|image| {
                    Some(*node.image_sizes.get(image)? as f64 * spread[image.as_str()])
                })
                .sum();
            let sum = (sum as i64).clamp(MIN_IMAGE_BYTES, max);
            (sum - MIN_IMAGE_BYTES) * MAX_SCORE / (max - MIN_IMAGE_BYTES)
        })
        .collect()
}

/// InterPodAffinity (preferred terms, both of the pod and of the pods already placed): the
/// weights of the terms satisfied in each node's topology domains, scaled to 0..=100.
fn inter_pod_affinity(
    pod: &PodInfo,
    nodes: &[NodeInfo],
    candidates: &[&NodeInfo],
    namespaces: NamespaceLabels<'_>,
) -> Option<Vec<i64>> {
    let own_terms = pod.has_preferred_affinity();
    let any_existing = nodes.iter().any(|n| n.pods_with_preferred_affinity > 0);
    if !own_terms && !any_existing {
        return None;
    }
    let mut domain_scores: HashMap<(&str, &str), i64> = HashMap::new();
    for node in nodes {
        if !own_terms && node.pods_with_preferred_affinity == 0 {
            continue;
        }
        for other in &node.pods {
            for (weight, term) in &pod.preferred_affinity {
                if term.selects(other, namespaces) {
                    credit(term, node, i64::from(*weight), &mut domain_scores);
                }
            }
            for (weight, term) in &pod.preferred_anti_affinity {
                if term.selects(other, namespaces) {
                    credit(term, node, -i64::from(*weight), &mut domain_scores);
                }
            }
            for (weight, term) in &other.preferred_affinity {
                if term.selects(pod, namespaces) {
                    credit(term, node, i64::from(*weight), &mut domain_scores);
                }
            }
            for (weight, term) in &other.preferred_anti_affinity {
                if term.selects(pod, namespaces) {
                    credit(term, node, -i64::from(*weight), &mut domain_scores);
                }
            }
        }
    }
    let raw: Vec<i64> = candidates
        .iter()
        .map(|n| {
            n.labels
                .iter()
                .filter_map(|(k, v)| domain_scores.get(&(k.as_str(), v.as_str())))
                .sum()
        })
        .collect();
    let (min, max) = (raw.iter().copied().min()?, raw.iter().copied().max()?);
    if max == min {
        return Some(vec![0; raw.len()]);
    }
    Some(
        raw.into_iter()
            .map(|r| (r - min) * MAX_SCORE / (max - min))
            .collect(),
    )
}

/// Adds `weight` to the node's domain of the term's topology key.
fn credit<'a>(
    term: &'a AffinityTerm,
    node: &'a NodeInfo,
    weight: i64,
    domain_scores: &mut HashMap<(&'a str, &'a str), i64>,
) {
    if let Some(value) = node.labels.get(&term.topology_key) {
        *domain_scores
            .entry((term.topology_key.as_str(), value.as_str()))
            .or_insert(0) += weight;
    }
}

/// PodTopologySpread for ScheduleAnyway constraints: fewer matching pods in the node's
/// domain score higher; a node without the topology key scores 0.
fn soft_topology_spread(
    pod: &PodInfo,
    nodes: &[NodeInfo],
    candidates: &[&NodeInfo],
) -> Option<Vec<i64>> {
    let soft: Vec<_> = pod.spread_constraints.iter().filter(|c| !c.hard).collect();
    if soft.is_empty() {
        return None;
    }
    let mut raw = vec![0f64; candidates.len()];
    let mut missing = vec![false; candidates.len()];
    for constraint in soft {
        let mut counts: HashMap<&str, i64> = HashMap::new();
        for node in nodes
            .iter()
            .filter(|n| spread_counts_node(pod, constraint, n))
        {
            if let Some(value) = node.labels.get(&constraint.topology_key) {
                let matching = node
                    .pods
                    .iter()
                    .filter(|p| {
                        p.namespace == pod.namespace && constraint.selector.matches(&p.labels)
                    })
                    .count() as i64;
                *counts.entry(value.as_str()).or_default() += matching;
            }
        }
        let weight = ((counts.len() + 2) as f64).ln();
        for (i, node) in candidates.iter().enumerate() {
            match node.labels.get(&constraint.topology_key) {
                Some(value) => {
                    let count = counts.get(value.as_str()).copied().unwrap_or(0);
                    raw[i] += (count as f64 + f64::from(constraint.max_skew) - 1.0) * weight;
                }
                None => missing[i] = true,
            }
        }
    }
    let present = raw
        .iter()
        .zip(&missing)
        .filter(|(_, m)| !**m)
        .map(|(r, _)| *r);
    let max = present.clone().fold(f64::MIN, f64::max);
    let min = present.fold(f64::MAX, f64::min);
    Some(
        raw.iter()
            .zip(&missing)
            .map(|(r, m)| {
                if *m || max <= 0.0 {
                    return if *m { 0 } else { MAX_SCORE };
                }
                (MAX_SCORE as f64 * (max + min - r) / max) as i64
            })
            .collect(),
    )
}
