//! Zones and their disruption states, as kube's node lifecycle controller keeps them: nodes are
//! grouped by their region and zone labels, each zone's state follows the share of its nodes
//! that are not Ready, and the state sets how fast the zone's nodes get their NoExecute taint.
//!
//! ```text
//!                  share not Ready >= --unhealthy-zone-threshold, and > 2 not Ready
//!   Initial ──► Normal ◄───────────────────────────────► PartialDisruption
//!                  ▲  ╲                                     ╱  ▲
//!                  │   ╲  no node Ready (and some not)     ╱   │
//!                  │    ▼                                 ▼    │
//!                  └──────────────  FullDisruption  ───────────┘
//!
//!   rate:  Normal            --node-eviction-rate
//!          PartialDisruption --secondary-node-eviction-rate when the zone has more than
//!                            --large-cluster-size-threshold nodes, else 0
//!          FullDisruption    --node-eviction-rate (the zone is likely cut off, not its nodes)
//! ```
//!
//! When every zone is in FullDisruption the problem is probably the control plane's own
//! network ("master disruption"): no node is tainted at all, the NoExecute taints already set
//! are removed, and when some zone comes back every node gets a fresh grace period.
//! Nodes labelled `node.kubernetes.io/exclude-disruption` do not count.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Node;

pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
pub const REGION_LABEL: &str = "topology.kubernetes.io/region";
const BETA_ZONE_LABEL: &str = "failure-domain.beta.kubernetes.io/zone";
const BETA_REGION_LABEL: &str = "failure-domain.beta.kubernetes.io/region";
pub const EXCLUDE_DISRUPTION_LABEL: &str = "node.kubernetes.io/exclude-disruption";

/// The eviction settings from the command line.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EvictionRates {
    /// `--node-eviction-rate`: nodes per second in a healthy zone.
    pub node_eviction_rate: f64,
    /// `--secondary-node-eviction-rate`: nodes per second in a large unhealthy zone.
    pub secondary_node_eviction_rate: f64,
    /// `--large-cluster-size-threshold`.
    pub large_cluster_size_threshold: usize,
    /// `--unhealthy-zone-threshold`.
    pub unhealthy_zone_threshold: f64,
}

/// The zone a node belongs to: `region:\0:zone`, or "" when it has neither label.
pub fn zone_key(node: &Node) -> String {
    let labels = node.metadata.labels.clone().unwrap_or_default();
    let label = |ga: &str, beta: &str| {
        labels
            .get(ga)
            .or_else(|| labels.get(beta))
            .cloned()
            .unwrap_or_default()
    };
    let region = label(REGION_LABEL, BETA_REGION_LABEL);
    let zone = label(ZONE_LABEL, BETA_ZONE_LABEL);
    if region.is_empty() && zone.is_empty() {
        return String::new();
    }
    format!("{region}:\u{0}:{zone}")
}

/// True for nodes left out of the zone states.
pub fn excluded_from_disruption(node: &Node) -> bool {
    node.metadata
        .labels
        .as_ref()
        .is_some_and(|l| l.contains_key(EXCLUDE_DISRUPTION_LABEL))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ZoneState {
    Initial,
    Normal,
    PartialDisruption,
    FullDisruption,
}

/// How many of a zone's nodes are Ready and not.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ZoneHealth {
    pub ready: usize,
    pub not_ready: usize,
}

impl ZoneHealth {
    pub fn size(&self) -> usize {
        self.ready + self.not_ready
    }
}

/// The state of a zone from its nodes' Ready conditions (a node without one counts as not
/// Ready).
pub fn zone_state(health: ZoneHealth, unhealthy_threshold: f64) -> ZoneState {
    if health.ready == 0 && health.not_ready > 0 {
        ZoneState::FullDisruption
    } else if health.not_ready > 2
        && health.not_ready as f64 / health.size() as f64 >= unhealthy_threshold
    {
        ZoneState::PartialDisruption
    } else {
        ZoneState::Normal
    }
}

