//! The watch cache: every object of the store decoded once and kept in memory, fed by one
//! storage watch, with a window of recent events so that watchers resume from a
//! resourceVersion without touching storage. Lists without a continue token and every watch
//! are served from here; a thousand watchers share one storage watch, and each event is
//! serialized once for all of them.
//!
//! ```text
//!   storage.watch("/registry/") ──> feeder task ──(write lock)──> objects + history
//!                                                  └──(broadcast)──> Subscription × N
//! ```
//! Invariant: the feeder applies an event and broadcasts it under the same write lock, and a
//! subscriber takes its snapshot and its broadcast receiver under the read lock, so a watcher
//! sees every event after its snapshot exactly once. When the storage watch fails (compaction,
//! lag) the cache relists, forgets its history and closes every subscription; clients re-watch
//! and get 410 Gone if their resourceVersion is older than what the cache still holds.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

use super::objects::{self, REGISTRY_PREFIX};
use crate::storage::{self, EventKind, Revision, Store};

/// How many past events the cache keeps for watchers resuming from an old resourceVersion.
const HISTORY_CAPACITY: usize = 100_000;
/// How many events a subscriber may fall behind before its watch is closed.
const BROADCAST_CAPACITY: usize = 16_384;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change, decoded once and shared by every watcher.
#[derive(Debug)]
pub struct CachedEvent {
    pub event_type: EventType,
    pub key: String,
    /// The object after the change (for Deleted: the last state, stamped with the delete's revision).
    pub object: Arc<Value>,
    /// The object before the change (None for Added).
    pub prev: Option<Arc<Value>>,
    pub revision: Revision,
    wire: OnceLock<Bytes>,
}

impl CachedEvent {
    fn new(
        event_type: EventType,
        key: String,
        object: Arc<Value>,
        prev: Option<Arc<Value>>,
        revision: Revision,
    ) -> Self {
        CachedEvent {
            event_type,
            key,
            object,
            prev,
            revision,
            wire: OnceLock::new(),
        }
    }

    /// The watch event as one JSON line: `{"type":"ADDED","object":{...}}\n`, built once.
    pub fn wire_json(&self) -> &Bytes {
        self.wire.get_or_init(|| {
            let event = json!({"type": self.event_type.as_str(), "object": &*self.object});
            let mut line = serde_json::to_vec(&event).unwrap_or_default();
            line.push(b'\n');
            Bytes::from(line)
        })
    }
}

/// What a new watcher starts from.
pub struct Subscription {
    /// Events to send first: the history after the requested revision, or synthetic ADDED
    /// events for every current object when no revision was given.
    pub initial: Vec<Arc<CachedEvent>>,
    /// Live events; those with revision <= `after` were already covered by `initial`.
    pub live: broadcast::Receiver<Arc<CachedEvent>>,
    pub after: Revision,
}

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("too old resource version: {requested} ({oldest})")]
    TooOld {
        requested: Revision,
        oldest: Revision,
    },
    #[error(transparent)]
    Storage(#[from] storage::Error),
}

struct State {
    objects: BTreeMap<String, Arc<Value>>,
    history: VecDeque<Arc<CachedEvent>>,
    /// Every event with a revision above this is in `history`.
    history_floor: Revision,
    revision: Revision,
    events: broadcast::Sender<Arc<CachedEvent>>,
}

struct Inner {
    state: RwLock<State>,
    progress: watch::Sender<Revision>,
}

/// A handle on the cache; cheap to clone.
#[derive(Clone)]
pub struct WatchCache {
    inner: Arc<Inner>,
}

impl WatchCache {
    /// Lists the whole store and starts the feeder, which runs until `cancel`.
    pub async fn start(
        store: Store,
        cancel: CancellationToken,
    ) -> Result<WatchCache, storage::Error> {
        let (objects, revision) = load(&store).await?;
        let (events, _) = broadcast::channel(BROADCAST_CAPACITY);
        let state = State {
            objects,
            history: VecDeque::new(),
            history_floor: revision,
            revision,
            events,
        };
        let (progress, _) = watch::channel(revision);
        let cache = WatchCache {
            inner: Arc::new(Inner {
                state: RwLock::new(state),
                progress,
            }),
        };
        tokio::spawn(cache.clone().feed(store, cancel));
        Ok(cache)
    }

    /// The revision the cache has caught up to.
    pub fn revision(&self) -> Revision {
        *self.inner.progress.borrow()
    }

