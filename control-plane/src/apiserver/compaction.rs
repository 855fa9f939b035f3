//! Storage compaction: every interval, drop the history older than the revision seen one
//! interval ago, so watchers have at least one interval to resume and storage does not grow
//! without bound (kube-apiserver compacts etcd the same way).

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::storage::Store;

pub async fn run(store: Store, interval: Duration, cancel: CancellationToken) {
    let mut previous = None;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        if let Some(revision) = previous {
            match store.compact(revision).await {
                Ok(()) => tracing::debug!(revision, "compacted storage"),
                Err(error) => tracing::warn!(revision, %error, "compaction failed"),
            }
        }
        previous = store.current_revision().await.ok();
    }
}
