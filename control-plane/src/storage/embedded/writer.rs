//! Group commit for the embedded store: one thread owns every write. It takes all queued
//! requests, applies them in order in one redb write transaction (each write gets its own
//! revision; conditions are checked against the writes before it), commits once (fsync), then
//! answers each request and publishes the batch's log records to watchers.

use std::sync::Arc;

use redb::{Database, Durability, WriteTransaction};
use tokio::sync::{broadcast, mpsc, oneshot};

use super::schema::{self, LATEST, LOG, LogRecord, META, META_COMPACTED, META_CURRENT};
use crate::storage::{Error, EventKind, KeyValue, Result, Revision};

/// Most requests committed in one transaction.
const MAX_BATCH: usize = 1024;

/// The records of one committed transaction, oldest first, as published to watchers.
pub(crate) type CommittedBatch = Arc<Vec<LogRecord>>;

/// A conditional change of one key.
#[derive(Debug)]
pub(crate) enum WriteOp {
    Create {
        key: String,
        value: Vec<u8>,
    },
    Update {
        key: String,
        value: Vec<u8>,
        expected: Revision,
    },
    Delete {
        key: String,
        expected: Option<Revision>,
    },
}

/// What the writer thread is asked to do.
pub(crate) enum Request {
    /// Answers the written key (for a delete: the deleted value at the delete's revision).
    Write {
        op: WriteOp,
        reply: oneshot::Sender<Result<KeyValue>>,
    },
    Compact {
        revision: Revision,
        reply: oneshot::Sender<Result<()>>,
    },
}

/// The writer thread's state.
pub(crate) struct Writer {
    pub db: Arc<Database>,
    pub path: String,
    pub requests: mpsc::UnboundedReceiver<Request>,
    pub committed: broadcast::Sender<CommittedBatch>,
}

/// The answer to one request of a batch, before the batch is committed.
enum Outcome {
    Written(KeyValue),
    Compacted,
    Failed(Error),
}

impl Writer {
    /// Runs until every sender of requests is dropped.
    pub(crate) fn run(mut self) {
        while let Some(first) = self.requests.blocking_recv() {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match self.requests.try_recv() {
                    Ok(request) => batch.push(request),
                    Err(_) => break,
                }
            }
            self.commit_batch(batch);
        }
    }

    fn commit_batch(&self, batch: Vec<Request>) {
        match self.apply_and_commit(&batch) {
            Ok((outcomes, records)) => {
                for (request, outcome) in batch.into_iter().zip(outcomes) {
                    answer(request, outcome);
                }
                if !records.is_empty() {
                    // No receivers is fine: nobody is watching.
                    let _ = self.committed.send(Arc::new(records));
                }
            }
            Err(err) => {
                for request in batch {
                    answer(
                        request,
                        Outcome::Failed(schema::db_error(
                            &self.path,
                            "committing writes",
                            clone_redb_error(&err),
                        )),
                    );
                }
            }
        }
    }

    fn apply_and_commit(
        &self,
        batch: &[Request],
    ) -> std::result::Result<(Vec<Outcome>, Vec<LogRecord>), redb::Error> {
        let mut txn = self.db.begin_write()?;
        // Explicit although it is redb's default: commit returns only once the batch is on disk.
        txn.set_durability(Durability::Immediate)?;
        let applied = apply_batch(&txn, batch)?;
        txn.commit()?;
        Ok(applied)
    }
}

/// redb errors are not `Clone`; a batch that fails answers every request with the same text.
fn clone_redb_error(err: &redb::Error) -> redb::Error {
    match err {
        redb::Error::Io(e) => redb::Error::Io(std::io::Error::new(e.kind(), e.to_string())),
        other => redb::Error::Corrupted(other.to_string()),
    }
}

fn answer(request: Request, outcome: Outcome) {
    // A requester that went away no longer needs its answer.
    match (request, outcome) {
        (Request::Write { reply, .. }, Outcome::Written(kv)) => {
            let _ = reply.send(Ok(kv));
        }
        (Request::Write { reply, .. }, Outcome::Failed(e)) => {
            let _ = reply.send(Err(e));
        }
        (Request::Compact { reply, .. }, Outcome::Compacted) => {
            let _ = reply.send(Ok(()));
        }
        (Request::Compact { reply, .. }, Outcome::Failed(e)) => {
            let _ = reply.send(Err(e));
        }
        (Request::Write { reply, .. }, Outcome::Compacted) => {
            let _ = reply.send(Err(Error::Corrupt(
                "writer answered a write as a compaction".into(),
            )));
        }
        (Request::Compact { reply, .. }, Outcome::Written(_)) => {
            let _ = reply.send(Err(Error::Corrupt(
                "writer answered a compaction as a write".into(),
            )));
        }
    }
}

