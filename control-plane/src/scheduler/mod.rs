//! keel-scheduler: places pods on nodes. A pure API client (kube-rs) of any conformant
//! apiserver.
//!
//! The decision is pure and synchronous: `pod_info` and `node_info` compile the objects once,
//! `filters` says which nodes may take a pod (and why not), `scores` ranks those that may, and
//! `placement` runs one decision over a snapshot of the nodes; when none fits, `preemption`
//! picks lower-priority victims and a node to nominate (`nominations` holds that room).
//! `resources` and `selector` are the arithmetic and matching underneath.

pub mod cache;
pub mod filters;
pub mod node_info;
pub mod nominations;
pub mod placement;
pub mod pod_info;
pub mod preemption;
pub mod queue;
pub mod resources;
pub mod scores;
pub mod selector;
pub mod service;

#[cfg(test)]
mod preemption_tests;
#[cfg(test)]
mod tests;
