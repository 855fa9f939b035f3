//! The per-zone queue of nodes waiting for their NoExecute taint, drained through a token
//! bucket (kube's `RateLimitedTimedQueue` with burst 1): each node taken off the queue costs a
//! token, tokens refill at the zone's rate (nodes per second), and a rate of 0 stops the queue.
//! Pure and clock-free: every call takes `now`, so tests drive it with made-up instants.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// kube's `EvictionRateLimiterBurst`.
pub const BURST: f64 = 1.0;

/// A token bucket: starts full, refills at `qps` up to `burst`.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    qps: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(qps: f64, burst: f64, now: Instant) -> TokenBucket {
        TokenBucket {
            qps,
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Takes a token when one is there.
    pub fn try_accept(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.qps).min(self.burst);
        self.last = self.last.max(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// What lets nodes off the queue: a token bucket, or nothing at all (rate 0).
#[derive(Clone, Debug)]
pub enum Limiter {
    Never,
    Bucket(TokenBucket),
}

impl Limiter {
    pub fn with_rate(qps: f64, now: Instant) -> Limiter {
        if qps > 0.0 {
            Limiter::Bucket(TokenBucket::new(qps, BURST, now))
        } else {
            Limiter::Never
        }
    }

    pub fn qps(&self) -> f64 {
        match self {
            Limiter::Never => 0.0,
            Limiter::Bucket(bucket) => bucket.qps,
        }
    }

    pub fn try_accept(&mut self, now: Instant) -> bool {
        match self {
            Limiter::Never => false,
            Limiter::Bucket(bucket) => bucket.try_accept(now),
        }
    }
}

/// A node waiting for its taint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Queued {
    pub node: String,
    pub uid: String,
    /// Not taken before this (a failed attempt waits a little).
    pub process_at: Instant,
}

#[derive(Clone, Debug)]
pub struct RateLimitedQueue {
    limiter: Limiter,
    /// Ordered by `process_at`; a node at most once.
    items: VecDeque<Queued>,
}

impl RateLimitedQueue {
    pub fn new(qps: f64, now: Instant) -> RateLimitedQueue {
        RateLimitedQueue {
            limiter: Limiter::with_rate(qps, now),
            items: VecDeque::new(),
        }
    }

    /// Queues `node`; false when it already is.
    pub fn add(&mut self, node: &str, uid: &str, now: Instant) -> bool {
        if self.contains(node) {
            return false;
        }
        self.insert(Queued {
            node: node.to_string(),
            uid: uid.to_string(),
            process_at: now,
        });
        true
    }

    /// Puts back a node whose taint could not be written, to be tried after `wait`.
    pub fn retry(&mut self, mut item: Queued, wait: Duration, now: Instant) {
        if self.contains(&item.node) {
            return;
        }
        item.process_at = now + wait;
        self.insert(item);
    }

    fn insert(&mut self, item: Queued) {
        let at = self
            .items
            .iter()
            .position(|q| q.process_at > item.process_at)
            .unwrap_or(self.items.len());
        self.items.insert(at, item);
    }

    pub fn contains(&self, node: &str) -> bool {
        self.items.iter().any(|q| q.node == node)
    }

    /// Drops `node` from the queue; true when it was there.
    pub fn remove(&mut self, node: &str) -> bool {
        let before = self.items.len();
        self.items.retain(|q| q.node != node);
        self.items.len() != before
    }

    pub fn clear(&mut self) {
        self.items.clear();
    }

    /// Changes the rate. A queue that is out of tokens gets a new bucket that is out of
    /// tokens too, so a rate change never lets an extra node through.
    pub fn swap_limiter(&mut self, qps: f64, now: Instant) {
        if self.limiter.qps() == qps {
            return;
        }
        let mut new = Limiter::with_rate(qps, now);
        if matches!(new, Limiter::Bucket(_)) && !self.limiter.try_accept(now) {
            new.try_accept(now);
        }
        self.limiter = new;
    }

    /// Takes the nodes the limiter lets through now, oldest first: each costs a token, and
    /// the pass stops at the first node that is not due or finds no token.
    pub fn take_due(&mut self, now: Instant) -> Vec<Queued> {
        let mut taken = Vec::new();
        while let Some(head) = self.items.front() {
            if !self.limiter.try_accept(now) || now < head.process_at {
                break;
            }
            if let Some(item) = self.items.pop_front() {
                taken.push(item);
            }
        }
        taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn token_bucket_starts_full_and_refills_at_its_rate() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(0.1, 1.0, t0);
        assert!(bucket.try_accept(t0));
        assert!(!bucket.try_accept(t0));
        assert!(!bucket.try_accept(t0 + secs(9.9)));
        assert!(bucket.try_accept(t0 + secs(10.0)));
        // Idle time never saves more than the burst.
        assert!(bucket.try_accept(t0 + secs(100.0)));
        assert!(!bucket.try_accept(t0 + secs(100.0)));
    }

    #[test]
    fn queue_lets_one_node_through_per_token() {
        let t0 = Instant::now();
        let mut queue = RateLimitedQueue::new(0.5, t0);
        for node in ["a", "b", "c"] {
            assert!(queue.add(node, "uid", t0));
        }
        assert!(!queue.add("a", "uid", t0), "a node is queued once");
        let names = |items: Vec<Queued>| items.into_iter().map(|q| q.node).collect::<Vec<_>>();
        assert_eq!(names(queue.take_due(t0)), ["a"]);
        assert!(queue.take_due(t0 + secs(1.0)).is_empty());
        assert_eq!(names(queue.take_due(t0 + secs(2.0))), ["b"]);
        assert_eq!(names(queue.take_due(t0 + secs(4.0))), ["c"]);
        assert!(queue.take_due(t0 + secs(10.0)).is_empty());
    }

    #[test]
    fn rate_zero_stops_the_queue_and_a_new_rate_starts_drained() {
        let t0 = Instant::now();
        let mut queue = RateLimitedQueue::new(1.0, t0);
        queue.add("a", "uid", t0);
        queue.add("b", "uid", t0);
        queue.swap_limiter(0.0, t0);
        assert!(queue.take_due(t0 + secs(60.0)).is_empty());
        // Coming back from "never": the new bucket is drained, so the first node waits a
        // full interval.
        queue.swap_limiter(1.0, t0 + secs(60.0));
        assert!(queue.take_due(t0 + secs(60.5)).is_empty());
        assert_eq!(queue.take_due(t0 + secs(61.0)).len(), 1);
        // A swap while tokens remain keeps the new bucket full.
        let mut fresh = RateLimitedQueue::new(1.0, t0);
        fresh.add("x", "uid", t0);
        fresh.swap_limiter(0.01, t0);
        assert_eq!(fresh.take_due(t0).len(), 1);
    }

    #[test]
    fn failed_nodes_wait_and_removed_nodes_never_come_out() {
        let t0 = Instant::now();
        let mut queue = RateLimitedQueue::new(100.0, t0);
        queue.add("a", "uid", t0);
        queue.add("b", "uid", t0);
        assert!(queue.remove("b"));
        assert!(!queue.remove("b"));
        let taken = queue.take_due(t0);
        assert_eq!(taken.len(), 1);
        queue.retry(taken[0].clone(), secs(1.0), t0);
        assert!(queue.take_due(t0 + secs(0.5)).is_empty());
        assert_eq!(queue.take_due(t0 + secs(1.0))[0].node, "a");
    }
}