/// The tainting rate (nodes per second) of a zone of `size` nodes in `state`.
pub fn zone_rate(state: ZoneState, size: usize, rates: &EvictionRates) -> f64 {
    match state {
        ZoneState::PartialDisruption if size > rates.large_cluster_size_threshold => {
            rates.secondary_node_eviction_rate
        }
        ZoneState::PartialDisruption => 0.0,
        _ => rates.node_eviction_rate,
    }
}

/// What a pass over the zones asks of the controller.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Nothing changed.
    Unchanged,
    /// Every zone is fully disrupted: stop all tainting and remove the NoExecute taints.
    EnterMasterDisruption,
    /// Some zone is back: give every node a fresh grace period and set these rates.
    ExitMasterDisruption(BTreeMap<String, f64>),
    /// These zones changed state: their new rates.
    Rates(BTreeMap<String, f64>),
}

/// The zones seen so far and their states.
#[derive(Clone, Debug, Default)]
pub struct Disruption {
    states: BTreeMap<String, ZoneState>,
}

impl Disruption {
    pub fn state(&self, zone: &str) -> Option<ZoneState> {
        self.states.get(zone).copied()
    }

    /// One pass with the zones as they are now (kube's `handleDisruption`).
    pub fn step(
        &mut self,
        zones: &BTreeMap<String, ZoneHealth>,
        rates: &EvictionRates,
    ) -> Decision {
        let new: BTreeMap<&String, ZoneState> = zones
            .iter()
            .map(|(zone, health)| (zone, zone_state(*health, rates.unhealthy_zone_threshold)))
            .collect();
        let all_are_full = new.values().all(|s| *s == ZoneState::FullDisruption);
        for zone in zones.keys() {
            self.states
                .entry(zone.clone())
                .or_insert(ZoneState::Initial);
        }
        self.states.retain(|zone, _| zones.contains_key(zone));
        let all_were_full = self
            .states
            .values()
            .all(|s| *s == ZoneState::FullDisruption);
        if all_are_full && all_were_full {
            return Decision::Unchanged;
        }
        let rate_of = |zone: &String, state: ZoneState| {
            let size = zones.get(zone).map(ZoneHealth::size).unwrap_or(0);
            zone_rate(state, size, rates)
        };
        if all_are_full {
            for state in self.states.values_mut() {
                *state = ZoneState::FullDisruption;
            }
            return Decision::EnterMasterDisruption;
        }
        let mut changed = BTreeMap::new();
        for (zone, state) in self.states.iter_mut() {
            let Some(&next) = new.get(zone) else { continue };
            if all_were_full || *state != next {
                changed.insert(zone.clone(), rate_of(zone, next));
                *state = next;
            }
        }
        if all_were_full {
            Decision::ExitMasterDisruption(changed)
        } else if changed.is_empty() {
            Decision::Unchanged
        } else {
            Decision::Rates(changed)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATES: EvictionRates = EvictionRates {
        node_eviction_rate: 0.1,
        secondary_node_eviction_rate: 0.01,
        large_cluster_size_threshold: 50,
        unhealthy_zone_threshold: 0.55,
    };

    fn health(ready: usize, not_ready: usize) -> ZoneHealth {
        ZoneHealth { ready, not_ready }
    }

    fn zones(list: &[(&str, ZoneHealth)]) -> BTreeMap<String, ZoneHealth> {
        list.iter().map(|(z, h)| (z.to_string(), *h)).collect()
    }

    fn rates(list: &[(&str, f64)]) -> BTreeMap<String, f64> {
        list.iter().map(|(z, r)| (z.to_string(), *r)).collect()
    }

    #[test]
    fn zone_state_follows_the_share_of_not_ready_nodes() {
        assert_eq!(zone_state(health(3, 0), 0.55), ZoneState::Normal);
        assert_eq!(zone_state(health(0, 0), 0.55), ZoneState::Normal);
        assert_eq!(zone_state(health(0, 1), 0.55), ZoneState::FullDisruption);
        // Two not Ready nodes are never a partial disruption, however small the zone.
        assert_eq!(zone_state(health(1, 2), 0.55), ZoneState::Normal);
        assert_eq!(zone_state(health(2, 3), 0.55), ZoneState::PartialDisruption);
        assert_eq!(zone_state(health(3, 3), 0.55), ZoneState::Normal);
        assert_eq!(zone_state(health(3, 3), 0.5), ZoneState::PartialDisruption);
    }

    #[test]
    fn partial_disruption_slows_large_zones_and_stops_small_ones() {
        assert_eq!(zone_rate(ZoneState::Normal, 3, &RATES), 0.1);
        assert_eq!(zone_rate(ZoneState::PartialDisruption, 50, &RATES), 0.0);
        assert_eq!(zone_rate(ZoneState::PartialDisruption, 51, &RATES), 0.01);
        assert_eq!(zone_rate(ZoneState::FullDisruption, 3, &RATES), 0.1);
    }

    #[test]
    fn zones_move_between_states_and_report_their_rates() {
        let mut d = Disruption::default();
        let a_ok = ("a", health(4, 0));
        assert_eq!(
            d.step(&zones(&[a_ok, ("b", health(60, 0))]), &RATES),
            Decision::Rates(rates(&[("a", 0.1), ("b", 0.1)]))
        );
        assert_eq!(
            d.step(&zones(&[a_ok, ("b", health(60, 0))]), &RATES),
            Decision::Unchanged
        );
        // b loses most of its nodes: partial disruption at the secondary rate (it is large);
        // a small zone in partial disruption stops.
        assert_eq!(
            d.step(
                &zones(&[("a", health(1, 3)), ("b", health(20, 40))]),
                &RATES
            ),
            Decision::Rates(rates(&[("a", 0.0), ("b", 0.01)]))
        );
        assert_eq!(d.state("b"), Some(ZoneState::PartialDisruption));
        // a is cut off entirely while b is fine: a is tainted at the normal rate.
        assert_eq!(
            d.step(&zones(&[("a", health(0, 4)), ("b", health(60, 0))]), &RATES),
            Decision::Rates(rates(&[("a", 0.1), ("b", 0.1)]))
        );
        assert_eq!(d.state("a"), Some(ZoneState::FullDisruption));
        // A zone without nodes is forgotten.
        d.step(&zones(&[("b", health(60, 0))]), &RATES);
        assert_eq!(d.state("a"), None);
    }

    #[test]
    fn every_zone_down_is_master_disruption_until_one_comes_back() {
        let mut d = Disruption::default();
        d.step(&zones(&[("a", health(3, 0)), ("b", health(2, 0))]), &RATES);
        let all_down = zones(&[("a", health(0, 3)), ("b", health(0, 2))]);
        assert_eq!(d.step(&all_down, &RATES), Decision::EnterMasterDisruption);
        assert_eq!(d.step(&all_down, &RATES), Decision::Unchanged);
        // b comes back: every zone gets the rate of its state, a's full disruption included.
        assert_eq!(
            d.step(&zones(&[("a", health(0, 3)), ("b", health(2, 0))]), &RATES),
            Decision::ExitMasterDisruption(rates(&[("a", 0.1), ("b", 0.1)]))
        );
        assert_eq!(d.state("b"), Some(ZoneState::Normal));
        // A cluster whose only zone starts out down is in master disruption from the start.
        let mut fresh = Disruption::default();
        assert_eq!(
            fresh.step(&zones(&[("a", health(0, 3))]), &RATES),
            Decision::EnterMasterDisruption
        );
    }

    #[test]
    fn zone_key_uses_region_and_zone_labels() {
        let node = |labels: &[(&str, &str)]| Node {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(zone_key(&node(&[])), "");
        assert_eq!(
            zone_key(&node(&[(REGION_LABEL, "r1"), (ZONE_LABEL, "z1")])),
            "r1:\u{0}:z1"
        );
        assert_eq!(
            zone_key(&node(&[(BETA_ZONE_LABEL, "z2")])),
            ":\u{0}:z2",
            "the beta labels count when the GA ones are missing"
        );
        assert!(excluded_from_disruption(&node(&[(
            EXCLUDE_DISRUPTION_LABEL,
            ""
        )])));
    }
}
