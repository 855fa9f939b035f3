//! Storage tests against real backends (no mocks): the conformance suite on the embedded store
//! and on a real etcd, embedded durability across SIGKILL and reopen, group commit under 64
//! concurrent writers, and an etcd client that survives losing the leader of a 3-member cluster.

#[path = "storage/conformance.rs"]
mod conformance;
#[path = "storage/etcd_process.rs"]
mod etcd_process;

use std::collections::BTreeMap;
use std::future::Future;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use keel_control_plane::storage::{
    EmbeddedOptions, EmbeddedStore, Error, EventKind, Revision, Store,
};

use crate::etcd_process::{Cluster, etcd_available};

/// Set in the child process of the SIGKILL test: the store directory to write into.
const CHILD_DIR_ENV: &str = "KEEL_STORAGE_TEST_CHILD_DIR";

fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(future)
}

async fn with_timeout<F: Future>(what: &str, limit: Duration, future: F) -> F::Output {
    tokio::time::timeout(limit, future)
        .await
        .unwrap_or_else(|_| panic!("{what} took longer than {limit:?}"))
}

#[test]
fn conformance_embedded() {
    let dir = tempfile::tempdir().expect("tempdir");
    block_on(async {
        let store = Store::open_embedded(&dir.path().join("store"))
            .await
            .expect("open");
        with_timeout(
            "the conformance suite",
            Duration::from_secs(120),
            conformance::run_suite(&store),
        )
        .await;
    });
}

#[test]
fn conformance_etcd() {
    if !etcd_available("conformance_etcd") {
        return;
    }
    let cluster = Cluster::start(1);
    block_on(async {
        let store = Store::connect_etcd(&cluster.endpoints(), "/keel-test")
            .await
            .expect("connect");
        with_timeout(
            "the conformance suite",
            Duration::from_secs(120),
            conformance::run_suite(&store),
        )
        .await;
    });
}

#[test]
fn embedded_reopen_continues_revisions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let last = block_on(async {
        let store = Store::open_embedded(dir.path()).await.expect("open");
        let a = store.create("/a", b"1".to_vec()).await.expect("create");
        store
            .update("/a", b"2".to_vec(), a.mod_revision)
            .await
            .expect("update")
            .mod_revision
    });
    block_on(async {
        let store = Store::open_embedded(dir.path()).await.expect("reopen");
        assert_eq!(store.current_revision().await.expect("revision"), last);
        assert_eq!(
            store.get("/a").await.expect("get").map(|kv| kv.value),
            Some(b"2".to_vec())
        );
        let next = store
            .create("/b", vec![])
            .await
            .expect("create after reopen");
        assert_eq!(next.mod_revision, last + 1);
        // History from before the reopen is still there for watches.
        let mut stream = store.watch("/", 0).await.expect("watch");
        let first = conformance::next_event(&mut stream).await;
        assert_eq!((first.kind, first.kv.mod_revision), (EventKind::Put, 1));
    });
}

/// In the child process (only): writes from 8 tasks until killed, printing every
/// acknowledged write as `acked KEY REVISION`.
#[test]
fn durability_child_writer() {
    let Ok(dir) = std::env::var(CHILD_DIR_ENV) else {
        return;
    };
    block_on(async {
        let store = Store::open_embedded(std::path::Path::new(&dir))
            .await
            .expect("child open");
        let tasks: Vec<_> = (0..8)
            .map(|task| {
                let store = store.clone();
                tokio::spawn(async move {
                    for i in 0u64.. {
                        let key = format!("/durable/{task}/{i}");
                        let kv = store
                            .create(&key, key.as_bytes().to_vec())
                            .await
                            .expect("child create");
                        println!("acked {key} {}", kv.mod_revision);
                    }
                })
            })
            .collect();
        for task in tasks {
            let _ = task.await;
        }
    });
}

