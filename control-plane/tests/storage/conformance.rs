//! The storage contract as one suite, written once against `Store` and run against every
//! backend. Each case works under its own key prefix; cases run one after another on a store
//! nobody else writes to, so revision arithmetic is exact.

use std::time::Duration;

use keel_control_plane::storage::{
    Error, EventKind, KeyValue, Revision, Store, WatchEvent, WatchStream,
};

const WAIT: Duration = Duration::from_secs(20);

pub async fn run_suite(store: &Store) {
    crud(store).await;
    revisions_are_global_and_monotonic(store).await;
    list_order_paging_and_revisions(store).await;
    watch_history_then_live_under_concurrent_writes(store).await;
    watch_reports_prev_values_and_deletes(store).await;
    watch_from_the_future_waits(store).await;
    compaction(store).await;
    count(store).await;
}

/// The next item of a watch, failing the test after `WAIT`.
pub async fn next_event(stream: &mut WatchStream) -> WatchEvent {
    match tokio::time::timeout(WAIT, stream.recv()).await {
        Ok(Some(Ok(event))) => event,
        Ok(Some(Err(e))) => panic!("watch failed: {e}"),
        Ok(None) => panic!("watch ended"),
        Err(_) => panic!("no watch event within {WAIT:?}"),
    }
}

async fn crud(store: &Store) {
    eprintln!("case: crud");
    let key = "/crud/a";
    assert_eq!(store.get(key).await.expect("get missing"), None);
    let created = store.create(key, b"v1".to_vec()).await.expect("create");
    assert_eq!(created.key, key);
    assert_eq!(created.value, b"v1");
    assert_eq!(created.create_revision, created.mod_revision);
    assert_eq!(store.get(key).await.expect("get"), Some(created.clone()));

    let again = store.create(key, b"v2".to_vec()).await;
    assert!(
        matches!(again, Err(Error::AlreadyExists { .. })),
        "{again:?}"
    );

    let stale = store
        .update(key, b"v2".to_vec(), created.mod_revision - 1)
        .await;
    match stale {
        Err(Error::Conflict {
            expected, actual, ..
        }) => {
            assert_eq!(
                (expected, actual),
                (created.mod_revision - 1, created.mod_revision)
            )
        }
        other => panic!("update with a stale revision: {other:?}"),
    }
    let updated = store
        .update(key, b"v2".to_vec(), created.mod_revision)
        .await
        .expect("update");
    assert_eq!(updated.create_revision, created.create_revision);
    assert!(updated.mod_revision > created.mod_revision);
    assert_eq!(updated.value, b"v2");
    assert_eq!(
        store.get(key).await.expect("get updated"),
        Some(updated.clone())
    );

    let missing = store.update("/crud/missing", b"x".to_vec(), 1).await;
    assert!(
        matches!(missing, Err(Error::NotFound { .. })),
        "{missing:?}"
    );

    let stale_delete = store.delete(key, Some(created.mod_revision)).await;
    assert!(
        matches!(stale_delete, Err(Error::Conflict { .. })),
        "{stale_delete:?}"
    );
    let deleted = store
        .delete(key, Some(updated.mod_revision))
        .await
        .expect("delete");
    assert_eq!(deleted.value, b"v2");
    assert_eq!(deleted.create_revision, created.create_revision);
    assert_eq!(
        deleted.mod_revision,
        store.current_revision().await.expect("revision")
    );
    assert_eq!(store.get(key).await.expect("get deleted"), None);
    let twice = store.delete(key, None).await;
    assert!(matches!(twice, Err(Error::NotFound { .. })), "{twice:?}");

    // Recreated: a new incarnation with a new create revision; unconditional delete.
    let recreated = store.create(key, b"v3".to_vec()).await.expect("recreate");
    assert!(recreated.create_revision > deleted.mod_revision);
    store.delete(key, None).await.expect("unconditional delete");
}

async fn revisions_are_global_and_monotonic(store: &Store) {
    eprintln!("case: revisions");
    let start = store.current_revision().await.expect("revision");
    let a = store
        .create("/rev/a", b"1".to_vec())
        .await
        .expect("create a");
    let b = store
        .create("/rev/b", b"1".to_vec())
        .await
        .expect("create b");
    assert_eq!(a.mod_revision, start + 1);
    assert_eq!(b.mod_revision, start + 2);
    // Failed writes do not take a revision.
    assert!(store.create("/rev/a", b"2".to_vec()).await.is_err());
    assert!(
        store
            .update("/rev/b", b"2".to_vec(), a.mod_revision)
            .await
            .is_err()
    );
    let a2 = store
        .update("/rev/a", b"2".to_vec(), a.mod_revision)
        .await
        .expect("update a");
    assert_eq!(a2.mod_revision, start + 3);
    assert_eq!(store.current_revision().await.expect("revision"), start + 3);
}