    /// Waits until the cache has seen `revision`; false on timeout.
    pub async fn wait_for(&self, revision: Revision, timeout: Duration) -> bool {
        let mut progress = self.inner.progress.subscribe();
        tokio::time::timeout(timeout, progress.wait_for(|seen| *seen >= revision))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    pub fn get(&self, key: &str) -> Option<Arc<Value>> {
        self.read().objects.get(key).cloned()
    }

    /// Calls `f` with every key, in order (for counting; `f` runs under the read lock).
    pub fn for_each_key(&self, mut f: impl FnMut(&str)) {
        for key in self.read().objects.keys() {
            f(key);
        }
    }

    /// A cache with no objects and no feeder, for unit tests of its readers.
    #[cfg(test)]
    pub fn empty_for_tests() -> WatchCache {
        let (events, _) = broadcast::channel(1);
        let (progress, _) = watch::channel(0);
        WatchCache {
            inner: Arc::new(Inner {
                state: RwLock::new(State {
                    objects: BTreeMap::new(),
                    history: VecDeque::new(),
                    history_floor: 0,
                    revision: 0,
                    events,
                }),
                progress,
            }),
        }
    }

    /// Every object under `prefix`, in key order, and the revision of the snapshot.
    pub fn list(&self, prefix: &str) -> (Vec<Arc<Value>>, Revision) {
        let state = self.read();
        let items = state
            .objects
            .range(prefix.to_string()..)
            .take_while(|(key, _)| key.starts_with(prefix))
            .map(|(_, object)| object.clone())
            .collect();
        (items, state.revision)
    }

    /// Starts a watch of `prefix`. `from` None: the current objects as ADDED events, then changes.
    /// `from` Some(rv): every change after rv (410 when rv is older than the kept history).
    pub fn subscribe(
        &self,
        prefix: &str,
        from: Option<Revision>,
    ) -> Result<Subscription, CacheError> {
        let state = self.read();
        let live = state.events.subscribe();
        let initial = match from {
            None => state
                .objects
                .range(prefix.to_string()..)
                .take_while(|(key, _)| key.starts_with(prefix))
                .map(|(key, object)| {
                    let revision = objects::resource_version(object)
                        .ok()
                        .flatten()
                        .unwrap_or(0);
                    Arc::new(CachedEvent::new(
                        EventType::Added,
                        key.clone(),
                        object.clone(),
                        None,
                        revision,
                    ))
                })
                .collect(),
            Some(requested) if requested < state.history_floor => {
                return Err(CacheError::TooOld {
                    requested,
                    oldest: state.history_floor,
                });
            }
            Some(requested) => {
                let start = state.history.partition_point(|e| e.revision <= requested);
                state
                    .history
                    .range(start..)
                    .filter(|e| e.key.starts_with(prefix))
                    .cloned()
                    .collect()
            }
        };
        let after = from.map_or(state.revision, |requested| requested.max(state.revision));
        Ok(Subscription {
            initial,
            live,
            after,
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.inner
            .state
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.inner
            .state
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    async fn feed(self, store: Store, cancel: CancellationToken) {
        let mut from = self.revision();
        loop {
            let outcome = tokio::select! {
                _ = cancel.cancelled() => return,
                outcome = self.follow(&store, from) => outcome,
            };
            tracing::warn!(error = %outcome, "watch cache lost its storage watch; relisting");
            loop {
                match load(&store).await {
                    Ok((objects, revision)) => {
                        self.reset(objects, revision);
                        from = revision;
                        break;
                    }
                    Err(error) => {
                        tracing::warn!(%error, "watch cache relist failed; retrying");
                        tokio::select! {
                            _ = cancel.cancelled() => return,
                            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        }
                    }
                }
            }
        }
    }

    /// Applies storage events until the watch fails; returns why it ended.
    async fn follow(&self, store: &Store, from: Revision) -> storage::Error {
        let mut stream = match store.watch(REGISTRY_PREFIX, from).await {
            Ok(stream) => stream,
            Err(error) => return error,
        };
        loop {
            match stream.recv().await {
                Some(Ok(event)) => self.apply(event),
                Some(Err(error)) => return error,
                None => return storage::Error::Unavailable("storage watch ended".into()),
            }
        }
    }

    fn apply(&self, event: storage::WatchEvent) {
        let revision = event.kv.mod_revision;
        let object = match objects::decode(&event.kv) {
            Ok(object) => Arc::new(object),
            Err(error) => {
                tracing::error!(key = %event.kv.key, %error, "undecodable object in storage; skipped");
                return;
            }
        };
        let mut state = self.write();
        let prev = match event.kind {
            EventKind::Put => state.objects.insert(event.kv.key.clone(), object.clone()),
            EventKind::Delete => state.objects.remove(&event.kv.key),
        };
        let event_type = match (event.kind, &prev) {
            (EventKind::Delete, _) => EventType::Deleted,
            (EventKind::Put, None) => EventType::Added,
            (EventKind::Put, Some(_)) => EventType::Modified,
        };
        let cached = Arc::new(CachedEvent::new(
            event_type,
            event.kv.key,
            object,
            prev,
            revision,
        ));
        if state.history.len() == HISTORY_CAPACITY
            && let Some(dropped) = state.history.pop_front()
        {
            state.history_floor = dropped.revision;
        }
        state.history.push_back(cached.clone());
        state.revision = revision;
        let _ = state.events.send(cached);
        drop(state);
        self.inner.progress.send_replace(revision);
    }

    /// Replaces the contents after a relist; every open subscription ends.
    fn reset(&self, objects: BTreeMap<String, Arc<Value>>, revision: Revision) {
        let mut state = self.write();
        state.objects = objects;
        state.history.clear();
        state.history_floor = revision;
        state.revision = revision;
        state.events = broadcast::channel(BROADCAST_CAPACITY).0;
        drop(state);
        self.inner.progress.send_replace(revision);
    }
}

async fn load(store: &Store) -> Result<(BTreeMap<String, Arc<Value>>, Revision), storage::Error> {
    let listed = store.list(REGISTRY_PREFIX, None, 0, None).await?;
    let mut objects = BTreeMap::new();
    for kv in &listed.items {
        match objects::decode(kv) {
            Ok(object) => {
                objects.insert(kv.key.clone(), Arc::new(object));
            }
            Err(error) => {
                tracing::error!(key = %kv.key, %error, "undecodable object in storage; skipped")
            }
        }
    }
    Ok((objects, listed.revision))
}