#[test]
fn embedded_keeps_every_acknowledged_write_across_sigkill() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "durability_child_writer",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the writer child");
    let stdout = child.stdout.take().expect("child stdout");
    let (lines_tx, lines_rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut acked = BTreeMap::new();
    let started = Instant::now();
    while acked.len() < 500 {
        let line = match lines_rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => line,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "child stopped acknowledging writes ({e:?}) after {} acks",
                    acked.len()
                );
            }
        };
        if let Some((key, revision)) = parse_ack(&line) {
            acked.insert(key, revision);
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "child too slow"
        );
    }
    child.kill().expect("SIGKILL the child");
    child.wait().expect("reap the child");
    reader.join().expect("stdout reader");
    // Acks printed before the kill but read after it count too.
    acked.extend(lines_rx.try_iter().filter_map(|line| parse_ack(&line)));

    block_on(async {
        let store = Store::open_embedded(dir.path())
            .await
            .expect("reopen after SIGKILL");
        for (key, revision) in &acked {
            let kv = store
                .get(key)
                .await
                .expect("get")
                .unwrap_or_else(|| panic!("acknowledged {key} is lost"));
            assert_eq!(kv.mod_revision, *revision, "{key}");
        }
        let highest = acked.values().copied().max().expect("some acks");
        let current = store.current_revision().await.expect("revision");
        assert!(current >= highest);
        let next = store
            .create("/after-crash", vec![])
            .await
            .expect("create after crash");
        assert_eq!(next.mod_revision, current + 1);
        eprintln!(
            "{} acknowledged writes survived SIGKILL; revision continues at {}",
            acked.len(),
            next.mod_revision
        );
    });
}

#[test]
fn embedded_watch_that_falls_behind_gets_lagged_and_ends() {
    let dir = tempfile::tempdir().expect("tempdir");
    block_on(async {
        let options = EmbeddedOptions {
            live_buffer: 4,
            watch_buffer: 8,
            ..EmbeddedOptions::default()
        };
        let store = Store::Embedded(
            EmbeddedStore::open_with(dir.path(), options)
                .await
                .expect("open"),
        );
        let mut stream = store.watch("/", 0).await.expect("watch");
        // One batch per write: far more than the stream and the broadcast hold together.
        for i in 0..40 {
            store
                .create(&format!("/lag/{i}"), vec![])
                .await
                .expect("create");
        }
        let mut delivered = 0;
        loop {
            match with_timeout("a lagging watch", Duration::from_secs(10), stream.recv()).await {
                Some(Ok(_)) => delivered += 1,
                Some(Err(Error::WatchLagged)) => break,
                other => panic!("expected WatchLagged, got {other:?}"),
            }
        }
        assert!(
            delivered < 40,
            "a lagging watch does not deliver everything ({delivered})"
        );
        assert!(
            with_timeout(
                "the end of the stream",
                Duration::from_secs(10),
                stream.recv()
            )
            .await
            .is_none()
        );
        // Writers were never held up, and a new watch replays it all from the log.
        let mut again = store.watch("/lag/", 0).await.expect("watch again");
        for expected in 1..=40 {
            assert_eq!(
                conformance::next_event(&mut again).await.kv.mod_revision,
                expected
            );
        }
    });
}

#[test]
fn embedded_watch_replays_long_history_across_chunks_then_goes_live() {
    let dir = tempfile::tempdir().expect("tempdir");
    block_on(async {
        let store = Store::open_embedded(dir.path()).await.expect("open");
        let writers: Vec<_> = (0..16)
            .map(|w| {
                let store = store.clone();
                tokio::spawn(async move {
                    for i in 0..80 {
                        store
                            .create(&format!("/long/{w}/{i}"), vec![])
                            .await
                            .expect("create");
                    }
                })
            })
            .collect();
        for writer in writers {
            with_timeout("a writer", Duration::from_secs(60), writer)
                .await
                .expect("writer task");
        }
        let total: Revision = 16 * 80;
        let mut stream = store.watch("/long/", 0).await.expect("watch");
        let live = store
            .create("/long/live", vec![])
            .await
            .expect("create live");
        for expected in 1..=total {
            assert_eq!(
                conformance::next_event(&mut stream).await.kv.mod_revision,
                expected
            );
        }
        assert_eq!(conformance::next_event(&mut stream).await.kv, live);
    });
}

#[test]
fn embedded_store_cannot_be_opened_twice() {
    let dir = tempfile::tempdir().expect("tempdir");
    block_on(async {
        let _first = Store::open_embedded(dir.path()).await.expect("open");
        let second = Store::open_embedded(dir.path()).await;
        assert!(
            matches!(second, Err(Error::Unavailable(_))),
            "{:?}",
            second.err()
        );
    });
}

fn parse_ack(line: &str) -> Option<(String, Revision)> {
    let mut words = line.strip_prefix("acked ")?.split(' ');
    let key = words.next()?.to_string();
    let revision = words.next()?.parse().ok()?;
    Some((key, revision))
}