async fn list_order_paging_and_revisions(store: &Store) {
    eprintln!("case: list");
    store
        .create("/list0", b"outside".to_vec())
        .await
        .expect("create outside");
    for name in ["c", "a", "e", "b", "d"] {
        store
            .create(&format!("/list/{name}"), name.as_bytes().to_vec())
            .await
            .expect("create");
    }
    let all = store.list("/list/", None, 0, None).await.expect("list");
    let keys: Vec<_> = all.items.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(
        keys,
        ["/list/a", "/list/b", "/list/c", "/list/d", "/list/e"]
    );
    assert!(!all.more);
    assert_eq!(
        all.revision,
        store.current_revision().await.expect("revision")
    );

    let first = store
        .list("/list/", None, 2, None)
        .await
        .expect("first page");
    assert_eq!(first.items.len(), 2);
    assert!(first.more);
    let last_key = first.items[1].key.clone();
    let second = store
        .list("/list/", Some(&last_key), 2, Some(first.revision))
        .await
        .expect("second page");
    assert_eq!(
        second
            .items
            .iter()
            .map(|kv| kv.key.as_str())
            .collect::<Vec<_>>(),
        ["/list/c", "/list/d"]
    );
    assert!(second.more);
    let third = store
        .list("/list/", Some("/list/d"), 2, Some(first.revision))
        .await
        .expect("third page");
    assert_eq!(
        third
            .items
            .iter()
            .map(|kv| kv.key.as_str())
            .collect::<Vec<_>>(),
        ["/list/e"]
    );
    assert!(!third.more);
    let exact = store
        .list("/list/", None, 5, None)
        .await
        .expect("exact page");
    assert!(!exact.more, "a page that holds every key has no more");

    // Changes after a revision do not show in a list at it.
    let before = all.revision;
    let c = &all.items[2];
    store
        .update(&c.key, b"c2".to_vec(), c.mod_revision)
        .await
        .expect("update c");
    store.delete("/list/a", None).await.expect("delete a");
    store
        .create("/list/f", b"f".to_vec())
        .await
        .expect("create f");
    let old = store
        .list("/list/", None, 0, Some(before))
        .await
        .expect("list at old revision");
    assert_eq!(old.items, all.items);
    assert_eq!(old.revision, before);
    let old_page = store
        .list("/list/", Some("/list/a"), 2, Some(before))
        .await
        .expect("old page");
    assert_eq!(old_page.items, all.items[1..3].to_vec());
    assert!(old_page.more);
    let now = store.list("/list/", None, 0, None).await.expect("list now");
    let now_keys: Vec<_> = now.items.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(
        now_keys,
        ["/list/b", "/list/c", "/list/d", "/list/e", "/list/f"]
    );
    assert_eq!(now.items[1].value, b"c2");

    let current = store.current_revision().await.expect("revision");
    let future = store.list("/list/", None, 0, Some(current + 10)).await;
    assert!(
        matches!(future, Err(Error::FutureRevision { .. })),
        "{future:?}"
    );
}

async fn watch_history_then_live_under_concurrent_writes(store: &Store) {
    eprintln!("case: watch history then live");
    let mut revisions = Vec::new();
    for i in 0..20 {
        revisions.push(
            store
                .create(&format!("/watch/h{i:02}"), vec![])
                .await
                .expect("create")
                .mod_revision,
        );
    }
    let after = revisions[9];
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut written = Vec::new();
            for i in 0..60 {
                written.push(
                    store
                        .create(&format!("/watch/l{i:02}"), vec![])
                        .await
                        .expect("create")
                        .mod_revision,
                );
                // Writes outside the prefix interleave and must not show.
                store
                    .create(&format!("/watch-other/{i}"), vec![])
                    .await
                    .expect("create outside");
            }
            written
        })
    };
    let mut stream = store.watch("/watch/", after).await.expect("watch");
    let live = writer.await.expect("writer task");
    let expected: Vec<Revision> = revisions[10..].iter().chain(live.iter()).copied().collect();
    let mut seen = Vec::new();
    while seen.len() < expected.len() {
        let event = next_event(&mut stream).await;
        assert_eq!(event.kind, EventKind::Put);
        assert!(
            event.kv.key.starts_with("/watch/"),
            "event outside the prefix: {}",
            event.kv.key
        );
        seen.push(event.kv.mod_revision);
    }
    assert_eq!(seen, expected, "every change once, in order");
    // And nothing more.
    assert!(
        tokio::time::timeout(Duration::from_millis(200), stream.recv())
            .await
            .is_err()
    );
}

