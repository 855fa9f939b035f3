//! Watch fan-out for the embedded store: each watch is a task that replays the log after its
//! start revision (in chunks, each from one snapshot), then forwards the writer's committed
//! batches, filtered by prefix, without gaps or duplicates: it subscribes before reading history
//! and skips live records it already replayed. A watcher whose consumer falls behind the
//! broadcast gets `WatchLagged` and ends; writers never wait for watchers.

use tokio::sync::{broadcast, mpsc};

use super::EmbeddedStore;
use super::schema::LogRecord;
use super::writer::CommittedBatch;
use crate::storage::{Error, Result, Revision, WatchEvent, WatchStream};

/// Log records read per snapshot while replaying history.
pub(crate) const REPLAY_CHUNK: usize = 1024;

/// What a watch asks for.
pub(crate) struct Watch {
    pub prefix: String,
    pub after: Revision,
    /// Capacity of the stream handed to the consumer.
    pub buffer: usize,
}

/// A chunk of history read from one snapshot.
pub(crate) struct Replay {
    /// Records after the requested revision, oldest first.
    pub records: Vec<LogRecord>,
    /// The revision of the snapshot.
    pub read_at: Revision,
    /// True when the chunk reaches `read_at` (nothing more to replay from this snapshot).
    pub complete: bool,
}

/// A stream whose only item is `err`.
pub(crate) fn failed_stream(err: Error) -> WatchStream {
    let (tx, rx) = mpsc::channel(1);
    // The receiver is alive and the buffer empty: this cannot fail.
    let _ = tx.try_send(Err(err));
    rx
}

/// Spawns the task that feeds a watch stream, starting with the already read `first` chunk.
/// `store` is held only while history is replayed.
pub(crate) fn spawn(
    watch: Watch,
    first: Replay,
    store: EmbeddedStore,
    live: broadcast::Receiver<CommittedBatch>,
) -> WatchStream {
    let (tx, rx) = mpsc::channel(watch.buffer.max(1));
    tokio::spawn(async move {
        if let Some(seen) = replay(&watch, first, store, &tx).await {
            forward_live(&watch, seen, live, &tx).await;
        }
    });
    rx
}

/// Sends history chunk by chunk; returns the revision everything up to which was delivered,
/// or None when the watch is over.
async fn replay(
    watch: &Watch,
    mut chunk: Replay,
    store: EmbeddedStore,
    tx: &mpsc::Sender<Result<WatchEvent>>,
) -> Option<Revision> {
    let mut seen = watch.after;
    loop {
        for record in &chunk.records {
            seen = record.revision;
            if !send_record(watch, record, tx).await {
                return None;
            }
        }
        if chunk.complete {
            return Some(seen.max(chunk.read_at));
        }
        chunk = match store.replay_chunk(seen).await {
            Ok(next) => next,
            Err(err) => {
                let _ = tx.send(Err(err)).await;
                return None;
            }
        };
    }
}

/// Forwards live batches after `seen` until the consumer leaves, lags or the store closes.
async fn forward_live(
    watch: &Watch,
    mut seen: Revision,
    mut live: broadcast::Receiver<CommittedBatch>,
    tx: &mpsc::Sender<Result<WatchEvent>>,
) {
    loop {
        let batch = tokio::select! {
            _ = tx.closed() => return,
            batch = live.recv() => batch,
        };
        match batch {
            Ok(batch) => {
                for record in batch.iter() {
                    if record.revision <= seen {
                        continue;
                    }
                    seen = record.revision;
                    if !send_record(watch, record, tx).await {
                        return;
                    }
                }
            }
            Err(broadcast::error::RecvError::Lagged(_)) => {
                let _ = tx.send(Err(Error::WatchLagged)).await;
                return;
            }
            // The store was closed.
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// Sends `record` when it is under the watched prefix; false when the consumer is gone.
async fn send_record(
    watch: &Watch,
    record: &LogRecord,
    tx: &mpsc::Sender<Result<WatchEvent>>,
) -> bool {
    if !record.key.starts_with(&watch.prefix) {
        return true;
    }
    tx.send(Ok(record.to_event())).await.is_ok()
}
