//! Watches on etcd: one task per stream that follows an etcd watch from a revision, maps its
//! events onto the contract (a delete carries the deleted value), reports compaction, and
//! reconnects from the last delivered revision when the member serving it is lost.

use std::time::{Duration, Instant};

use etcd_client::{EventType, WatchOptions};
use tokio::sync::mpsc;

use super::{EtcdStore, prefix_end, range_start};
use crate::storage::{Error, EventKind, KeyValue, Result, Revision, WatchEvent, WatchStream};

/// How long a watch keeps trying to reconnect without delivering anything.
const WATCH_RECONNECT_FOR: Duration = Duration::from_secs(30);
/// Events buffered in each stream before the task waits for its consumer.
const WATCH_BUFFER: usize = 256;

/// Starts a watch of keys starting with `full_prefix` (store prefix included) after `after`.
pub(super) fn spawn(store: EtcdStore, full_prefix: Vec<u8>, after: Revision) -> WatchStream {
    let (tx, rx) = mpsc::channel(WATCH_BUFFER);
    tokio::spawn(
        Watcher {
            store,
            full_prefix,
            after,
            tx,
        }
        .run(),
    );
    rx
}

/// The task behind one etcd watch stream.
struct Watcher {
    store: EtcdStore,
    full_prefix: Vec<u8>,
    after: Revision,
    tx: mpsc::Sender<Result<WatchEvent>>,
}

/// How one etcd watch connection ended.
enum WatchEnd {
    /// The consumer went away or the watch failed for good (already reported).
    Finished,
    /// The connection broke; `delivered` says whether it got anything through.
    Broken { delivered: bool, reason: String },
}

impl Watcher {
    async fn run(mut self) {
        let mut trying_since = Instant::now();
        loop {
            match self.follow().await {
                WatchEnd::Finished => return,
                WatchEnd::Broken { delivered, reason } => {
                    if delivered {
                        trying_since = Instant::now();
                    }
                    if trying_since.elapsed() > WATCH_RECONNECT_FOR {
                        let _ = self
                            .tx
                            .send(Err(Error::Unavailable(format!(
                                "etcd watch lost: {reason}"
                            ))))
                            .await;
                        return;
                    }
                    tracing::debug!(%reason, after = self.after, "etcd watch broke, reconnecting");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }

    /// Opens one etcd watch from `after + 1` and forwards it until it ends.
    async fn follow(&mut self) -> WatchEnd {
        let options = WatchOptions::new()
            .with_range(prefix_end(&self.full_prefix))
            .with_start_revision(self.after + 1)
            .with_prev_key();
        let mut watch_client = self.store.client.watch_client();
        let opened = tokio::select! {
            _ = self.tx.closed() => return WatchEnd::Finished,
            opened = watch_client.watch(range_start(&self.full_prefix), Some(options)) => opened,
        };
        let mut stream = match opened {
            Ok(stream) => stream,
            Err(e) => {
                return WatchEnd::Broken {
                    delivered: false,
                    reason: e.to_string(),
                };
            }
        };
        let mut delivered = false;
        loop {
            let message = tokio::select! {
                _ = self.tx.closed() => return WatchEnd::Finished,
                message = stream.message() => message,
            };
            let resp = match message {
                Ok(Some(resp)) => resp,
                Ok(None) => {
                    return WatchEnd::Broken {
                        delivered,
                        reason: "stream ended".into(),
                    };
                }
                Err(e) => {
                    return WatchEnd::Broken {
                        delivered,
                        reason: e.to_string(),
                    };
                }
            };
            if resp.compact_revision() > 0 {
                let compacted = Error::Compacted {
                    requested: self.after,
                    compacted: resp.compact_revision(),
                };
                let _ = self.tx.send(Err(compacted)).await;
                return WatchEnd::Finished;
            }
            if resp.canceled() {
                return WatchEnd::Broken {
                    delivered,
                    reason: format!("canceled: {}", resp.cancel_reason()),
                };
            }
            for event in resp.events() {
                let event = match self.to_watch_event(event) {
                    Ok(event) => event,
                    Err(e) => {
                        let _ = self.tx.send(Err(e)).await;
                        return WatchEnd::Finished;
                    }
                };
                let revision = event.kv.mod_revision;
                if self.tx.send(Ok(event)).await.is_err() {
                    return WatchEnd::Finished;
                }
                self.after = revision;
                delivered = true;
            }
        }
    }

    fn to_watch_event(&self, event: &etcd_client::Event) -> Result<WatchEvent> {
        let kv = event
            .kv()
            .cloned()
            .ok_or_else(|| Error::Corrupt("etcd watch event without a key".into()))?;
        let kv = self.store.to_key_value(kv)?;
        let prev = event
            .prev_kv()
            .cloned()
            .map(|p| self.store.to_key_value(p))
            .transpose()?;
        Ok(match event.event_type() {
            EventType::Put => WatchEvent {
                kind: EventKind::Put,
                kv,
                prev,
            },
            EventType::Delete => {
                let deleted = match &prev {
                    Some(p) => KeyValue {
                        mod_revision: kv.mod_revision,
                        ..p.clone()
                    },
                    None => kv,
                };
                WatchEvent {
                    kind: EventKind::Delete,
                    kv: deleted,
                    prev,
                }
            }
        })
    }
}
