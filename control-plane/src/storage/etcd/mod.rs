//! The etcd v3 backend: maps the storage contract onto etcd ranges, transactions, watches and
//! compaction, with every key stored under a fixed prefix. Requests that fail for transient
//! reasons (a member down, a leader change) are retried for a bounded time, and watches
//! reconnect from the last revision they delivered, so the store keeps working while one member
//! of a cluster is lost.
//!
//! etcd transactions are not idempotent: a create whose answer was lost after etcd applied it
//! is recognised on retry (the key holds exactly the value written, never modified) and
//! succeeds; an update or delete in the same situation fails with `Conflict` or `NotFound`.

mod failure;
mod watch;

use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions, PutOptions, Txn, TxnOp,
    TxnOpResponse, TxnResponse, WatchOptions,
};

use self::failure::{Failure, classify, failure_error};
use crate::storage::{Error, KeyValue, ListResult, Result, Revision, WatchStream};

/// How long one request may take before it is retried: short, because a request caught by the
/// loss of the leader otherwise waits for etcd's own, much longer, request timeout.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a request keeps being retried while etcd is unavailable.
const RETRY_FOR: Duration = Duration::from_secs(15);
/// Largest list answer accepted from etcd: a whole-store list (the watch cache's) is far above
/// gRPC's 4 MiB default.
const MAX_LIST_RESPONSE_BYTES: usize = 1 << 30;

/// A handle on an etcd cluster; clones share the connections.
#[derive(Clone)]
pub struct EtcdStore {
    client: Client,
    prefix: String,
}

