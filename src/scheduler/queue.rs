//! The scheduling queue, with kube-scheduler's three sub-queues: pods ready to be tried
//! (activeQ, highest priority first, then oldest), pods waiting out their back-off (backoffQ),
//! and pods that did not fit anywhere (unschedulablePods) until a cluster change that may help
//! them, or `MAX_UNSCHEDULABLE` at the latest, moves them back.
//!
//! Pure data: time is an argument, so tests drive it without sleeping.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;

/// Upstream's `podInitialBackoffDuration` and `podMaxBackoffDuration`.
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Upstream's `podMaxInUnschedulablePodsDuration`: an unschedulable pod is retried at least
/// this often even when no event says the cluster changed.
pub const MAX_UNSCHEDULABLE: Duration = Duration::from_secs(5 * 60);

/// Where a queued pod is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Active,
    /// Waiting until the instant before it is tried again.
    Backoff(Instant),
    /// Did not fit at the instant; waits for a cluster change.
    Unschedulable(Instant),
}

#[derive(Debug)]
struct Entry {
    pod: Pod,
    state: State,
    /// The order of arrival in the active queue (upstream sorts equal priorities by the time
    /// the pod was added).
    seq: u64,
}

/// The scheduling queue, keyed by pod uid.
#[derive(Debug, Default)]
pub struct Queue {
    entries: HashMap<String, Entry>,
    /// (-priority, seq, uid) of every active entry: the first is the next to schedule.
    active: BTreeSet<(i64, u64, String)>,
    /// (due, uid) of every parked entry: back-off entries are due when their back-off ends,
    /// unschedulable ones after `MAX_UNSCHEDULABLE`.
    parked: BTreeSet<(Instant, String)>,
    /// The uids in the Unschedulable state, for cluster-change moves.
    unschedulable: HashSet<String>,
    /// Failed attempts per pod, kept while the pod is being scheduled or bound, dropped once it
    /// is bound or gone.
    attempts: HashMap<String, u32>,
    next_seq: u64,
}

/// Upstream's `calculateBackoffDuration`: 1 s doubled per failed attempt, at most 10 s.
pub fn backoff(attempts: u32) -> Duration {
    let shift = attempts.saturating_sub(1).min(16);
    (INITIAL_BACKOFF * (1u32 << shift)).min(MAX_BACKOFF)
}

fn uid(pod: &Pod) -> String {
    pod.metadata.uid.clone().unwrap_or_default()
}

fn priority(pod: &Pod) -> i64 {
    i64::from(pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0))
}

/// Whether an update can change the scheduling outcome: upstream's `isPodUpdated` ignores
/// changes to status, resourceVersion, generation and managedFields (so the scheduler's own
/// status writes do not requeue a pod).
fn relevant_change(old: &Pod, new: &Pod) -> bool {
    old.spec != new.spec
        || old.metadata.labels != new.metadata.labels
        || old.metadata.annotations != new.metadata.annotations
}

impl Queue {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn contains(&self, uid: &str) -> bool {
        self.entries.contains_key(uid)
    }

    /// Adds a new pending pod, or updates a queued one. An unschedulable pod whose spec or
    /// labels changed is moved towards the active queue (through back-off if it is not over).
    pub fn add(&mut self, pod: Pod, now: Instant) {
        let key = uid(&pod);
        let Some(entry) = self.entries.get_mut(&key) else {
            self.push_active(key, pod);
            return;
        };
        let moved =
            matches!(entry.state, State::Unschedulable(_)) && relevant_change(&entry.pod, &pod);
        entry.pod = pod;
        if moved {
            self.wake(&key, now);
        }
    }

