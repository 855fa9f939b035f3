//! Watch fan-out for the embedded store: each watch is a task that replays the log after its
//! start revision, then forwards the writer's committed batches, filtered by prefix, without
//! gaps or duplicates (it subscribes before reading history and skips live records it already
//! replayed). A watcher whose consumer falls behind the broadcast gets `WatchLagged` and ends.

use tokio::sync::{broadcast, mpsc};

use super::schema::LogRecord;
use super::writer::CommittedBatch;
use crate::storage::{Error, Result, Revision, WatchEvent, WatchStream};

/// Events buffered per watch stream before the watch task waits for its consumer.
pub(crate) const STREAM_BUFFER: usize = 256;

/// What a new watch starts from, read in one snapshot after subscribing to live batches.
pub(crate) struct Start {
    pub prefix: String,
    pub after: Revision,
    /// Records after `after`, oldest first.
    pub history: Vec<LogRecord>,
    /// The revision the history was read at.
    pub read_at: Revision,
}

/// A stream whose only item is `err`.
pub(crate) fn failed_stream(err: Error) -> WatchStream {
    let (tx, rx) = mpsc::channel(1);
    // The receiver is alive and the buffer empty: this cannot fail.
    let _ = tx.try_send(Err(err));
    rx
}

/// Spawns the task that feeds a watch stream.
pub(crate) fn spawn(start: Start, live: broadcast::Receiver<CommittedBatch>) -> WatchStream {
    let (tx, rx) = mpsc::channel(STREAM_BUFFER);
    tokio::spawn(forward(start, live, tx));
    rx
}

async fn forward(
    start: Start,
    mut live: broadcast::Receiver<CommittedBatch>,
    tx: mpsc::Sender<Result<WatchEvent>>,
) {
    for record in &start.history {
        if record.key.starts_with(&start.prefix) && tx.send(Ok(record.to_event())).await.is_err() {
            return;
        }
    }
    // Everything at or below this was replayed (or is before the watch's start).
    let mut seen = start.read_at.max(start.after);
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
                    if record.key.starts_with(&start.prefix)
                        && tx.send(Ok(record.to_event())).await.is_err()
                    {
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
