//! TEMPORARY in-memory stand-in (not committed): replaced by the redb backend.
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use super::*;

#[derive(Clone)]
pub struct EmbeddedStore {
    inner: Arc<Mutex<Mem>>,
    tx: tokio::sync::broadcast::Sender<WatchEvent>,
}

struct Mem {
    rev: Revision,
    latest: BTreeMap<String, KeyValue>,
    log: Vec<WatchEvent>,
}

impl EmbeddedStore {
    pub async fn open(_dir: &Path) -> Result<Self> {
        let (tx, _) = tokio::sync::broadcast::channel(100000);
        Ok(EmbeddedStore {
            inner: Arc::new(Mutex::new(Mem {
                rev: 0,
                latest: BTreeMap::new(),
                log: vec![],
            })),
            tx,
        })
    }
    pub async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        Ok(self.inner.lock().unwrap().latest.get(key).cloned())
    }
    pub async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        _at: Option<Revision>,
    ) -> Result<ListResult> {
        let m = self.inner.lock().unwrap();
        let mut items = vec![];
        let mut more = false;
        for (k, v) in m.latest.range(prefix.to_string()..) {
            if !k.starts_with(prefix) {
                break;
            }
            if let Some(s) = start_after {
                if k.as_str() <= s {
                    continue;
                }
            }
            if limit > 0 && items.len() == limit {
                more = true;
                break;
            }
            items.push(v.clone());
        }
        Ok(ListResult {
            items,
            revision: m.rev,
            more,
        })
    }
    fn write(
        &self,
        key: &str,
        value: Option<Vec<u8>>,
        check: impl FnOnce(Option<&KeyValue>) -> Result<()>,
    ) -> Result<KeyValue> {
        let mut m = self.inner.lock().unwrap();
        let prev = m.latest.get(key).cloned();
        check(prev.as_ref())?;
        m.rev += 1;
        let rev = m.rev;
        let ev = match value {
            Some(value) => {
                let kv = KeyValue {
                    key: key.into(),
                    value,
                    create_revision: prev.as_ref().map_or(rev, |p| p.create_revision),
                    mod_revision: rev,
                };
                m.latest.insert(key.into(), kv.clone());
                WatchEvent {
                    kind: EventKind::Put,
                    kv,
                    prev,
                }
            }
            None => {
                let mut kv = m.latest.remove(key).unwrap();
                kv.mod_revision = rev;
                WatchEvent {
                    kind: EventKind::Delete,
                    kv,
                    prev,
                }
            }
        };
        m.log.push(ev.clone());
        let _ = self.tx.send(ev.clone());
        Ok(ev.kv)
    }
    pub async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue> {
        self.write(key, Some(value), |p| {
            if p.is_some() {
                Err(Error::AlreadyExists { key: key.into() })
            } else {
                Ok(())
            }
        })
    }
    pub async fn update(&self, key: &str, value: Vec<u8>, exp: Revision) -> Result<KeyValue> {
        self.write(key, Some(value), |p| match p {
            None => Err(Error::NotFound { key: key.into() }),
            Some(p) if p.mod_revision != exp => Err(Error::Conflict {
                key: key.into(),
                expected: exp,
                actual: p.mod_revision,
            }),
            _ => Ok(()),
        })
    }
    pub async fn delete(&self, key: &str, exp: Option<Revision>) -> Result<KeyValue> {
        self.write(key, None, |p| match p {
            None => Err(Error::NotFound { key: key.into() }),
            Some(p) if exp.is_some_and(|e| e != p.mod_revision) => Err(Error::Conflict {
                key: key.into(),
                expected: exp.unwrap(),
                actual: p.mod_revision,
            }),
            _ => Ok(()),
        })
    }
    pub async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        let (out, rx) = tokio::sync::mpsc::channel(1024);
        let mut live = self.tx.subscribe();
        let hist: Vec<WatchEvent> = self
            .inner
            .lock()
            .unwrap()
            .log
            .iter()
            .filter(|e| e.kv.mod_revision > after && e.kv.key.starts_with(prefix))
            .cloned()
            .collect();
        let last = hist.last().map_or(after, |e| e.kv.mod_revision);
        let prefix = prefix.to_string();
        tokio::spawn(async move {
            for e in hist {
                if out.send(Ok(e)).await.is_err() {
                    return;
                }
            }
            while let Ok(e) = live.recv().await {
                if e.kv.mod_revision > last && e.kv.key.starts_with(&prefix) {
                    if out.send(Ok(e)).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(rx)
    }
    pub async fn compact(&self, _r: Revision) -> Result<()> {
        Ok(())
    }
    pub async fn current_revision(&self) -> Result<Revision> {
        Ok(self.inner.lock().unwrap().rev)
    }
    pub async fn count(&self, prefix: &str) -> Result<u64> {
        Ok(self.list(prefix, None, 0, None).await?.items.len() as u64)
    }
}