    fn push_active(&mut self, key: String, pod: Pod) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.active.insert((-priority(&pod), seq, key.clone()));
        self.entries.insert(
            key,
            Entry {
                pod,
                state: State::Active,
                seq,
            },
        );
    }

    /// Forgets a pod (deleted, bound by someone else, or no longer ours).
    pub fn remove(&mut self, uid: &str) {
        if let Some(e) = self.entries.remove(uid) {
            self.unlink(uid, &e);
        }
        self.attempts.remove(uid);
    }

    /// Drops the index entries that point at `e`.
    fn unlink(&mut self, key: &str, e: &Entry) {
        match e.state {
            State::Active => {
                self.active
                    .remove(&(-priority(&e.pod), e.seq, key.to_string()));
            }
            State::Backoff(until) => {
                self.parked.remove(&(until, key.to_string()));
            }
            State::Unschedulable(since) => {
                self.parked
                    .remove(&(since + MAX_UNSCHEDULABLE, key.to_string()));
                self.unschedulable.remove(key);
            }
        }
    }

    /// A bound pod needs no attempts count any more.
    pub fn done(&mut self, uid: &str) {
        self.attempts.remove(uid);
    }

    /// Takes the next pod to schedule, after moving pods whose back-off is over.
    pub fn pop(&mut self, now: Instant) -> Option<Pod> {
        self.flush(now);
        let (_, _, key) = self.active.pop_first()?;
        let entry = self.entries.remove(&key)?;
        Some(entry.pod)
    }

    /// Moves back-off entries that are due to the active queue, and unschedulable entries that
    /// have waited `MAX_UNSCHEDULABLE` (upstream's periodic flushes).
    fn flush(&mut self, now: Instant) {
        while let Some((due, key)) = self.parked.first().cloned()
            && due <= now
        {
            self.activate(&key);
        }
    }

    fn activate(&mut self, key: &str) {
        let Some(e) = self.entries.remove(key) else {
            return;
        };
        self.unlink(key, &e);
        self.push_active(key.to_string(), e.pod);
    }

    /// Moves one unschedulable pod towards the active queue: straight there if its back-off
    /// (counted from its last attempt) is over, otherwise to the back-off queue.
    fn wake(&mut self, key: &str, now: Instant) {
        let attempts = self.attempts.get(key).copied().unwrap_or(0);
        let Some(State::Unschedulable(since)) = self.entries.get(key).map(|e| e.state) else {
            return;
        };
        let until = since + backoff(attempts);
        if until <= now {
            self.activate(key);
        } else if let Some(e) = self.entries.remove(key) {
            self.unlink(key, &e);
            self.park(key.to_string(), e.pod, State::Backoff(until));
        }
    }

    /// The pod did not fit anywhere: it waits for a cluster change.
    pub fn unschedulable(&mut self, pod: Pod, now: Instant) {
        let key = uid(&pod);
        *self.attempts.entry(key.clone()).or_default() += 1;
        self.park(key, pod, State::Unschedulable(now));
    }

    /// The attempt failed for another reason (a binding error): retry after the back-off.
    pub fn retry(&mut self, pod: Pod, now: Instant) {
        let key = uid(&pod);
        let attempts = self.attempts.entry(key.clone()).or_default();
        *attempts += 1;
        let until = now + backoff(*attempts);
        self.park(key, pod, State::Backoff(until));
    }

    fn park(&mut self, key: String, pod: Pod, state: State) {
        if let Some(e) = self.entries.remove(&key) {
            self.unlink(&key, &e);
        }
        match state {
            State::Backoff(until) => {
                self.parked.insert((until, key.clone()));
            }
            State::Unschedulable(since) => {
                self.parked.insert((since + MAX_UNSCHEDULABLE, key.clone()));
                self.unschedulable.insert(key.clone());
            }
            State::Active => {
                self.push_active(key, pod);
                return;
            }
        }
        self.entries.insert(key, Entry { pod, state, seq: 0 });
    }

    /// A cluster change that may make pods fit (a node added or changed, a pod removed):
    /// upstream's `MoveAllToActiveOrBackoffQueue`.
    pub fn move_all_unschedulable(&mut self, now: Instant) {
        let parked: Vec<String> = self.unschedulable.iter().cloned().collect();
        for key in parked {
            self.wake(&key, now);
        }
    }

    /// When the next parked pod becomes due, if any: the loop sleeps at most until then.
    pub fn next_due(&self) -> Option<Instant> {
        self.parked.first().map(|(due, _)| *due)
    }

    /// Whether some pod can be popped now.
    pub fn has_active(&self) -> bool {
        !self.active.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn pod(name: &str, priority: i32) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                uid: Some(format!("uid-{name}")),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                priority: Some(priority),
                ..PodSpec::default()
            }),
            ..Pod::default()
        }
    }

    fn name(p: Option<Pod>) -> Option<String> {
        p.and_then(|p| p.metadata.name)
    }

    #[test]
    fn higher_priority_first_then_arrival_order() {
        let now = Instant::now();
        let mut q = Queue::default();
        q.add(pod("a", 0), now);
        q.add(pod("b", 10), now);
        q.add(pod("c", 0), now);
        assert_eq!(name(q.pop(now)).as_deref(), Some("b"));
        assert_eq!(name(q.pop(now)).as_deref(), Some("a"));
        assert_eq!(name(q.pop(now)).as_deref(), Some("c"));
        assert_eq!(q.pop(now), None);
    }

    #[test]
    fn backoff_doubles_up_to_ten_seconds() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(2), Duration::from_secs(2));
        assert_eq!(backoff(4), Duration::from_secs(8));
        assert_eq!(backoff(5), Duration::from_secs(10));
        assert_eq!(backoff(100), Duration::from_secs(10));
    }

    #[test]
    fn unschedulable_pods_wait_for_a_cluster_change_and_their_backoff() {
        let t0 = Instant::now();
        let mut q = Queue::default();
        q.add(pod("a", 0), t0);
        let p = q.pop(t0).unwrap();
        q.unschedulable(p, t0);
        // Nothing changes: it stays parked well past its back-off.
        assert_eq!(q.pop(t0 + Duration::from_secs(30)), None);
        assert_eq!(q.next_due(), Some(t0 + MAX_UNSCHEDULABLE));
        // A node is added within the back-off: it goes to back-off, then to active.
        q.move_all_unschedulable(t0 + Duration::from_millis(500));
        assert_eq!(q.pop(t0 + Duration::from_millis(600)), None);
        assert_eq!(q.next_due(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(
            name(q.pop(t0 + Duration::from_secs(1))).as_deref(),
            Some("a")
        );
    }

    #[test]
    fn unschedulable_pods_are_retried_after_the_maximum_wait() {
        let t0 = Instant::now();
        let mut q = Queue::default();
        q.add(pod("a", 0), t0);
        let p = q.pop(t0).unwrap();
        q.unschedulable(p, t0);
        assert_eq!(name(q.pop(t0 + MAX_UNSCHEDULABLE)).as_deref(), Some("a"));
    }

    #[test]
    fn status_updates_do_not_requeue_but_spec_changes_do() {
        let t0 = Instant::now();
        let mut q = Queue::default();
        q.add(pod("a", 0), t0);
        let p = q.pop(t0).unwrap();
        q.unschedulable(p.clone(), t0);
        let mut with_status = p.clone();
        with_status.status = Some(Default::default());
        q.add(with_status, t0 + Duration::from_secs(5));
        assert_eq!(q.pop(t0 + Duration::from_secs(5)), None);
        let mut relabelled = p;
        relabelled.metadata.labels = Some([("x".to_string(), "y".to_string())].into());
        q.add(relabelled, t0 + Duration::from_secs(5));
        assert_eq!(
            name(q.pop(t0 + Duration::from_secs(5))).as_deref(),
            Some("a")
        );
    }

    #[test]
    fn binding_errors_retry_after_growing_backoff() {
        let t0 = Instant::now();
        let mut q = Queue::default();
        q.add(pod("a", 0), t0);
        let p = q.pop(t0).unwrap();
        q.retry(p, t0);
        assert_eq!(q.pop(t0), None);
        let p = q.pop(t0 + Duration::from_secs(1)).unwrap();
        q.retry(p, t0 + Duration::from_secs(1));
        assert_eq!(q.pop(t0 + Duration::from_secs(2)), None);
        assert!(q.pop(t0 + Duration::from_secs(3)).is_some());
    }

    #[test]
    fn removed_pods_are_never_popped() {
        let t0 = Instant::now();
        let mut q = Queue::default();
        q.add(pod("a", 0), t0);
        q.add(pod("b", 0), t0);
        q.remove("uid-a");
        assert_eq!(name(q.pop(t0)).as_deref(), Some("b"));
        assert!(q.is_empty());
    }
}
