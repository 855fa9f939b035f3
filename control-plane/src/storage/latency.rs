//! Lock-free latency histograms (fixed buckets, atomics only, nothing allocated per
//! observation) and the latency of every storage operation, by operation, which the
//! apiserver's `/metrics` exports as `apiserver_storage_request_duration_seconds`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Bucket bounds (seconds) of storage latency, as etcd_request_duration_seconds has them.
pub const STORAGE_BUCKETS: &[f64] = &[
    0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0,
    10.0, 15.0, 20.0, 30.0, 45.0, 60.0,
];

/// A histogram of durations over fixed bucket bounds.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// One counter per bound (non-cumulative) plus one for +Inf.
    counts: Box<[AtomicU64]>,
    sum_nanos: AtomicU64,
}

/// A histogram's state, cumulative as Prometheus exposes it.
#[derive(Debug, PartialEq)]
pub struct HistogramSnapshot {
    /// (upper bound, observations at or below it), ascending.
    pub buckets: Vec<(f64, u64)>,
    pub count: u64,
    pub sum_seconds: f64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_nanos: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let index = self.bounds.partition_point(|bound| *bound < seconds);
        self.counts[index].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut running = 0;
        let mut buckets = Vec::with_capacity(self.bounds.len());
        for (bound, count) in self.bounds.iter().zip(self.counts.iter()) {
            running += count.load(Ordering::Relaxed);
            buckets.push((*bound, running));
        }
        let count = running + self.counts[self.bounds.len()].load(Ordering::Relaxed);
        HistogramSnapshot {
            buckets,
            count,
            sum_seconds: self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9,
        }
    }
}

/// The storage operations that are timed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    Get,
    List,
    Create,
    Update,
    Delete,
    Watch,
    Compact,
    CurrentRevision,
    Count,
}

impl Operation {
    pub const ALL: [Operation; 9] = [
        Operation::Get,
        Operation::List,
        Operation::Create,
        Operation::Update,
        Operation::Delete,
        Operation::Watch,
        Operation::Compact,
        Operation::CurrentRevision,
        Operation::Count,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Get => "get",
            Operation::List => "list",
            Operation::Create => "create",
            Operation::Update => "update",
            Operation::Delete => "delete",
            Operation::Watch => "watch",
            Operation::Compact => "compact",
            Operation::CurrentRevision => "current_revision",
            Operation::Count => "count",
        }
    }
}

/// The latency of each storage operation in this process.
pub fn operation_latency(operation: Operation) -> &'static Histogram {
    static HISTOGRAMS: std::sync::LazyLock<Vec<Histogram>> = std::sync::LazyLock::new(|| {
        Operation::ALL
            .iter()
            .map(|_| Histogram::new(STORAGE_BUCKETS))
            .collect()
    });
    &HISTOGRAMS[operation as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_bounds_inclusive() {
        static BOUNDS: &[f64] = &[0.01, 0.1];
        let histogram = Histogram::new(BOUNDS);
        histogram.observe(Duration::from_millis(10));
        histogram.observe(Duration::from_millis(50));
        histogram.observe(Duration::from_secs(2));
        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.buckets, vec![(0.01, 1), (0.1, 2)]);
        assert_eq!(snapshot.count, 3);
        assert!((snapshot.sum_seconds - 2.06).abs() < 1e-9);
    }

    #[test]
    fn every_operation_has_its_own_histogram() {
        let before = operation_latency(Operation::Count).snapshot().count;
        operation_latency(Operation::Count).observe(Duration::from_micros(5));
        assert_eq!(
            operation_latency(Operation::Count).snapshot().count,
            before + 1
        );
        assert_eq!(Operation::ALL[Operation::Count as usize], Operation::Count);
    }
}
