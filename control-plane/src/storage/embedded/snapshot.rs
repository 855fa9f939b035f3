//! Reads of the embedded store: one redb read transaction (a consistent snapshot) answering
//! get, list (latest or at an older revision, by undoing the log), count and the history a
//! watch replays.

use std::collections::BTreeMap;
use std::ops::Bound;

use redb::ReadTransaction;

use super::schema::{self, KeyState, LATEST, LOG, LogRecord, META, META_COMPACTED, META_CURRENT};
use crate::storage::{Error, KeyValue, ListResult, Revision};

/// A consistent read view of the store.
pub(crate) struct Snapshot<'p> {
    txn: ReadTransaction,
    path: &'p str,
}

/// The revisions a snapshot was taken at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Revisions {
    pub current: Revision,
    pub compacted: Revision,
}

impl<'p> Snapshot<'p> {
    pub(crate) fn new(txn: ReadTransaction, path: &'p str) -> Snapshot<'p> {
        Snapshot { txn, path }
    }

    fn error(&self, context: &'static str) -> impl Fn(redb::Error) -> Error + '_ {
        move |e| schema::db_error(self.path, context, e)
    }

    pub(crate) fn revisions(&self) -> Result<Revisions, Error> {
        let read = || -> Result<Revisions, redb::Error> {
            let meta = self.txn.open_table(META)?;
            Ok(Revisions {
                current: schema::read_meta(&meta, META_CURRENT)?,
                compacted: schema::read_meta(&meta, META_COMPACTED)?,
            })
        };
        read().map_err(self.error("reading revisions"))
    }

    pub(crate) fn get(&self, key: &str) -> Result<Option<KeyValue>, Error> {
        let read = || -> Result<KeyState, redb::Error> {
            let latest = self.txn.open_table(LATEST)?;
            schema::read_latest(&latest, key)
        };
        read().map_err(self.error("reading a key"))
    }

    pub(crate) fn count(&self, prefix: &str) -> Result<u64, Error> {
        let read = || -> Result<u64, redb::Error> {
            let latest = self.txn.open_table(LATEST)?;
            let mut count = 0;
            for entry in latest.range::<&str>(prefix..)? {
                let (key, _) = entry?;
                if !key.value().starts_with(prefix) {
                    break;
                }
                count += 1;
            }
            Ok(count)
        };
        read().map_err(self.error("counting keys"))
    }

    /// Lists keys under `prefix` after `start_after`, as of `at_revision` (None or <= 0 =
    /// latest).
    pub(crate) fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        at_revision: Option<Revision>,
    ) -> Result<ListResult, Error> {
        let revisions = self.revisions()?;
        let at = match at_revision {
            Some(at) if at > 0 => at,
            _ => revisions.current,
        };
        check_readable(at, revisions)?;
        let lower = lower_bound(prefix, start_after);
        let overrides = if at < revisions.current {
            self.states_at(at, prefix, lower)
                .map_err(self.error("reading the log"))?
        } else {
            BTreeMap::new()
        };
        let mut page = Page::new(limit);
        self.fill_page(&mut page, prefix, lower, overrides)
            .map_err(self.error("listing keys"))?;
        Ok(page.finish(at))
    }

    /// For every key under `prefix` (and past `lower`) written after `at`, its state at `at`.
    fn states_at(
        &self,
        at: Revision,
        prefix: &str,
        lower: Bound<&str>,
    ) -> Result<BTreeMap<String, KeyState>, redb::Error> {
        let log = self.txn.open_table(LOG)?;
        let mut states = BTreeMap::new();
        // Newest first: the last state recorded for a key is the one before its oldest
        // write after `at`, i.e. its state at `at`.
        for entry in log.range::<i64>(at + 1..)?.rev() {
            let (revision, row) = entry?;
            let record = LogRecord::from_row(revision.value(), row.value())
                .map_err(|e| redb::Error::Corrupted(e.to_string()))?;
            if record.key.starts_with(prefix) && past_lower(&record.key, lower) {
                states.insert(record.key, record.prev);
            }
        }
        Ok(states)
    }

    /// Merges the latest keys with `overrides` (states at an older revision) into `page`.
    fn fill_page(
        &self,
        page: &mut Page,
        prefix: &str,
        lower: Bound<&str>,
        overrides: BTreeMap<String, KeyState>,
    ) -> Result<(), redb::Error> {
        let latest = self.txn.open_table(LATEST)?;
        let mut overrides = overrides.into_iter().peekable();
        for entry in latest.range::<&str>((lower, Bound::Unbounded))? {
            let (key, row) = entry?;
            let key = key.value();
            if !key.starts_with(prefix) {
                break;
            }
            while let Some((_, state)) = overrides.next_if(|(k, _)| k.as_str() < key) {
                if page.push_state(state) {
                    return Ok(());
                }
            }
            let state = match overrides.next_if(|(k, _)| k == key) {
                Some((_, state)) => state,
                None => {
                    let (create_revision, mod_revision, value) = row.value();
                    Some(KeyValue {
                        key: key.to_string(),
                        value: value.to_vec(),
                        create_revision,
                        mod_revision,
                    })
                }
            };
            if page.push_state(state) {
                return Ok(());
            }
        }
        for (_, state) in overrides {
            if page.push_state(state) {
                return Ok(());
            }
        }
        Ok(())
    }

    /// The first `max` log records with revision > `after`, oldest first.
    pub(crate) fn history(&self, after: Revision, max: usize) -> Result<Vec<LogRecord>, Error> {
        let read = || -> Result<Vec<LogRecord>, redb::Error> {
            let log = self.txn.open_table(LOG)?;
            let mut records = Vec::new();
            for entry in log.range::<i64>(after.saturating_add(1)..)?.take(max) {
                let (revision, row) = entry?;
                let record = LogRecord::from_row(revision.value(), row.value())
                    .map_err(|e| redb::Error::Corrupted(e.to_string()))?;
                records.push(record);
            }
            Ok(records)
        };
        read().map_err(self.error("reading the log"))
    }
}

/// Fails unless the store can be read as of `at`.
pub(crate) fn check_readable(at: Revision, revisions: Revisions) -> Result<(), Error> {
    if at > revisions.current {
        return Err(Error::FutureRevision {
            requested: at,
            current: revisions.current,
        });
    }
    if at < revisions.compacted {
        return Err(Error::Compacted {
            requested: at,
            compacted: revisions.compacted,
        });
    }
    Ok(())
}

/// Where a list starts: strictly after `start_after` when it is at or past `prefix`.
fn lower_bound<'a>(prefix: &'a str, start_after: Option<&'a str>) -> Bound<&'a str> {
    match start_after {
        Some(after) if after >= prefix => Bound::Excluded(after),
        _ => Bound::Included(prefix),
    }
}

fn past_lower(key: &str, lower: Bound<&str>) -> bool {
    match lower {
        Bound::Included(l) => key >= l,
        Bound::Excluded(l) => key > l,
        Bound::Unbounded => true,
    }
}

/// A page of a list being filled: keeps one item past `limit` to know whether more remain.
struct Page {
    items: Vec<KeyValue>,
    limit: usize,
}

impl Page {
    fn new(limit: usize) -> Page {
        Page {
            items: Vec::new(),
            limit,
        }
    }

