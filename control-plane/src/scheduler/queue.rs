//! The scheduling queue: pods waiting for a node, in three parts as kube keeps them — active
//! (ordered by priority, then by when they first arrived), backoff (failed attempts wait 1 s,
//! doubling up to 10 s), and unschedulable (no node fit; they return when the cluster changes,
//! or after 5 minutes at the latest). A pod being scheduled is "in flight" and is neither
//! popped again nor lost if it is updated meanwhile.

use std::cmp::Ordering;
use std::collections::{BTreeSet, BinaryHeap, HashMap};
use std::time::{Duration, Instant};

pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// The longest a pod stays unschedulable without a cluster event moving it.
pub const UNSCHEDULABLE_TIMEOUT: Duration = Duration::from_secs(300);

/// The wait after `attempts` failed attempts.
pub fn backoff(attempts: u32) -> Duration {
    let doublings = attempts.saturating_sub(1).min(16);
    INITIAL_BACKOFF
        .saturating_mul(1 << doublings)
        .min(MAX_BACKOFF)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    Active,
    Backoff(Instant),
    Unschedulable(Instant),
    InFlight,
}

struct Entry<T> {
    item: T,
    priority: i32,
    /// When the pod first entered the queue (the FIFO order among equal priorities).
    arrived: Instant,
    attempts: u32,
    place: Place,
    /// Bumped whenever the pod is (re)inserted in the active heap; stale heap entries differ.
    generation: u64,
}

#[derive(PartialEq, Eq)]
struct ActiveKey {
    priority: i32,
    arrived: Instant,
    generation: u64,
    key: String,
}

impl Ord for ActiveKey {
    fn cmp(&self, other: &Self) -> Ordering {
        self.priority
            .cmp(&other.priority)
            .then_with(|| other.arrived.cmp(&self.arrived))
            .then_with(|| other.generation.cmp(&self.generation))
    }
}

impl PartialOrd for ActiveKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// A popped pod: its key, the latest object, and how many attempts failed before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Popped<T> {
    pub key: String,
    pub item: T,
    pub attempts: u32,
}

pub struct SchedulingQueue<T> {
    entries: HashMap<String, Entry<T>>,
    active: BinaryHeap<ActiveKey>,
    backoff: BTreeSet<(Instant, u64, String)>,
    /// Unschedulable pods by the time they became so.
    unschedulable: BTreeSet<(Instant, u64, String)>,
    next_generation: u64,
}

impl<T: Clone> Default for SchedulingQueue<T> {
    fn default() -> Self {
        SchedulingQueue {
            entries: HashMap::new(),
            active: BinaryHeap::new(),
            backoff: BTreeSet::new(),
            unschedulable: BTreeSet::new(),
            next_generation: 0,
        }
    }
}

impl<T: Clone> SchedulingQueue<T> {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Takes the pod out of the backoff or unschedulable set it is in.
    fn unlist(&mut self, key: &str) {
        if let Some(entry) = self.entries.get(key) {
            match entry.place {
                Place::Backoff(at) => {
                    self.backoff
                        .remove(&(at, entry.generation, key.to_string()));
                }
                Place::Unschedulable(since) => {
                    self.unschedulable
                        .remove(&(since, entry.generation, key.to_string()));
                }
                Place::Active | Place::InFlight => {}
            }
        }
    }

    fn activate(&mut self, key: &str) {
        self.unlist(key);
        self.next_generation += 1;
        let generation = self.next_generation;
        if let Some(entry) = self.entries.get_mut(key) {
            entry.place = Place::Active;
            entry.generation = generation;
            self.active.push(ActiveKey {
                priority: entry.priority,
                arrived: entry.arrived,
                generation,
                key: key.to_string(),
            });
        }
    }

    /// A new or changed pending pod. A new pod is active; an unschedulable pod that changed
    /// gets another chance at once; one in flight or backing off keeps its place.
    pub fn upsert(&mut self, key: &str, item: T, priority: i32, now: Instant) {
        match self.entries.get_mut(key) {
            Some(entry) => {
                entry.item = item;
                entry.priority = priority;
                if matches!(entry.place, Place::Unschedulable(_)) {
                    self.activate(key);
                }
            }
            None => {
                self.entries.insert(
                    key.to_string(),
                    Entry {
                        item,
                        priority,
                        arrived: now,
                        attempts: 0,
                        place: Place::Active,
                        generation: 0,
                    },
                );
                self.activate(key);
            }
        }
    }

    /// The pod is gone (deleted, or bound by someone else).
    pub fn remove(&mut self, key: &str) {
        self.unlist(key);
        self.entries.remove(key);
    }

    /// Moves the pods whose backoff ended to active, and unschedulable pods that waited too
    /// long.
    fn flush(&mut self, now: Instant) {
        while let Some(first) = self.backoff.first().cloned() {
            if first.0 > now {
                break;
            }
            self.backoff.remove(&first);
            self.activate(&first.2);
        }
        while let Some(first) = self.unschedulable.first().cloned() {
            if now.duration_since(first.0) < UNSCHEDULABLE_TIMEOUT {
                break;
            }
            self.unschedulable.remove(&first);
            self.activate(&first.2);
        }
    }

    /// The next pod to schedule (highest priority, then oldest), now in flight.
    pub fn pop(&mut self, now: Instant) -> Option<Popped<T>> {
        self.flush(now);
        while let Some(top) = self.active.pop() {
            let Some(entry) = self.entries.get_mut(&top.key) else {
                continue;
            };
            if entry.place != Place::Active || entry.generation != top.generation {
                continue;
            }
            entry.place = Place::InFlight;
            return Some(Popped {
                key: top.key,
                item: entry.item.clone(),
                attempts: entry.attempts,
            });
        }
        None
    }

