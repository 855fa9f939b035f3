//! The embedded backend: an MVCC store in one redb file (`DIR/store.redb`), durable on every
//! acknowledged write, with group commit (see `writer`), reads on blocking threads from
//! consistent snapshots (see `snapshot`) and in-process watch fan-out (see `watch`).
//!
//! A watch from a revision beyond the current one is allowed: it waits for writes past it.

mod schema;
mod snapshot;
mod watch;
mod writer;

use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;

use redb::{Database, ReadableDatabase};
use tokio::sync::{broadcast, mpsc, oneshot};

use self::snapshot::Snapshot;
use self::writer::{CommittedBatch, Request, WriteOp, Writer};
use crate::storage::{Error, KeyValue, ListResult, Result, Revision, WatchStream};

/// Tuning of the embedded store; `open` uses the defaults.
#[derive(Clone, Debug)]
pub struct EmbeddedOptions {
    /// Committed batches kept for watchers that are behind; one further behind has lagged.
    pub live_buffer: usize,
    /// Events buffered in each watch stream before its task waits for the consumer.
    pub watch_buffer: usize,
    /// redb's page cache. Pages not in it are read from the OS page cache, so a small one
    /// costs a syscall per miss; redb's default (1 GiB) would instead grow the RSS with the
    /// database.
    pub cache_bytes: usize,
}

impl Default for EmbeddedOptions {
    fn default() -> EmbeddedOptions {
        EmbeddedOptions {
            live_buffer: 4096,
            watch_buffer: 256,
            cache_bytes: 32 << 20,
        }
    }
}

/// A handle on the embedded store; clones share one database and one writer thread.
#[derive(Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

struct Inner {
    db: Arc<Database>,
    path: String,
    /// None only while dropping.
    requests: Option<mpsc::UnboundedSender<Request>>,
    committed: broadcast::Sender<CommittedBatch>,
    writer: Option<JoinHandle<()>>,
    options: EmbeddedOptions,
}

impl Drop for Inner {
    /// Stops the writer thread and waits for it, so the file is closed when the last handle is.
    fn drop(&mut self) {
        self.requests = None;
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

impl EmbeddedStore {
    /// Opens `dir/store.redb`, creating the directory and the file when missing.
    pub async fn open(dir: &Path) -> Result<EmbeddedStore> {
        EmbeddedStore::open_with(dir, EmbeddedOptions::default()).await
    }

    /// `open` with explicit tuning.
    pub async fn open_with(dir: &Path, options: EmbeddedOptions) -> Result<EmbeddedStore> {
        let dir = dir.to_path_buf();
        run_blocking(move || open_blocking(&dir, options)).await?
    }

    pub async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let key = key.to_string();
        self.read(move |snapshot| snapshot.get(&key)).await
    }

    pub async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        at_revision: Option<Revision>,
    ) -> Result<ListResult> {
        let prefix = prefix.to_string();
        let start_after = start_after.map(str::to_string);
        self.read(move |snapshot| {
            snapshot.list(&prefix, start_after.as_deref(), limit, at_revision)
        })
        .await
    }

    pub async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue> {
        self.write(WriteOp::Create {
            key: key.to_string(),
            value,
        })
        .await
    }

