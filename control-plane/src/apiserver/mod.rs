//! keel-apiserver: the Kubernetes API over HTTPS, above `storage`.
//!
//! A request goes `server` (TLS, authentication, authorization) → `nonresource` (health,
//! discovery, OpenAPI) or `handlers` (resources) → `admission` → `rest` (generic object
//! semantics, with per-kind `strategy`) → `storage`. Reads of collections and every watch are
//! served by the `watch_cache`, fed by one storage watch.

pub mod admission;
pub mod allocator;
pub mod auth;
pub mod auth_admission;
pub mod auth_endpoints;
pub mod authn;
pub mod authz;
pub mod body;
pub mod bootstrap;
pub mod catalog;
pub mod compaction;
pub mod config;
pub mod crd;
pub mod crd_serving;
pub mod cron;
pub mod defaults;
pub mod discovery;
pub mod field_errors;
pub mod handlers;
pub mod kubernetes_service;
pub mod metrics;
pub mod names;
pub mod namespace_lifecycle;
pub mod nonresource;
pub mod objects;
pub mod openapi;
pub mod openapi_proto;
pub mod patch;
pub mod priority_admission;
pub mod protobuf;
pub mod quantity;
pub mod request;
pub mod resources;
pub mod rest;
pub mod security;
pub mod selection;
pub mod selectors;
pub mod server;
pub mod service_allocation;
pub mod service_rest;
pub mod service_spec;
pub mod state;
pub mod status;
pub mod strategy;
pub mod subresources;
pub mod table;
pub mod validation;
pub mod watch;
pub mod watch_cache;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::Config;

use crate::storage::Store;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("opening storage: {0}")]
    Storage(#[from] crate::storage::Error),
    #[error("listening on {address}: {source}")]
    Listen {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("setting up: {0}")]
    Setup(String),
}

/// A running apiserver's address, known once it listens.
#[derive(Clone, Debug)]
pub struct Serving {
    pub address: SocketAddr,
}

/// Opens storage, starts the watch cache and serves until `shutdown`. `ready` receives the
/// bound address once the server accepts connections.
pub async fn run(
    config: Config,
    shutdown: CancellationToken,
    ready: Option<tokio::sync::oneshot::Sender<Serving>>,
) -> Result<(), Error> {
    let store = if config.etcd_servers.is_empty() {
        Store::open_embedded(&config.data_dir).await?
    } else {
        Store::connect_etcd(&config.etcd_servers, &config.etcd_prefix).await?
    };
    metrics::init();
    let cache = watch_cache::WatchCache::start(store.clone(), shutdown.clone()).await?;
    let address = SocketAddr::new(config.bind_address, config.secure_port);
    let listener = TcpListener::bind(address)
        .await
        .map_err(|source| Error::Listen { address, source })?;
    let address = listener
        .local_addr()
        .map_err(|source| Error::Listen { address, source })?;
    let mut config = config;
    config.secure_port = address.port();
    let catalog = catalog::Catalog::new(resources::builtin_resources());
    let security = security::load_or_create(&config, address)?;
    let tls = security::tls_acceptor(&security.pki)?;
    let compaction_interval = config.compaction_interval;
    let state = Arc::new(state::ApiState::new(
        store.clone(),
        cache,
        config,
        catalog,
        Some(security),
    ));
    bootstrap::ensure_system_namespaces(&state)
        .await
        .map_err(|e| Error::Setup(e.to_string()))?;
    bootstrap::ensure_system_priority_classes(&state)
        .await
        .map_err(|e| Error::Setup(e.to_string()))?;
    bootstrap::ensure_rbac_policy(&state)
        .await
        .map_err(|e| Error::Setup(e.to_string()))?;
    bootstrap::ensure_service_allocations(&state).await?;
    tokio::spawn(service_rest::run_repair_loop(
        state.clone(),
        shutdown.clone(),
    ));
    tokio::spawn(compaction::run(
        store,
        compaction_interval,
        shutdown.clone(),
    ));
    tokio::spawn(namespace_lifecycle::run(state.clone(), shutdown.clone()));
    crd_serving::start(state.clone(), shutdown.clone()).await;
    tokio::spawn(security::feed_node_graph(state.clone(), shutdown.clone()));
    tracing::info!(%address, "keel-apiserver serving");
    if let Some(ready) = ready {
        let _ = ready.send(Serving { address });
    }
    server::serve(state, listener, Some(tls), shutdown).await;
    Ok(())
}
#[cfg(test)]
mod describe_kubectl;
