//! The machinery the workload controllers share: watch-backed caches (kube-rs reflectors)
//! whose events name the objects to sync, and a de-duplicating work queue with delayed adds
//! and per-key exponential backoff, drained by one worker that calls the controller's sync.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, Event};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// The first retry delay after a failed sync; it doubles per failure up to `MAX_BACKOFF`.
const BASE_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(300);

#[derive(Default)]
struct QueueState {
    ready: VecDeque<String>,
    queued: HashSet<String>,
    delayed: BTreeSet<(Instant, String)>,
    failures: HashMap<String, u32>,
}

/// Keys (`namespace/name`) waiting to be synced; a key queued twice is synced once.
#[derive(Default)]
pub struct WorkQueue {
    state: Mutex<QueueState>,
    wake: Notify,
}

impl WorkQueue {
    fn lock(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn add(&self, key: String) {
        let mut state = self.lock();
        if state.queued.insert(key.clone()) {
            state.ready.push_back(key);
            drop(state);
            self.wake.notify_one();
        }
    }

    pub fn add_after(&self, key: String, delay: Duration) {
        if delay.is_zero() {
            return self.add(key);
        }
        self.lock().delayed.insert((Instant::now() + delay, key));
        self.wake.notify_one();
    }

    /// Queues `key` again after its next backoff delay.
    fn retry(&self, key: String) -> Duration {
        let failures = {
            let mut state = self.lock();
            let count = state.failures.entry(key.clone()).or_insert(0);
            *count = count.saturating_add(1);
            *count
        };
        let delay = BASE_BACKOFF
            .saturating_mul(2u32.saturating_pow(failures.saturating_sub(1).min(20)))
            .min(MAX_BACKOFF);
        self.add_after(key, delay);
        delay
    }

    fn forget(&self, key: &str) {
        self.lock().failures.remove(key);
    }

    async fn next(&self) -> String {
        loop {
            let wait = {
                let mut state = self.lock();
                let now = Instant::now();
                while let Some(first) = state.delayed.first().cloned() {
                    if first.0 > now {
                        break;
                    }
                    state.delayed.pop_first();
                    if state.queued.insert(first.1.clone()) {
                        state.ready.push_back(first.1);
                    }
                }
                if let Some(key) = state.ready.pop_front() {
                    state.queued.remove(&key);
                    return key;
                }
                state
                    .delayed
                    .first()
                    .map_or(Duration::from_secs(60), |(at, _)| {
                        at.saturating_duration_since(now)
                    })
            };
            let _ = tokio::time::timeout(wait, self.wake.notified()).await;
        }
    }
}

/// `namespace/name` of an object.
pub fn key_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    format!(
        "{}/{}",
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default()
    )
}

/// Splits `namespace/name`.
pub fn split_key(key: &str) -> (&str, &str) {
    key.split_once('/').unwrap_or(("", key))
}

/// A cache of `api`'s objects kept current by a watch; `on_change` is called for every object
/// added, changed or removed (after the cache holds the change). The returned future runs
/// the watch and must be spawned.
pub fn informer<K, F>(api: Api<K>, on_change: F) -> (Store<K>, impl Future<Output = ()> + Send)
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
    F: Fn(&K) + Send + 'static,
{
    let (reader, writer) = reflector::store();
    let stream = reflector::reflector(writer, watcher::watcher(api, watcher::Config::default()))
        .default_backoff();
    let run = async move {
        let mut stream = stream.boxed();
        while let Some(event) = stream.next().await {
            match event {
                Ok(Event::Apply(object) | Event::Delete(object) | Event::InitApply(object)) => {
                    on_change(&object)
                }
                Ok(Event::Init | Event::InitDone) => {}
                Err(error) => tracing::warn!(%error, "watch failed; retrying"),
            }
        }
    };
    (reader, run)
}

/// What one sync asks for next.
pub type SyncResult<E> = Result<Option<Duration>, E>;

/// Runs `informers`, waits for `stores` to fill, then syncs queued keys one at a time until
/// `shutdown`: a sync that fails is retried with backoff; one that returns a delay is synced
/// again after it.
pub async fn run_controller<F, Fut, E>(
    name: &'static str,
    queue: Arc<WorkQueue>,
    informers: Vec<futures::future::BoxFuture<'static, ()>>,
    ready: futures::future::BoxFuture<'static, ()>,
    shutdown: CancellationToken,
    sync: F,
) where
    F: Fn(String) -> Fut,
    Fut: Future<Output = SyncResult<E>>,
    E: std::fmt::Display,
{
    let tasks: Vec<_> = informers.into_iter().map(tokio::spawn).collect();
    let work = async {
        ready.await;
        tracing::info!(controller = name, "caches synced");
        loop {
            let key = queue.next().await;
            match sync(key.clone()).await {
                Ok(again) => {
                    queue.forget(&key);
                    if let Some(delay) = again {
                        queue.add_after(key, delay);
                    }
                }
                Err(error) => {
                    let delay = queue.retry(key.clone());
                    tracing::warn!(controller = name, %key, %error, ?delay, "sync failed; retrying");
                }
            }
        }
    };
    tokio::select! {
        () = work => {}
        () = shutdown.cancelled() => {}
    }
    for task in tasks {
        task.abort();
    }
}

/// Waits until every store has its first full list.
pub async fn all_ready(waits: Vec<futures::future::BoxFuture<'static, ()>>) {
    futures::future::join_all(waits).await;
}

/// A future that finishes once `store` has its first list.
pub fn ready_of<K>(store: &Store<K>) -> futures::future::BoxFuture<'static, ()>
where
    K: kube::Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    let store = store.clone();
    Box::pin(async move {
        let _ = store.wait_until_ready().await;
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn duplicate_keys_sync_once_and_delays_wait() {
        let queue = WorkQueue::default();
        queue.add("a/x".into());
        queue.add("a/x".into());
        queue.add_after("a/y".into(), Duration::from_millis(30));
        assert_eq!(queue.next().await, "a/x");
        let started = Instant::now();
        assert_eq!(queue.next().await, "a/y");
        assert!(started.elapsed() >= Duration::from_millis(20));
    }

    #[test]
    fn retries_back_off_exponentially() {
        let queue = WorkQueue::default();
        assert_eq!(queue.retry("k".into()), BASE_BACKOFF);
        assert_eq!(queue.retry("k".into()), BASE_BACKOFF * 2);
        queue.forget("k");
        assert_eq!(queue.retry("k".into()), BASE_BACKOFF);
    }
}
