//! The on-disk layout of the embedded store: its redb tables, the record kept per revision in
//! the log, and the mapping of redb errors onto `storage::Error`.
//!
//! Tables:
//! - `latest`: key -> (create_revision, mod_revision, value) for every live key.
//! - `log`: revision -> one `LogRecord` (the change and the state before it), the history that
//!   watch replays and that list-at-revision undoes; compaction deletes it at and below a
//!   revision.
//! - `meta`: "current" and "compacted" revisions.

use redb::{ReadableTable, TableDefinition};

use crate::storage::{Error, EventKind, KeyValue, Revision, WatchEvent};

/// key -> (create_revision, mod_revision, value).
pub(crate) const LATEST: TableDefinition<&str, (i64, i64, &[u8])> = TableDefinition::new("latest");

/// revision -> (kind, key, new value, new create_revision, prev create_revision,
/// prev mod_revision (0 = no previous value), prev value).
pub(crate) const LOG: TableDefinition<i64, LogRow<'static>> = TableDefinition::new("log");

/// The columns of a `LOG` row, in the order of the doc above.
type LogRow<'a> = (u8, &'a str, &'a [u8], i64, i64, i64, &'a [u8]);

/// name -> revision.
pub(crate) const META: TableDefinition<&str, i64> = TableDefinition::new("meta");

pub(crate) const META_CURRENT: &str = "current";
pub(crate) const META_COMPACTED: &str = "compacted";

const KIND_PUT: u8 = 0;
const KIND_DELETE: u8 = 1;

/// The state of a key just before or after one write (`None` = absent).
pub(crate) type KeyState = Option<KeyValue>;

/// One write as kept in the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LogRecord {
    pub revision: Revision,
    pub kind: EventKind,
    pub key: String,
    /// The value written (empty for a delete).
    pub value: Vec<u8>,
    /// The create revision of the key after the write (0 for a delete).
    pub create_revision: Revision,
    /// The key before the write.
    pub prev: KeyState,
}

impl LogRecord {
    /// The row stored in `LOG` for this record.
    pub(crate) fn to_row(&self) -> LogRow<'_> {
        let kind = match self.kind {
            EventKind::Put => KIND_PUT,
            EventKind::Delete => KIND_DELETE,
        };
        let (prev_create, prev_mod, prev_value) = match &self.prev {
            Some(p) => (p.create_revision, p.mod_revision, p.value.as_slice()),
            None => (0, 0, &[][..]),
        };
        (
            kind,
            &self.key,
            &self.value,
            self.create_revision,
            prev_create,
            prev_mod,
            prev_value,
        )
    }

    /// Decodes a row of `LOG` stored at `revision`.
    pub(crate) fn from_row(revision: Revision, row: LogRow<'_>) -> Result<LogRecord, Error> {
        let (kind, key, value, create_revision, prev_create, prev_mod, prev_value) = row;
        let kind = match kind {
            KIND_PUT => EventKind::Put,
            KIND_DELETE => EventKind::Delete,
            other => {
                return Err(Error::Corrupt(format!(
                    "log entry {revision} has unknown kind {other}"
                )));
            }
        };
        let prev = (prev_mod != 0).then(|| KeyValue {
            key: key.to_string(),
            value: prev_value.to_vec(),
            create_revision: prev_create,
            mod_revision: prev_mod,
        });
        Ok(LogRecord {
            revision,
            kind,
            key: key.to_string(),
            value: value.to_vec(),
            create_revision,
            prev,
        })
    }

    /// The key after the write.
    pub(crate) fn next_state(&self) -> KeyState {
        match self.kind {
            EventKind::Put => Some(KeyValue {
                key: self.key.clone(),
                value: self.value.clone(),
                create_revision: self.create_revision,
                mod_revision: self.revision,
            }),
            EventKind::Delete => None,
        }
    }

    /// The watch event for this write: for a delete, `kv` carries the deleted value at the
    /// revision of the delete.
    pub(crate) fn to_event(&self) -> WatchEvent {
        let kv = match (&self.kind, &self.prev) {
            (EventKind::Delete, Some(prev)) => KeyValue {
                mod_revision: self.revision,
                ..prev.clone()
            },
            _ => KeyValue {
                key: self.key.clone(),
                value: self.value.clone(),
                create_revision: self.create_revision,
                mod_revision: self.revision,
            },
        };
        WatchEvent {
            kind: self.kind,
            kv,
            prev: self.prev.clone(),
        }
    }
}

/// Reads a key of `LATEST`.
pub(crate) fn read_latest(
    table: &impl ReadableTable<&'static str, (i64, i64, &'static [u8])>,
    key: &str,
) -> Result<KeyState, redb::Error> {
    Ok(table.get(key)?.map(|guard| {
        let (create_revision, mod_revision, value) = guard.value();
        KeyValue {
            key: key.to_string(),
            value: value.to_vec(),
            create_revision,
            mod_revision,
        }
    }))
}

/// Reads a revision counter of `META` (0 when never written).
pub(crate) fn read_meta(
    table: &impl ReadableTable<&'static str, i64>,
    name: &str,
) -> Result<Revision, redb::Error> {
    Ok(table.get(name)?.map(|guard| guard.value()).unwrap_or(0))
}

/// Maps a redb error on the database at `path` onto the storage error (I/O stays I/O).
pub(crate) fn db_error(path: &str, context: &str, err: impl Into<redb::Error>) -> Error {
    match err.into() {
        redb::Error::DatabaseAlreadyOpen => Error::Unavailable(format!(
            "{context}: {path} is already open (by another process or store)"
        )),
        redb::Error::Io(source) => Error::Io {
            path: path.to_string(),
            source,
        },
        other => Error::Corrupt(format!("{context} in {path}: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, value: &[u8], create: Revision, modr: Revision) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: value.to_vec(),
            create_revision: create,
            mod_revision: modr,
        }
    }

    #[test]
    fn log_record_round_trips_through_its_row() {
        let records = [
            LogRecord {
                revision: 3,
                kind: EventKind::Put,
                key: "/a".into(),
                value: b"v".to_vec(),
                create_revision: 3,
                prev: None,
            },
            LogRecord {
                revision: 5,
                kind: EventKind::Put,
                key: "/a".into(),
                value: b"w".to_vec(),
                create_revision: 3,
                prev: Some(kv("/a", b"v", 3, 3)),
            },
            LogRecord {
                revision: 7,
                kind: EventKind::Delete,
                key: "/a".into(),
                value: Vec::new(),
                create_revision: 0,
                prev: Some(kv("/a", b"w", 3, 5)),
            },
        ];
        for record in records {
            let row = record.to_row();
            assert_eq!(
                LogRecord::from_row(record.revision, row).ok(),
                Some(record.clone())
            );
        }
    }

    #[test]
    fn delete_event_carries_the_deleted_value_at_the_delete_revision() {
        let record = LogRecord {
            revision: 7,
            kind: EventKind::Delete,
            key: "/a".into(),
            value: Vec::new(),
            create_revision: 0,
            prev: Some(kv("/a", b"w", 3, 5)),
        };
        let event = record.to_event();
        assert_eq!(event.kind, EventKind::Delete);
        assert_eq!(event.kv, kv("/a", b"w", 3, 7));
        assert_eq!(event.prev, Some(kv("/a", b"w", 3, 5)));
        assert_eq!(record.next_state(), None);
    }

    #[test]
    fn unknown_kind_is_corruption() {
        let row = (9u8, "/a", &b""[..], 0, 0, 0, &b""[..]);
        assert!(matches!(
            LogRecord::from_row(1, row),
            Err(Error::Corrupt(_))
        ));
    }
}