    /// When a backing-off pod becomes ready (for the caller's timer).
    pub fn next_ready(&self) -> Option<Instant> {
        self.backoff.first().map(|(at, _, _)| *at)
    }

    /// The attempt found no node: wait for a cluster change.
    pub fn unschedulable(&mut self, key: &str, now: Instant) {
        self.unlist(key);
        self.next_generation += 1;
        let generation = self.next_generation;
        if let Some(entry) = self.entries.get_mut(key) {
            entry.attempts += 1;
            entry.place = Place::Unschedulable(now);
            entry.generation = generation;
            self.unschedulable
                .insert((now, generation, key.to_string()));
        }
    }

    /// The attempt failed for another reason (binding refused, API error): back off.
    pub fn retry_later(&mut self, key: &str, now: Instant) {
        self.unlist(key);
        self.next_generation += 1;
        let generation = self.next_generation;
        if let Some(entry) = self.entries.get_mut(key) {
            entry.attempts += 1;
            let at = now + backoff(entry.attempts);
            entry.place = Place::Backoff(at);
            entry.generation = generation;
            self.backoff.insert((at, generation, key.to_string()));
        }
    }

    /// The pod was bound: it leaves the queue.
    pub fn done(&mut self, key: &str) {
        self.remove(key);
    }

    /// The cluster changed (a node appeared or changed, a pod left): unschedulable pods try
    /// again, after what remains of their backoff.
    pub fn cluster_changed(&mut self, now: Instant) {
        let waiting: Vec<(Instant, u64, String)> = self.unschedulable.iter().cloned().collect();
        for (since, _, key) in waiting {
            let attempts = self.entries.get(&key).map_or(0, |e| e.attempts);
            let ready = since + backoff(attempts);
            if ready <= now {
                self.activate(&key);
            } else {
                self.unlist(&key);
                self.next_generation += 1;
                let generation = self.next_generation;
                if let Some(entry) = self.entries.get_mut(&key) {
                    entry.place = Place::Backoff(ready);
                    entry.generation = generation;
                }
                self.backoff.insert((ready, generation, key));
            }
        }
    }

    /// How many pods wait in each part: (active, backoff, unschedulable, in flight).
    pub fn counts(&self) -> (usize, usize, usize, usize) {
        let mut counts = (0, 0, 0, 0);
        for entry in self.entries.values() {
            match entry.place {
                Place::Active => counts.0 += 1,
                Place::Backoff(_) => counts.1 += 1,
                Place::Unschedulable(_) => counts.2 += 1,
                Place::InFlight => counts.3 += 1,
            }
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priority_then_arrival_order() {
        let mut queue = SchedulingQueue::default();
        let t0 = Instant::now();
        queue.upsert("a", 'a', 0, t0);
        queue.upsert("b", 'b', 100, t0 + Duration::from_millis(1));
        queue.upsert("c", 'c', 0, t0 + Duration::from_millis(2));
        queue.upsert("d", 'd', 100, t0 + Duration::from_millis(3));
        let order: Vec<char> = std::iter::from_fn(|| queue.pop(t0).map(|p| p.item)).collect();
        assert_eq!(order, ['b', 'd', 'a', 'c']);
        assert_eq!(queue.counts(), (0, 0, 0, 4));
    }

    #[test]
    fn failures_back_off_and_unschedulable_pods_wait_for_a_change() {
        let mut queue = SchedulingQueue::default();
        let t0 = Instant::now();
        queue.upsert("p", 1, 0, t0);
        assert_eq!(queue.pop(t0).map(|p| p.attempts), Some(0));
        queue.retry_later("p", t0);
        assert_eq!(queue.pop(t0), None, "backing off");
        assert_eq!(queue.next_ready(), Some(t0 + INITIAL_BACKOFF));
        let popped = queue.pop(t0 + INITIAL_BACKOFF).expect("ready again");
        assert_eq!(popped.attempts, 1);
        queue.unschedulable("p", t0 + INITIAL_BACKOFF);
        assert_eq!(
            queue.pop(t0 + Duration::from_secs(60)),
            None,
            "waits for a change"
        );
        queue.cluster_changed(t0 + Duration::from_secs(60));
        assert_eq!(
            queue.pop(t0 + Duration::from_secs(60)).map(|p| p.attempts),
            Some(2)
        );
        queue.unschedulable("p", t0 + Duration::from_secs(60));
        let later = t0 + Duration::from_secs(60) + UNSCHEDULABLE_TIMEOUT;
        assert!(queue.pop(later).is_some(), "flushed after the timeout");
        queue.done("p");
        assert!(queue.is_empty());
    }

    #[test]
    fn an_update_revives_an_unschedulable_pod_and_removal_forgets_it() {
        let mut queue = SchedulingQueue::default();
        let t0 = Instant::now();
        queue.upsert("p", 1, 0, t0);
        queue.pop(t0);
        queue.unschedulable("p", t0);
        queue.upsert("p", 2, 0, t0);
        assert_eq!(queue.pop(t0).map(|p| p.item), Some(2));
        queue.retry_later("p", t0);
        queue.remove("p");
        assert_eq!(queue.pop(t0 + MAX_BACKOFF), None);
        assert_eq!(queue.next_ready(), None);
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(2), Duration::from_secs(2));
        assert_eq!(backoff(4), Duration::from_secs(8));
        assert_eq!(backoff(5), MAX_BACKOFF);
        assert_eq!(backoff(100), MAX_BACKOFF);
    }
}