impl EtcdStore {
    /// Connects to the cluster at `endpoints` (all members, for failover); keys live under
    /// `prefix`. Fails with `Unavailable` when no member answers within the retry time.
    pub async fn connect(endpoints: &[String], prefix: &str) -> Result<EtcdStore> {
        let options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(2))
            .with_timeout(REQUEST_TIMEOUT)
            .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2));
        let client = Client::connect(endpoints, Some(options))
            .await
            .map_err(|e| {
                Error::Unavailable(format!(
                    "connecting to etcd at {}: {e}",
                    endpoints.join(",")
                ))
            })?;
        let store = EtcdStore {
            client,
            prefix: prefix.to_string(),
        };
        store.current_revision().await?;
        Ok(store)
    }

    pub async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let full = self.full_key(key);
        let mut resp = self
            .retry("get", || {
                let mut kv = self.client.kv_client();
                let full = full.clone();
                async move { kv.get(full, None).await }
            })
            .await
            .map_err(|f| failure_error("get", f))?;
        resp.take_kvs()
            .into_iter()
            .next()
            .map(|kv| self.to_key_value(kv))
            .transpose()
    }

    pub async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        at_revision: Option<Revision>,
    ) -> Result<ListResult> {
        let at = at_revision.filter(|at| *at > 0);
        let full_prefix = self.full_key(prefix);
        let start = match start_after {
            Some(after) if after >= prefix => [self.full_key(after), vec![0]].concat(),
            _ => range_start(&full_prefix),
        };
        let mut options = GetOptions::new().with_range(prefix_end(&full_prefix));
        if limit > 0 {
            options = options.with_limit(
                i64::try_from(limit)
                    .unwrap_or(i64::MAX - 1)
                    .saturating_add(1),
            );
        }
        if let Some(at) = at {
            options = options.with_revision(at);
        }
        let result = self
            .retry("list", || {
                // A whole-store list (the watch cache's) can be far above gRPC's 4 MiB default.
                let mut kv = self
                    .client
                    .kv_client()
                    .max_decoding_message_size(MAX_LIST_RESPONSE_BYTES);
                let (start, options) = (start.clone(), options.clone());
                async move { kv.get(start, Some(options)).await }
            })
            .await;
        let mut resp = match result {
            Ok(resp) => resp,
            Err(failure) => {
                return Err(self.revision_error("list", failure, at.unwrap_or(0)).await);
            }
        };
        let revision = match at {
            Some(at) => at,
            None => header_revision(resp.header())?,
        };
        let mut items = resp
            .take_kvs()
            .into_iter()
            .map(|kv| self.to_key_value(kv))
            .collect::<Result<Vec<_>>>()?;
        let more = limit > 0 && items.len() > limit;
        items.truncate(if limit > 0 { limit } else { items.len() });
        Ok(ListResult {
            items,
            revision,
            more,
        })
    }

    pub async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue> {
        let full = self.full_key(key);
        let attempts = AtomicU32::new(0);
        let resp = self
            .txn("create", || {
                attempts.fetch_add(1, Ordering::Relaxed);
                Txn::new()
                    .when([Compare::create_revision(full.clone(), CompareOp::Equal, 0)])
                    .and_then([TxnOp::put(full.clone(), value.clone(), None)])
                    .or_else([TxnOp::get(full.clone(), None)])
            })
            .await?;
        if !resp.succeeded() {
            return match self.existing(&resp)? {
                // A retried create whose first attempt was applied but whose answer was lost.
                Some(kv) if attempts.load(Ordering::Relaxed) > 1 && is_own_create(&kv, &value) => {
                    Ok(kv)
                }
                _ => Err(Error::AlreadyExists {
                    key: key.to_string(),
                }),
            };
        }
        let revision = header_revision(resp.header())?;
        Ok(KeyValue {
            key: key.to_string(),
            value,
            create_revision: revision,
            mod_revision: revision,
        })
    }

    pub async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected_mod_revision: Revision,
    ) -> Result<KeyValue> {
        let full = self.full_key(key);
        let resp = self
            .txn("update", || {
                Txn::new()
                    .when([
                        Compare::version(full.clone(), CompareOp::Greater, 0),
                        Compare::mod_revision(
                            full.clone(),
                            CompareOp::Equal,
                            expected_mod_revision,
                        ),
                    ])
                    .and_then([TxnOp::put(
                        full.clone(),
                        value.clone(),
                        Some(PutOptions::new().with_prev_key()),
                    )])
                    .or_else([TxnOp::get(full.clone(), None)])
            })
            .await?;
        if !resp.succeeded() {
            return Err(self.condition_failure(key, expected_mod_revision, &resp));
        }
        let revision = header_revision(resp.header())?;
        let create_revision = match resp.op_responses().into_iter().next() {
            Some(TxnOpResponse::Put(put)) => put.prev_key().map(|p| p.create_revision()),
            _ => None,
        }
        .ok_or_else(|| {
            Error::Corrupt(format!(
                "etcd update of {key}: no previous value in the answer"
            ))
        })?;
        Ok(KeyValue {
            key: key.to_string(),
            value,
            create_revision,
            mod_revision: revision,
        })
    }

    pub async fn delete(
        &self,
        key: &str,
        expected_mod_revision: Option<Revision>,
    ) -> Result<KeyValue> {
        let full = self.full_key(key);
        let resp = self
            .txn("delete", || {
                let mut compares = vec![Compare::version(full.clone(), CompareOp::Greater, 0)];
                if let Some(expected) = expected_mod_revision {
                    compares.push(Compare::mod_revision(
                        full.clone(),
                        CompareOp::Equal,
                        expected,
                    ));
                }
                Txn::new()
                    .when(compares)
                    .and_then([TxnOp::delete(
                        full.clone(),
                        Some(DeleteOptions::new().with_prev_key()),
                    )])
                    .or_else([TxnOp::get(full.clone(), None)])
            })
            .await?;
        if !resp.succeeded() {
            return Err(self.condition_failure(key, expected_mod_revision.unwrap_or(0), &resp));
        }
        let revision = header_revision(resp.header())?;
        let deleted = match resp.op_responses().into_iter().next() {
            Some(TxnOpResponse::Delete(mut delete)) => delete.take_prev_kvs().into_iter().next(),
            _ => None,
        }
        .ok_or_else(|| {
            Error::Corrupt(format!(
                "etcd delete of {key}: no deleted value in the answer"
            ))
        })?;
        let deleted = self.to_key_value(deleted)?;
        Ok(KeyValue {
            mod_revision: revision,
            ..deleted
        })
    }

    /// Streams changes under `prefix` after `after_revision`; reconnects (from the last
    /// delivered revision) when the member serving it is lost.
    pub async fn watch(&self, prefix: &str, after_revision: Revision) -> Result<WatchStream> {
        Ok(watch::spawn(
            self.clone(),
            self.full_key(prefix),
            after_revision,
        ))
    }

    /// Compacts history at and below `revision`; compacting an already compacted revision is a
    /// no-op.
    pub async fn compact(&self, revision: Revision) -> Result<()> {
        let result = self
            .retry("compact", || {
                let mut kv = self.client.kv_client();
                async move { kv.compact(revision, None).await }
            })
            .await;
        match result {
            Ok(_) | Err(Failure::Compacted) => Ok(()),
            Err(failure) => Err(self.revision_error("compact", failure, revision).await),
        }
    }

    pub async fn current_revision(&self) -> Result<Revision> {
        let key = range_start(&self.full_key(""));
        let resp = self
            .retry("read the revision", || {
                let mut kv = self.client.kv_client();
                let key = key.clone();
                async move { kv.get(key, Some(GetOptions::new().with_count_only())).await }
            })
            .await
            .map_err(|f| failure_error("read the revision", f))?;
        header_revision(resp.header())
    }

    pub async fn count(&self, prefix: &str) -> Result<u64> {
        let full_prefix = self.full_key(prefix);
        let start = range_start(&full_prefix);
        let options = GetOptions::new()
            .with_range(prefix_end(&full_prefix))
            .with_count_only();
        let resp = self
            .retry("count", || {
                let mut kv = self.client.kv_client();
                let (start, options) = (start.clone(), options.clone());
                async move { kv.get(start, Some(options)).await }
            })
            .await
            .map_err(|f| failure_error("count", f))?;
        u64::try_from(resp.count())
            .map_err(|_| Error::Corrupt(format!("etcd count of {prefix}: negative count")))
    }

    fn full_key(&self, key: &str) -> Vec<u8> {
        [self.prefix.as_bytes(), key.as_bytes()].concat()
    }

    fn to_key_value(&self, kv: etcd_client::KeyValue) -> Result<KeyValue> {
        let (create_revision, mod_revision) = (kv.create_revision(), kv.mod_revision());
        let (key, value) = kv.into_key_value();
        Ok(KeyValue {
            key: strip_prefix(&self.prefix, key)?,
            value,
            create_revision,
            mod_revision,
        })
    }

    /// The key as read by the `get` in a failed transaction's else branch.
    fn existing(&self, resp: &TxnResponse) -> Result<Option<KeyValue>> {
        match resp.op_responses().into_iter().next() {
            Some(TxnOpResponse::Get(mut get)) => get
                .take_kvs()
                .into_iter()
                .next()
                .map(|kv| self.to_key_value(kv))
                .transpose(),
            _ => Err(Error::Corrupt(
                "etcd transaction answer without the key's state".into(),
            )),
        }
    }

    /// Why a conditional update/delete failed, from the `get` run in its else branch.
    fn condition_failure(&self, key: &str, expected: Revision, resp: &TxnResponse) -> Error {
        match self.existing(resp) {
            Ok(None) => Error::NotFound {
                key: key.to_string(),
            },
            Ok(Some(current)) => Error::Conflict {
                key: key.to_string(),
                expected,
                actual: current.mod_revision,
            },
            Err(e) => e,
        }
    }

    async fn txn(&self, what: &'static str, build: impl Fn() -> Txn) -> Result<TxnResponse> {
        self.retry(what, || {
            let mut kv = self.client.kv_client();
            let txn = build();
            async move { kv.txn(txn).await }
        })
        .await
        .map_err(|f| failure_error(what, f))
    }

    /// Runs `request` until it succeeds, fails for good, or `RETRY_FOR` has passed.
    async fn retry<T, F, Fut>(&self, what: &str, mut request: F) -> std::result::Result<T, Failure>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = std::result::Result<T, etcd_client::Error>>,
    {
        let deadline = Instant::now() + RETRY_FOR;
        let mut pause = Duration::from_millis(50);
        loop {
            match request().await.map_err(classify) {
                Err(Failure::Transient(reason)) if Instant::now() < deadline => {
                    tracing::debug!(what, %reason, "etcd request failed, retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
                other => return other,
            }
        }
    }

    /// The error for a failed read or compaction at `requested`.
    async fn revision_error(&self, what: &str, failure: Failure, requested: Revision) -> Error {
        match failure {
            Failure::Compacted => {
                let compacted = self.compacted_revision().await.unwrap_or(requested);
                Error::Compacted {
                    requested,
                    compacted,
                }
            }
            Failure::FutureRevision => {
                let current = self.current_revision().await.unwrap_or(0);
                Error::FutureRevision { requested, current }
            }
            other => failure_error(what, other),
        }
    }

    /// The revision etcd has compacted to: a watch from revision 1 is refused with it.
    async fn compacted_revision(&self) -> Option<Revision> {
        let mut watch_client = self.client.watch_client();
        let options = WatchOptions::new().with_start_revision(1);
        let probe = async move {
            let mut stream = watch_client
                .watch(range_start(&self.full_key("")), Some(options))
                .await
                .ok()?;
            loop {
                let resp = stream.message().await.ok()??;
                if resp.compact_revision() > 0 {
                    return Some(resp.compact_revision());
                }
                if !resp.events().is_empty() || resp.canceled() {
                    return Some(0);
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(2), probe)
            .await
            .ok()
            .flatten()
    }
}

/// True when `existing` is what a create of `value` would have written (same bytes, never
/// modified since).
fn is_own_create(existing: &KeyValue, value: &[u8]) -> bool {
    existing.value == value && existing.create_revision == existing.mod_revision
}

fn header_revision(header: Option<&etcd_client::ResponseHeader>) -> Result<Revision> {
    header
        .map(|h| h.revision())
        .ok_or_else(|| Error::Corrupt("etcd answer without a header".into()))
}

/// The first key of a range over `full_prefix` (etcd refuses an empty key).
fn range_start(full_prefix: &[u8]) -> Vec<u8> {
    if full_prefix.is_empty() {
        vec![0]
    } else {
        full_prefix.to_vec()
    }
}

/// The end (exclusive) of the range of keys starting with `prefix`; `[0]` means "to the end of
/// the keyspace" to etcd.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

fn strip_prefix(prefix: &str, key: Vec<u8>) -> Result<String> {
    let stripped = key.strip_prefix(prefix.as_bytes()).ok_or_else(|| {
        Error::Corrupt(format!(
            "etcd key {} is outside prefix {prefix}",
            String::from_utf8_lossy(&key)
        ))
    })?;
    String::from_utf8(stripped.to_vec()).map_err(|_| {
        Error::Corrupt(format!(
            "etcd key {} is not utf-8",
            String::from_utf8_lossy(&key)
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_the_last_byte_below_ff() {
        assert_eq!(prefix_end(b"/a/"), b"/a0".to_vec());
        assert_eq!(prefix_end(&[b'a', 0xff, 0xff]), b"b".to_vec());
        assert_eq!(prefix_end(&[0xff]), vec![0]);
        assert_eq!(prefix_end(b""), vec![0]);
    }

    #[test]
    fn range_start_is_never_empty() {
        assert_eq!(range_start(b""), vec![0]);
        assert_eq!(range_start(b"/k"), b"/k".to_vec());
    }

    #[test]
    fn keys_outside_the_prefix_or_not_utf8_are_corrupt() {
        assert_eq!(
            strip_prefix("/keel", b"/keel/a".to_vec()).ok(),
            Some("/a".to_string())
        );
        assert!(matches!(
            strip_prefix("/keel", b"/other".to_vec()),
            Err(Error::Corrupt(_))
        ));
        assert!(matches!(
            strip_prefix("", vec![0xff]),
            Err(Error::Corrupt(_))
        ));
    }

    #[test]
    fn a_create_is_recognised_only_if_untouched_since() {
        let kv = KeyValue {
            key: "/a".into(),
            value: b"v".to_vec(),
            create_revision: 4,
            mod_revision: 4,
        };
        assert!(is_own_create(&kv, b"v"));
        assert!(!is_own_create(&kv, b"w"));
        assert!(!is_own_create(
            &KeyValue {
                mod_revision: 5,
                ..kv
            },
            b"v"
        ));
    }
}
