//! What the endpoint, node-lifecycle and CSR controllers share: a watched cache of one kind of
//! object (a kube-rs reflector whose changes are reported to the controller), a work queue of
//! object keys (deduplicated, with delayed re-adds for retries and timers); events are written
//! through `crate::events`.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, Event as WatchEvent};
use kube::{Api, Resource};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// Starts watching `api` into a cache. `changed` is called with each object added, modified or
/// deleted, and with `None` after every (re)list, when anything may have changed.
pub fn watch<K, F>(api: Api<K>, changed: F) -> (Store<K>, JoinHandle<()>)
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone + Send + Sync,
    F: Fn(Option<&K>) + Send + Sync + 'static,
{
    let (store, writer) = reflector::store();
    let stream = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .reflect(writer);
    let task = tokio::spawn(async move {
        let mut stream = stream.boxed();
        while let Some(event) = stream.next().await {
            match event {
                Ok(WatchEvent::Apply(object) | WatchEvent::Delete(object)) => {
                    changed(Some(&object))
                }
                Ok(WatchEvent::InitApply(object)) => changed(Some(&object)),
                Ok(WatchEvent::InitDone) => changed(None),
                Ok(WatchEvent::Init) => {}
                Err(error) => tracing::warn!(%error, "watch failed; retrying"),
            }
        }
    });
    (store, task)
}

/// Waits until every cache has listed once.
pub async fn wait_synced<K>(stores: &[&Store<K>])
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    for store in stores {
        let _ = store.wait_until_ready().await;
    }
}

/// Keys waiting to be reconciled, each at most once.
#[derive(Default)]
pub struct WorkQueue {
    keys: Mutex<BTreeSet<String>>,
    wake: Notify,
}

impl WorkQueue {
    pub fn new() -> Arc<WorkQueue> {
        Arc::new(WorkQueue::default())
    }

    pub fn add(&self, key: impl Into<String>) {
        self.lock().insert(key.into());
        self.wake.notify_one();
    }

    /// Adds `key` once `delay` has passed (retries, timers).
    pub fn add_after(self: &Arc<Self>, key: impl Into<String>, delay: Duration) {
        let queue = self.clone();
        let key = key.into();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            queue.add(key);
        });
    }

    /// The next key to work on, waiting for one.
    pub async fn next(&self) -> String {
        loop {
            let notified = self.wake.notified();
            if let Some(key) = self.lock().pop_first() {
                return key;
            }
            notified.await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        self.keys.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// `namespace/name` (or `name` for cluster-scoped objects).
pub fn key_of(meta: &ObjectMeta) -> String {
    let name = meta.name.as_deref().unwrap_or_default();
    match meta.namespace.as_deref() {
        Some(ns) if !ns.is_empty() => format!("{ns}/{name}"),
        _ => name.to_string(),
    }
}

/// Splits a key made by [`key_of`] into namespace and name.
pub fn split_key(key: &str) -> (&str, &str) {
    key.split_once('/').unwrap_or(("", key))
}

pub use crate::events::reference_to;

/// Now, as a `metav1.Time` at whole seconds (as kube serializes it).
pub fn now_time() -> Time {
    let now = k8s_openapi::jiff::Timestamp::now();
    Time(k8s_openapi::jiff::Timestamp::from_second(now.as_second()).unwrap_or(now))
}
