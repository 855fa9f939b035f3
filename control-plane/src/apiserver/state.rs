//! `ApiState`: what every request handler shares — the store, the watch cache, the catalog of
//! served resources, the apiserver's configuration and its security material (PKI, token
//! signer, the Node authorizer's graph). Built once by `run`.

use std::sync::{Arc, RwLock, RwLockReadGuard};

use super::auth::{NodeGraph, Pki, TokenSigner};
use super::catalog::Catalog;
use super::config::Config;
use super::crd_serving::{OpenApiRef, ServedCrds};
use super::service_allocation::ServiceAllocations;
use super::watch_cache::WatchCache;
use crate::storage::Store;

/// The certificates and keys of the cluster.
pub struct Security {
    pub pki: Pki,
    pub signer: TokenSigner,
}

pub struct ApiState {
    pub store: Store,
    pub cache: WatchCache,
    pub config: Config,
    pub security: Option<Security>,
    /// Which Service ClusterIPs and NodePorts are taken.
    pub service_allocations: ServiceAllocations,
    catalog: RwLock<Arc<Catalog>>,
    crds: RwLock<Arc<ServedCrds>>,
    node_graph: RwLock<NodeGraph>,
}

impl ApiState {
    pub fn new(
        store: Store,
        cache: WatchCache,
        config: Config,
        catalog: Catalog,
        security: Option<Security>,
    ) -> ApiState {
        ApiState {
            service_allocations: ServiceAllocations::new(store.clone(), &config),
            store,
            cache,
            config,
            security,
            catalog: RwLock::new(Arc::new(catalog)),
            crds: RwLock::new(Arc::new(ServedCrds::default())),
            node_graph: RwLock::new(NodeGraph::new()),
        }
    }

    /// The resources served now.
    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Swaps in a new catalog (after a CRD change).
    pub fn set_catalog(&self, catalog: Catalog) {
        *self.catalog.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(catalog);
    }

    /// The OpenAPI documents of the served resources (the built-in ones while no CRD is served).
    pub fn openapi(&self) -> OpenApiRef {
        self.crds().openapi()
    }

    /// The custom resource types served now.
    pub fn crds(&self) -> Arc<ServedCrds> {
        self.crds.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Swaps in the served custom resource types (the CRD controller does, with the catalog).
    pub fn set_crds(&self, crds: ServedCrds) {
        *self.crds.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(crds);
    }

    /// Which node may read what, for the Node authorizer.
    pub fn node_graph(&self) -> RwLockReadGuard<'_, NodeGraph> {
        self.node_graph.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Changes the node graph (fed from pod and PVC events).
    pub fn update_node_graph(&self, change: impl FnOnce(&mut NodeGraph)) {
        change(&mut self.node_graph.write().unwrap_or_else(|p| p.into_inner()));
    }
}