    /// Adds a present key; true once the page holds one item past the limit.
    fn push_state(&mut self, state: KeyState) -> bool {
        if let Some(kv) = state {
            self.items.push(kv);
        }
        self.limit > 0 && self.items.len() > self.limit
    }

    fn finish(mut self, revision: Revision) -> ListResult {
        let more = self.limit > 0 && self.items.len() > self.limit;
        if more {
            self.items.truncate(self.limit);
        }
        ListResult {
            items: self.items,
            revision,
            more,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lower_bound_ignores_a_start_before_the_prefix() {
        assert_eq!(lower_bound("/b/", Some("/a")), Bound::Included("/b/"));
        assert_eq!(lower_bound("/b/", Some("/b/x")), Bound::Excluded("/b/x"));
        assert_eq!(lower_bound("/b/", None), Bound::Included("/b/"));
    }

    #[test]
    fn readable_revisions_lie_between_compacted_and_current() {
        let revisions = Revisions {
            current: 10,
            compacted: 4,
        };
        assert!(check_readable(4, revisions).is_ok());
        assert!(check_readable(10, revisions).is_ok());
        assert!(matches!(
            check_readable(3, revisions),
            Err(Error::Compacted {
                requested: 3,
                compacted: 4
            })
        ));
        assert!(matches!(
            check_readable(11, revisions),
            Err(Error::FutureRevision {
                requested: 11,
                current: 10
            })
        ));
    }

    #[test]
    fn page_keeps_one_extra_to_report_more() {
        let kv = |k: &str| {
            Some(KeyValue {
                key: k.into(),
                value: vec![],
                create_revision: 1,
                mod_revision: 1,
            })
        };
        let mut page = Page::new(2);
        assert!(!page.push_state(kv("a")));
        assert!(!page.push_state(None));
        assert!(!page.push_state(kv("b")));
        assert!(page.push_state(kv("c")));
        let result = page.finish(7);
        assert!(result.more);
        assert_eq!(result.items.len(), 2);
        assert_eq!(result.revision, 7);
    }
}