#[test]
fn embedded_group_commit_gives_64_concurrent_writers_distinct_revisions() {
    const WRITERS: usize = 64;
    const PER_WRITER: usize = 50;
    let dir = tempfile::tempdir().expect("tempdir");
    block_on(async {
        let store = Store::open_embedded(dir.path()).await.expect("open");
        let start = store.current_revision().await.expect("revision");
        let began = Instant::now();
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let store = store.clone();
                tokio::spawn(async move {
                    let mut revisions = Vec::with_capacity(PER_WRITER);
                    let mut latencies = Vec::with_capacity(PER_WRITER);
                    for i in 0..PER_WRITER {
                        let sent = Instant::now();
                        let kv = store
                            .create(&format!("/gc/{w}/{i}"), vec![0; 64])
                            .await
                            .expect("create");
                        latencies.push(sent.elapsed());
                        revisions.push(kv.mod_revision);
                    }
                    (revisions, latencies)
                })
            })
            .collect();
        let mut all = Vec::new();
        let mut latencies = Vec::new();
        for writer in writers {
            let (revisions, writer_latencies) =
                with_timeout("a writer", Duration::from_secs(120), writer)
                    .await
                    .expect("writer task");
            assert!(
                revisions.windows(2).all(|w| w[0] < w[1]),
                "one writer's revisions increase"
            );
            all.extend(revisions);
            latencies.extend(writer_latencies);
        }
        latencies.sort_unstable();
        let p99 = latencies[latencies.len() * 99 / 100];
        let elapsed = began.elapsed();
        let total = WRITERS * PER_WRITER;
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), total, "every write got its own revision");
        assert_eq!(all.first().copied(), Some(start + 1));
        assert_eq!(
            all.last().copied(),
            Some(start + total as Revision),
            "no holes"
        );
        assert_eq!(store.count("/gc/").await.expect("count"), total as u64);
        eprintln!(
            "{total} creates from {WRITERS} writers in {elapsed:?} ({:.0} writes/s, p99 latency {p99:?}; unoptimized build)",
            total as f64 / elapsed.as_secs_f64()
        );
    });
}

#[test]
fn etcd_survives_losing_the_leader_of_a_three_member_cluster() {
    if !etcd_available("etcd_survives_losing_the_leader_of_a_three_member_cluster") {
        return;
    }
    let mut cluster = Cluster::start(3);
    let endpoints = cluster.endpoints();
    let leader = block_on(leader_index(&endpoints));
    block_on(async {
        let store = Store::connect_etcd(&endpoints, "/ha")
            .await
            .expect("connect");
        let first = store
            .create("/k/0", b"0".to_vec())
            .await
            .expect("create before the kill");
        let mut stream = store.watch("/k/", first.mod_revision).await.expect("watch");

        eprintln!("killing the leader {}", cluster.members[leader].name);
        cluster.members[leader].kill();
        let began = Instant::now();

        let mut written = Vec::new();
        for i in 1..=20 {
            let kv = with_timeout(
                "a write after the kill",
                Duration::from_secs(30),
                store.create(&format!("/k/{i}"), vec![]),
            )
            .await
            .expect("create after the kill");
            written.push(kv.mod_revision);
        }
        eprintln!("writes resumed within {:?} of the kill", began.elapsed());
        let listed = with_timeout(
            "a list after the kill",
            Duration::from_secs(30),
            store.list("/k/", None, 0, None),
        )
        .await
        .expect("list after the kill");
        assert_eq!(listed.items.len(), 21);
        assert_eq!(
            store.get("/k/0").await.expect("get after the kill"),
            Some(first)
        );

        let mut seen = Vec::new();
        while seen.len() < written.len() {
            seen.push(conformance::next_event(&mut stream).await.kv.mod_revision);
        }
        assert_eq!(
            seen, written,
            "the watch delivers every write after the kill, once, in order"
        );
    });
}

/// Which of `endpoints` is the raft leader.
async fn leader_index(endpoints: &[String]) -> usize {
    for (index, endpoint) in endpoints.iter().enumerate() {
        let mut client = etcd_client::Client::connect([endpoint], None)
            .await
            .expect("connect to one member");
        let status = client.status().await.expect("member status");
        let member = status.header().expect("status header").member_id();
        if status.leader() == member {
            return index;
        }
    }
    panic!("no member says it is the leader");
}
