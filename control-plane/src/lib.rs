//! keel-control-plane: the apiserver, its storage, the scheduler and the controllers.
//!
//! `storage` is the MVCC key-value layer (embedded redb or etcd v3) and knows nothing of
//! Kubernetes objects; `apiserver` is the HTTP API above it (authentication, authorization,
//! object semantics, watch cache, discovery). `scheduler` places pods on nodes. Binaries are
//! thin: see `src/bin/`.

pub mod apiserver;
pub mod controllers;
pub mod duration_flag;
pub mod events;
pub mod kube_client;
pub mod leader_election;
pub mod logging;
pub mod scheduler;
pub mod signals;
pub mod storage;
