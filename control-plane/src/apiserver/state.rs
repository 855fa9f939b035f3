//! `ApiState`: what every request handler shares — the store, the watch cache, the catalog of
//! served resources, and the apiserver's configuration. Built once by `run`.

use std::sync::{Arc, RwLock};

use super::catalog::Catalog;
use super::config::Config;
use super::watch_cache::WatchCache;
use crate::storage::Store;

pub struct ApiState {
    pub store: Store,
    pub cache: WatchCache,
    pub config: Config,
    catalog: RwLock<Arc<Catalog>>,
}

impl ApiState {
    pub fn new(store: Store, cache: WatchCache, config: Config, catalog: Catalog) -> ApiState {
        ApiState {
            store,
            cache,
            config,
            catalog: RwLock::new(Arc::new(catalog)),
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
}