/// Applies `batch` in order inside `txn`; returns each request's outcome and the log records
/// written.
fn apply_batch(
    txn: &WriteTransaction,
    batch: &[Request],
) -> std::result::Result<(Vec<Outcome>, Vec<LogRecord>), redb::Error> {
    let mut latest = txn.open_table(LATEST)?;
    let mut log = txn.open_table(LOG)?;
    let mut meta = txn.open_table(META)?;
    let mut current = schema::read_meta(&meta, META_CURRENT)?;
    let mut compacted = schema::read_meta(&meta, META_COMPACTED)?;
    let mut outcomes = Vec::with_capacity(batch.len());
    let mut records = Vec::new();
    for request in batch {
        let outcome = match request {
            Request::Write { op, .. } => {
                let prev = schema::read_latest(&latest, op_key(op))?;
                match plan_write(op, prev, current + 1) {
                    Ok(record) => {
                        current = record.revision;
                        match record.next_state() {
                            Some(kv) => {
                                latest.insert(
                                    kv.key.as_str(),
                                    (kv.create_revision, kv.mod_revision, kv.value.as_slice()),
                                )?;
                            }
                            None => {
                                latest.remove(record.key.as_str())?;
                            }
                        }
                        log.insert(record.revision, record.to_row())?;
                        let written = record.to_event().kv;
                        records.push(record);
                        Outcome::Written(written)
                    }
                    Err(e) => Outcome::Failed(e),
                }
            }
            Request::Compact { revision, .. } => {
                match plan_compaction(*revision, current, compacted) {
                    Ok(Some(to)) => {
                        log.retain_in::<i64, _>(..=to, |_, _| false)?;
                        compacted = to;
                        Outcome::Compacted
                    }
                    Ok(None) => Outcome::Compacted,
                    Err(e) => Outcome::Failed(e),
                }
            }
        };
        outcomes.push(outcome);
    }
    meta.insert(META_CURRENT, current)?;
    meta.insert(META_COMPACTED, compacted)?;
    Ok((outcomes, records))
}

fn op_key(op: &WriteOp) -> &str {
    match op {
        WriteOp::Create { key, .. } | WriteOp::Update { key, .. } | WriteOp::Delete { key, .. } => {
            key
        }
    }
}

/// Checks `op` against the key's current state `prev` and builds the record it writes at
/// `revision`.
fn plan_write(op: &WriteOp, prev: Option<KeyValue>, revision: Revision) -> Result<LogRecord> {
    match (op, prev) {
        (WriteOp::Create { key, .. }, Some(_)) => Err(Error::AlreadyExists { key: key.clone() }),
        (WriteOp::Create { key, value }, None) => Ok(LogRecord {
            revision,
            kind: EventKind::Put,
            key: key.clone(),
            value: value.clone(),
            create_revision: revision,
            prev: None,
        }),
        (WriteOp::Update { key, .. } | WriteOp::Delete { key, .. }, None) => {
            Err(Error::NotFound { key: key.clone() })
        }
        (
            WriteOp::Update {
                key,
                value,
                expected,
            },
            Some(prev),
        ) => {
            check_expected(key, Some(*expected), &prev)?;
            Ok(LogRecord {
                revision,
                kind: EventKind::Put,
                key: key.clone(),
                value: value.clone(),
                create_revision: prev.create_revision,
                prev: Some(prev),
            })
        }
        (WriteOp::Delete { key, expected }, Some(prev)) => {
            check_expected(key, *expected, &prev)?;
            Ok(LogRecord {
                revision,
                kind: EventKind::Delete,
                key: key.clone(),
                value: Vec::new(),
                create_revision: 0,
                prev: Some(prev),
            })
        }
    }
}

fn check_expected(key: &str, expected: Option<Revision>, current: &KeyValue) -> Result<()> {
    match expected {
        Some(expected) if expected != current.mod_revision => Err(Error::Conflict {
            key: key.to_string(),
            expected,
            actual: current.mod_revision,
        }),
        _ => Ok(()),
    }
}

/// The revision to compact the log to, None when `revision` is already compacted (a no-op,
/// as compaction is idempotent).
fn plan_compaction(
    revision: Revision,
    current: Revision,
    compacted: Revision,
) -> Result<Option<Revision>> {
    if revision > current {
        return Err(Error::FutureRevision {
            requested: revision,
            current,
        });
    }
    Ok((revision > compacted).then_some(revision))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, create: Revision, modr: Revision) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: b"old".to_vec(),
            create_revision: create,
            mod_revision: modr,
        }
    }

    #[test]
    fn create_fails_on_an_existing_key() {
        let op = WriteOp::Create {
            key: "/a".into(),
            value: vec![],
        };
        assert!(matches!(
            plan_write(&op, Some(kv("/a", 1, 1)), 2),
            Err(Error::AlreadyExists { .. })
        ));
        let record = plan_write(&op, None, 2).ok();
        assert_eq!(
            record.map(|r| (r.create_revision, r.revision)),
            Some((2, 2))
        );
    }

    #[test]
    fn update_checks_the_mod_revision_and_keeps_the_create_revision() {
        let op = WriteOp::Update {
            key: "/a".into(),
            value: b"new".to_vec(),
            expected: 3,
        };
        assert!(matches!(
            plan_write(&op, None, 5),
            Err(Error::NotFound { .. })
        ));
        assert!(matches!(
            plan_write(&op, Some(kv("/a", 1, 4)), 5),
            Err(Error::Conflict {
                expected: 3,
                actual: 4,
                ..
            })
        ));
        let record = plan_write(&op, Some(kv("/a", 1, 3)), 5).ok();
        assert_eq!(
            record.map(|r| (r.create_revision, r.revision, r.prev.is_some())),
            Some((1, 5, true))
        );
    }

    #[test]
    fn unconditional_delete_ignores_the_revision() {
        let op = WriteOp::Delete {
            key: "/a".into(),
            expected: None,
        };
        let record = plan_write(&op, Some(kv("/a", 1, 3)), 9).ok();
        assert_eq!(
            record.map(|r| r.to_event().kv),
            Some(KeyValue {
                mod_revision: 9,
                ..kv("/a", 1, 3)
            })
        );
    }

    #[test]
    fn compaction_is_idempotent_and_not_into_the_future() {
        assert!(matches!(
            plan_compaction(11, 10, 0),
            Err(Error::FutureRevision { .. })
        ));
        assert_eq!(plan_compaction(5, 10, 0).ok(), Some(Some(5)));
        assert_eq!(plan_compaction(5, 10, 5).ok(), Some(None));
        assert_eq!(plan_compaction(3, 10, 5).ok(), Some(None));
    }
}
