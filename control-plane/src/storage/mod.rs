//! Storage: an MVCC key-value store with one global revision, watch from a revision and
//! compaction, the only layer that touches the disk or etcd.
//!
//! Two backends behind one enum (no `Box<dyn>`): `Embedded` (redb in the data dir, fsync on
//! commit, concurrent writers group-committed in one transaction) and `Etcd` (etcd v3).
//! Keys are plain strings (`/registry/pods/default/web-0`); values are opaque bytes (the
//! apiserver stores JSON). Revisions start at 1 and grow by one per write, across all keys,
//! as in etcd; an object's resourceVersion is its `mod_revision`.
//!
//! THE CONTRACT (the apiserver codes against exactly this; backends must agree, and one
//! conformance suite runs against both):
//! - `get(key)` -> latest `Some(KeyValue)` or `None`.
//! - `list(prefix, start_after, limit, at_revision)` -> keys under `prefix` in byte order,
//!   strictly after `start_after` when given, at most `limit` items (0 = all), as of
//!   `at_revision` (None = latest); `ListResult.revision` is the revision the list was read at
//!   (so a continue token can pin it) and `more` says whether keys remain. Reading at a
//!   compacted revision is `Error::Compacted`.
//! - `create(key, value)` fails with `AlreadyExists` if the key exists.
//! - `update(key, value, expected_mod_revision)` fails with `NotFound`, or `Conflict` when the
//!   key's current mod_revision differs.
//! - `delete(key, expected_mod_revision)` (None = unconditional) returns the deleted KeyValue
//!   with `mod_revision` set to the revision of the delete.
//! - `watch(prefix, after_revision)` streams every change with revision > `after_revision`, in
//!   revision order, history first, then live; `Error::Compacted` (as the first and only item)
//!   when `after_revision` < the compacted revision. A slow consumer gets an error item and the
//!   stream ends; it never blocks writers.
//! - `compact(revision)` drops history at and below `revision` (the latest value of every live
//!   key is always kept).
//! - `current_revision()`; `count(prefix)`.

mod embedded;
mod etcd;
pub mod latency;

use std::path::Path;

pub use embedded::{EmbeddedOptions, EmbeddedStore};
pub use etcd::EtcdStore;

/// The global, monotonically growing revision (etcd's `revision`).
pub type Revision = i64;

/// One key at one revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    /// Revision of the write that created the key (its current incarnation).
    pub create_revision: Revision,
    /// Revision of the last write (or of the delete, for a deleted key in a watch event).
    pub mod_revision: Revision,
}

/// What a write did to a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

/// One change seen by a watch. For `Delete`, `kv.value` is the value that was deleted and
/// `kv.mod_revision` the revision of the delete; `prev` is the value before the change
/// (None for a create).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchEvent {
    pub kind: EventKind,
    pub kv: KeyValue,
    pub prev: Option<KeyValue>,
}

/// A page of a list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListResult {
    pub items: Vec<KeyValue>,
    /// The revision the list was read at.
    pub revision: Revision,
    /// True when keys after the last item remain.
    pub more: bool,
}

/// A stream of watch events; dropping it cancels the watch.
pub type WatchStream = tokio::sync::mpsc::Receiver<Result<WatchEvent>>;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("key {key} not found")]
    NotFound { key: String },
    #[error("key {key} already exists")]
    AlreadyExists { key: String },
    #[error("key {key} was modified: expected revision {expected}, found {actual}")]
    Conflict {
        key: String,
        expected: Revision,
        actual: Revision,
    },
    #[error("revision {requested} has been compacted (compacted up to {compacted})")]
    Compacted {
        requested: Revision,
        compacted: Revision,
    },
    #[error("revision {requested} is in the future (current {current})")]
    FutureRevision {
        requested: Revision,
        current: Revision,
    },
    #[error("watch consumer fell too far behind")]
    WatchLagged,
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    #[error("storage corrupt: {0}")]
    Corrupt(String),
    #[error("storage I/O on {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

impl Error {
    /// True for errors that a retry may cure (etcd unreachable, leader change).
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Unavailable(_))
    }
}

/// The store, dispatched by backend. Cheap to clone (each backend is a handle).
#[derive(Clone)]
pub enum Store {
    Embedded(EmbeddedStore),
    Etcd(EtcdStore),
}

/// Runs the operation on the backend and records its latency (`latency::operation_latency`).
macro_rules! dispatch {
    ($operation:ident, $self:ident, $s:ident => $e:expr) => {{
        let started = std::time::Instant::now();
        let result = match $self {
            Store::Embedded($s) => $e,
            Store::Etcd($s) => $e,
        };
        latency::operation_latency(latency::Operation::$operation).observe(started.elapsed());
        result
    }};
}

impl Store {
    /// Opens (creating when missing) the embedded store under `dir`.
    pub async fn open_embedded(dir: &Path) -> Result<Store> {
        Ok(Store::Embedded(EmbeddedStore::open(dir).await?))
    }

    /// Connects to etcd; every key is stored under `prefix` (e.g. "" or "/keel").
    pub async fn connect_etcd(endpoints: &[String], prefix: &str) -> Result<Store> {
        Ok(Store::Etcd(EtcdStore::connect(endpoints, prefix).await?))
    }

    pub async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        dispatch!(Get, self, s => s.get(key).await)
    }

    pub async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        at_revision: Option<Revision>,
    ) -> Result<ListResult> {
        dispatch!(List, self, s => s.list(prefix, start_after, limit, at_revision).await)
    }

    pub async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue> {
        dispatch!(Create, self, s => s.create(key, value).await)
    }

    pub async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected_mod_revision: Revision,
    ) -> Result<KeyValue> {
        dispatch!(Update, self, s => s.update(key, value, expected_mod_revision).await)
    }

    pub async fn delete(
        &self,
        key: &str,
        expected_mod_revision: Option<Revision>,
    ) -> Result<KeyValue> {
        dispatch!(Delete, self, s => s.delete(key, expected_mod_revision).await)
    }

    pub async fn watch(&self, prefix: &str, after_revision: Revision) -> Result<WatchStream> {
        dispatch!(Watch, self, s => s.watch(prefix, after_revision).await)
    }

    pub async fn compact(&self, revision: Revision) -> Result<()> {
        dispatch!(Compact, self, s => s.compact(revision).await)
    }

    pub async fn current_revision(&self) -> Result<Revision> {
        dispatch!(CurrentRevision, self, s => s.current_revision().await)
    }

    pub async fn count(&self, prefix: &str) -> Result<u64> {
        dispatch!(Count, self, s => s.count(prefix).await)
    }
}