    pub async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected_mod_revision: Revision,
    ) -> Result<KeyValue> {
        self.write(WriteOp::Update {
            key: key.to_string(),
            value,
            expected: expected_mod_revision,
        })
        .await
    }

    pub async fn delete(
        &self,
        key: &str,
        expected_mod_revision: Option<Revision>,
    ) -> Result<KeyValue> {
        self.write(WriteOp::Delete {
            key: key.to_string(),
            expected: expected_mod_revision,
        })
        .await
    }

    /// Streams changes under `prefix` after `after_revision`: the log first, then live writes.
    pub async fn watch(&self, prefix: &str, after_revision: Revision) -> Result<WatchStream> {
        // Subscribe before reading history so no commit falls between the two.
        let live = self.inner.committed.subscribe();
        match self.replay_chunk(after_revision).await {
            Ok(first) => {
                let watch = watch::Watch {
                    prefix: prefix.to_string(),
                    after: after_revision,
                    buffer: self.inner.options.watch_buffer,
                };
                Ok(watch::spawn(watch, first, self.clone(), live))
            }
            Err(err @ Error::Compacted { .. }) => Ok(watch::failed_stream(err)),
            Err(err) => Err(err),
        }
    }

    /// The next records of history after `after` for a watch, from one snapshot.
    pub(crate) async fn replay_chunk(&self, after: Revision) -> Result<watch::Replay> {
        self.read(move |snapshot| {
            let revisions = snapshot.revisions()?;
            if after < revisions.compacted {
                return Err(Error::Compacted {
                    requested: after,
                    compacted: revisions.compacted,
                });
            }
            let records = snapshot.history(after, watch::REPLAY_CHUNK)?;
            let complete = records.len() < watch::REPLAY_CHUNK;
            Ok(watch::Replay {
                records,
                read_at: revisions.current,
                complete,
            })
        })
        .await
    }

    pub async fn compact(&self, revision: Revision) -> Result<()> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::Compact { revision, reply })?;
        answer.await.map_err(|_| writer_stopped())?
    }

    pub async fn current_revision(&self) -> Result<Revision> {
        self.read(|snapshot| Ok(snapshot.revisions()?.current))
            .await
    }

    pub async fn count(&self, prefix: &str) -> Result<u64> {
        let prefix = prefix.to_string();
        self.read(move |snapshot| snapshot.count(&prefix)).await
    }

    async fn write(&self, op: WriteOp) -> Result<KeyValue> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::Write { op, reply })?;
        answer.await.map_err(|_| writer_stopped())?
    }

    fn send(&self, request: Request) -> Result<()> {
        let requests = self.inner.requests.as_ref().ok_or_else(writer_stopped)?;
        requests.send(request).map_err(|_| writer_stopped())
    }

    /// Runs `f` on a blocking thread against a fresh snapshot.
    async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Snapshot<'_>) -> Result<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        run_blocking(move || {
            let txn = inner
                .db
                .begin_read()
                .map_err(|e| schema::db_error(&inner.path, "starting a read", e))?;
            f(&Snapshot::new(txn, &inner.path))
        })
        .await?
    }
}

fn writer_stopped() -> Error {
    Error::Unavailable("the embedded store's writer thread has stopped".into())
}

async fn run_blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Unavailable(format!("embedded store task failed: {e}")))
}

fn open_blocking(dir: &Path, options: EmbeddedOptions) -> Result<EmbeddedStore> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Io {
        path: dir.display().to_string(),
        source,
    })?;
    let file = dir.join("store.redb");
    let path = file.display().to_string();
    let db = Database::builder()
        .set_cache_size(options.cache_bytes)
        .create(&file)
        .map_err(|e| schema::db_error(&path, "opening the database", e))?;
    create_tables(&db).map_err(|e| schema::db_error(&path, "creating tables", e))?;
    let db = Arc::new(db);
    let (requests, receiver) = mpsc::unbounded_channel();
    let (committed, _) = broadcast::channel(options.live_buffer.max(1));
    let writer = Writer {
        db: db.clone(),
        path: path.clone(),
        requests: receiver,
        committed: committed.clone(),
    };
    let writer = std::thread::Builder::new()
        .name("keel-store-writer".into())
        .spawn(move || writer.run())
        .map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
    Ok(EmbeddedStore {
        inner: Arc::new(Inner {
            db,
            path,
            requests: Some(requests),
            committed,
            writer: Some(writer),
            options,
        }),
    })
}

/// Makes sure every table exists, so read transactions can open them.
fn create_tables(db: &Database) -> std::result::Result<(), redb::Error> {
    let txn = db.begin_write()?;
    txn.open_table(schema::LATEST)?;
    txn.open_table(schema::LOG)?;
    txn.open_table(schema::META)?;
    txn.commit()?;
    Ok(())
}