async fn watch_reports_prev_values_and_deletes(store: &Store) {
    eprintln!("case: watch prev values and deletes");
    let start = store.current_revision().await.expect("revision");
    let mut stream = store.watch("/prev/", start).await.expect("watch");
    let v1 = store
        .create("/prev/k", b"v1".to_vec())
        .await
        .expect("create");
    let v2 = store
        .update("/prev/k", b"v2".to_vec(), v1.mod_revision)
        .await
        .expect("update");
    let gone = store.delete("/prev/k", None).await.expect("delete");

    let created = next_event(&mut stream).await;
    assert_eq!(
        (created.kind, created.kv.clone(), created.prev),
        (EventKind::Put, v1.clone(), None)
    );
    let updated = next_event(&mut stream).await;
    assert_eq!(
        (updated.kind, updated.kv.clone(), updated.prev),
        (EventKind::Put, v2.clone(), Some(v1))
    );
    let deleted = next_event(&mut stream).await;
    assert_eq!(deleted.kind, EventKind::Delete);
    assert_eq!(
        deleted.kv,
        KeyValue {
            mod_revision: gone.mod_revision,
            ..v2.clone()
        }
    );
    assert_eq!(deleted.prev, Some(v2));
}

async fn watch_from_the_future_waits(store: &Store) {
    eprintln!("case: watch from a future revision");
    let start = store.current_revision().await.expect("revision");
    let mut stream = store.watch("/future/", start + 2).await.expect("watch");
    for i in 0..3 {
        store
            .create(&format!("/future/{i}"), vec![])
            .await
            .expect("create");
    }
    let first = next_event(&mut stream).await;
    assert_eq!(first.kv.mod_revision, start + 3);
    assert_eq!(first.kv.key, "/future/2");
}

async fn compaction(store: &Store) {
    eprintln!("case: compaction");
    let kept = store
        .create("/compact/kept", b"old".to_vec())
        .await
        .expect("create kept");
    let mut last = kept.clone();
    for i in 0..5 {
        last = store
            .update(
                "/compact/kept",
                format!("v{i}").into_bytes(),
                last.mod_revision,
            )
            .await
            .expect("update");
    }
    let early = kept.mod_revision;
    let at = last.mod_revision;
    store
        .create("/compact/after", b"x".to_vec())
        .await
        .expect("create after");
    store.compact(at).await.expect("compact");
    store
        .compact(at)
        .await
        .expect("compacting again is a no-op");

    let list = store.list("/compact/", None, 0, Some(early)).await;
    assert!(
        matches!(list, Err(Error::Compacted { requested, compacted }) if requested == early && compacted == at),
        "{list:?}"
    );
    let mut stream = store.watch("/compact/", early).await.expect("watch");
    match tokio::time::timeout(WAIT, stream.recv()).await {
        Ok(Some(Err(Error::Compacted { compacted, .. }))) => assert_eq!(compacted, at),
        other => panic!("watch from a compacted revision: {other:?}"),
    }
    assert!(
        matches!(tokio::time::timeout(WAIT, stream.recv()).await, Ok(None)),
        "the stream ends after Compacted"
    );

    // The latest values survive, and history after the compacted revision is still there.
    assert_eq!(
        store.get("/compact/kept").await.expect("get"),
        Some(last.clone())
    );
    let at_compacted = store
        .list("/compact/", None, 0, Some(at))
        .await
        .expect("list at the compacted revision");
    assert_eq!(at_compacted.items, vec![last]);
    let mut stream = store
        .watch("/compact/", at)
        .await
        .expect("watch after compaction");
    assert_eq!(next_event(&mut stream).await.kv.key, "/compact/after");
}

async fn count(store: &Store) {
    eprintln!("case: count");
    assert_eq!(store.count("/count/").await.expect("count empty"), 0);
    for i in 0..7 {
        store
            .create(&format!("/count/{i}"), vec![])
            .await
            .expect("create");
    }
    store
        .create("/count-other", vec![])
        .await
        .expect("create outside");
    store.delete("/count/3", None).await.expect("delete");
    assert_eq!(store.count("/count/").await.expect("count"), 6);
}
