//! The scheduling queue, after kube-scheduler's three queues.
//!
//! - **active**: pods ready to be tried, highest `spec.priority` first, then oldest first
//!   (creation time, then arrival), so equal pods are served FIFO.
//! - **backoff**: pods that failed recently and wait out `initial * 2^(attempts-1)` (capped)
//!   before they go back to active.
//! - **unschedulable**: pods no node could take. Retrying them is pointless until the cluster
//!   changes, so they wait for [`SchedulingQueue::move_all_to_active`] (a node added or
//!   changed, a pod deleted or finished), or for [`UNSCHEDULABLE_TIMEOUT`] as a safety net.
//!
//! A pod being scheduled is "in flight" and in none of the three. If the cluster changed while
//! it was in flight (the move request is newer than its cycle), a failure sends it to backoff
//! rather than unschedulable, so the change is not missed: upstream's `moveRequestCycle`.
//!
//! Time is passed in (`now`) so the behaviour is testable without sleeping.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use tokio::time::Instant;

use super::framework::PodInfo;

/// How long a pod may sit in the unschedulable queue without any cluster event before it is
/// retried anyway (upstream's `podMaxInUnschedulablePodsDuration`): events can be missed.
pub const UNSCHEDULABLE_TIMEOUT: Duration = Duration::from_secs(5 * 60);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Active,
    Backoff,
    Unschedulable,
    InFlight,
}

/// Order in the active queue: priority descending, then creation, then arrival.
type ActiveKey = (Reverse<i32>, Option<Timestamp>, u64, String);

struct Entry {
    pod: PodInfo,
    state: State,
    /// Failed attempts so far; drives the back-off.
    attempts: u32,
    backoff_until: Option<Instant>,
    unschedulable_since: Option<Instant>,
    /// Arrival order, for FIFO among equals.
    seq: u64,
}

impl Entry {
    fn active_key(&self, key: &str) -> ActiveKey {
        (
            Reverse(self.pod.priority),
            self.pod.created,
            self.seq,
            key.to_string(),
        )
    }
}

/// A pod handed out by [`SchedulingQueue::pop`].
#[derive(Clone, Debug)]
pub struct Popped {
    pub pod: PodInfo,
    /// Failed attempts before this one.
    pub attempts: u32,
    /// The scheduling cycle this attempt belongs to.
    pub cycle: u64,
}

pub struct SchedulingQueue {
    backoff_initial: Duration,
    backoff_max: Duration,
    entries: HashMap<String, Entry>,
    active: BTreeSet<ActiveKey>,
    next_seq: u64,
    cycle: u64,
    move_request_cycle: u64,
}

impl SchedulingQueue {
    pub fn new(backoff_initial: Duration, backoff_max: Duration) -> Self {
        SchedulingQueue {
            backoff_initial,
            backoff_max: backoff_max.max(backoff_initial),
            entries: HashMap::new(),
            active: BTreeSet::new(),
            next_seq: 0,
            cycle: 0,
            move_request_cycle: 0,
        }
    }

    /// Upstream's `calculateBackoffDuration`: doubles per failed attempt, capped.
    pub fn backoff_for(&self, attempts: u32) -> Duration {
        let mut d = self.backoff_initial;
        for _ in 1..attempts {
            if d >= self.backoff_max / 2 {
                return self.backoff_max;
            }
            d *= 2;
        }
        d.min(self.backoff_max)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn state(&self, key: &str) -> Option<State> {
        self.entries.get(key).map(|e| e.state)
    }

    pub fn has_active(&self) -> bool {
        !self.active.is_empty()
    }

    fn set_state(&mut self, key: &str, state: State) {
        let Some(e) = self.entries.get_mut(key) else {
            return;
        };
        if e.state == State::Active {
            self.active.remove(&e.active_key(key));
        }
        e.state = state;
        // The caller sets the time when it makes a pod unschedulable.
        if state != State::Unschedulable {
            e.unschedulable_since = None;
        }
        if state == State::Active {
            self.active.insert(e.active_key(key));
        }
    }

    /// Active if its back-off is over, else backoff.
    fn activate_or_backoff(&mut self, key: &str, now: Instant) {
        let backing_off = self
            .entries
            .get(key)
            .and_then(|e| e.backoff_until)
            .is_some_and(|t| t > now);
        self.set_state(
            key,
            if backing_off {
                State::Backoff
            } else {
                State::Active
            },
        );
    }

    /// A pending pod appeared or changed. A new pod (or a new incarnation of a name) goes to
    /// active; a changed unschedulable pod may now fit somewhere, so it is moved on too.
    pub fn add_or_update(&mut self, pod: PodInfo, now: Instant) {
        let key = pod.key();
        match self.entries.get_mut(&key) {
            Some(e) if e.pod.uid == pod.uid => {
                if e.pod == pod {
                    return;
                }
                let state = e.state;
                if state == State::Active {
                    self.active.remove(&e.active_key(&key));
                }
                e.pod = pod;
                match state {
                    State::Active => {
                        self.active.insert(e.active_key(&key));
                    }
                    State::Unschedulable => self.activate_or_backoff(&key, now),
                    State::Backoff | State::InFlight => {}
                }
            }
            _ => {
                self.remove(&key);
                let seq = self.next_seq;
                self.next_seq += 1;
                let entry = Entry {
                    pod,
                    state: State::Active,
                    attempts: 0,
                    backoff_until: None,
                    unschedulable_since: None,
                    seq,
                };
                self.active.insert(entry.active_key(&key));
                self.entries.insert(key, entry);
            }
        }
    }

    /// The pod is gone, bound, or no longer ours.
    pub fn remove(&mut self, key: &str) {
        if let Some(e) = self.entries.remove(key) {
            if e.state == State::Active {
                self.active.remove(&e.active_key(key));
            }
        }
    }

    /// Forgets every pod whose key `keep` rejects (after a relist: pods deleted unseen).
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        let gone: Vec<String> = self.entries.keys().filter(|k| !keep(k)).cloned().collect();
        for key in gone {
            self.remove(&key);
        }
    }

    /// The next pod to try; it stays known (in flight) until the attempt is reported.
    pub fn pop(&mut self) -> Option<Popped> {
        let first = self.active.pop_first()?;
        let key = first.3;
        let e = self.entries.get_mut(&key)?;
        e.state = State::InFlight;
        self.cycle += 1;
        Some(Popped {
            pod: e.pod.clone(),
            attempts: e.attempts,
            cycle: self.cycle,
        })
    }

    fn in_flight_entry(&mut self, pod: &PodInfo) -> Option<&mut Entry> {
        self.entries
            .get_mut(&pod.key())
            .filter(|e| e.state == State::InFlight && e.pod.uid == pod.uid)
    }

    /// No node fits: wait for a cluster change (or back off, if one came during the cycle).
    pub fn requeue_unschedulable(&mut self, pod: &PodInfo, cycle: u64, now: Instant) {
        let moved_meanwhile = self.move_request_cycle >= cycle;
        let Some(e) = self.in_flight_entry(pod) else {
            return;
        };
        e.attempts = e.attempts.saturating_add(1);
        let attempts = e.attempts;
        let key = pod.key();
        let delay = self.backoff_for(attempts);
        if let Some(e) = self.entries.get_mut(&key) {
            e.backoff_until = Some(now + delay);
        }
        if moved_meanwhile {
            self.activate_or_backoff(&key, now);
        } else {
            self.set_state(&key, State::Unschedulable);
            if let Some(e) = self.entries.get_mut(&key) {
                e.unschedulable_since = Some(now);
            }
        }
    }

    /// The attempt failed for another reason (API error): retry after the back-off.
    pub fn requeue_error(&mut self, pod: &PodInfo, now: Instant) {
        let Some(e) = self.in_flight_entry(pod) else {
            return;
        };
        e.attempts = e.attempts.saturating_add(1);
        let attempts = e.attempts;
        let delay = self.backoff_for(attempts);
        let key = pod.key();
        if let Some(e) = self.entries.get_mut(&key) {
            e.backoff_until = Some(now + delay);
        }
        self.activate_or_backoff(&key, now);
    }

    /// The attempt is over for good (bound, or dropped because someone else bound it).
    pub fn done(&mut self, pod: &PodInfo) {
        if self.in_flight_entry(pod).is_some() {
            self.remove(&pod.key());
        }
    }

    /// Something changed that may let unschedulable pods fit: move them on (active, or
    /// backoff if their back-off is not over).
    pub fn move_all_to_active(&mut self, now: Instant) {
        self.move_request_cycle = self.cycle;
        let keys: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, e)| e.state == State::Unschedulable)
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            self.activate_or_backoff(&key, now);
        }
    }

    /// Moves pods whose back-off is over to active, and pods unschedulable for longer than
    /// [`UNSCHEDULABLE_TIMEOUT`] onwards.
    pub fn flush(&mut self, now: Instant) {
        let due: Vec<(String, State)> = self
            .entries
            .iter()
            .filter(|(_, e)| match e.state {
                State::Backoff => e.backoff_until.is_none_or(|t| t <= now),
                State::Unschedulable => e
                    .unschedulable_since
                    .is_none_or(|t| t + UNSCHEDULABLE_TIMEOUT <= now),
                _ => false,
            })
            .map(|(k, e)| (k.clone(), e.state))
            .collect();
        for (key, state) in due {
            match state {
                State::Backoff => self.set_state(&key, State::Active),
                _ => self.activate_or_backoff(&key, now),
            }
        }
    }

    /// When [`SchedulingQueue::flush`] next has something to do.
    pub fn next_wakeup(&self) -> Option<Instant> {
        self.entries
            .values()
            .filter_map(|e| match e.state {
                State::Backoff => e.backoff_until,
                State::Unschedulable => e.unschedulable_since.map(|t| t + UNSCHEDULABLE_TIMEOUT),
                _ => None,
            })
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::testutil::pod;

    fn q() -> SchedulingQueue {
        SchedulingQueue::new(Duration::from_secs(1), Duration::from_secs(10))
    }

    fn ts(secs: i64) -> Option<Timestamp> {
        Timestamp::from_second(secs).ok()
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let q = q();
        let secs: Vec<u64> = (1..=6).map(|a| q.backoff_for(a).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 10, 10]);
        assert_eq!(q.backoff_for(0).as_secs(), 1);
        assert_eq!(q.backoff_for(u32::MAX).as_secs(), 10);
    }

    #[test]
    fn priority_then_creation_then_arrival() {
        let mut q = q();
        let now = Instant::now();
        let mut old = pod("old");
        old.created = ts(100);
        let mut new = pod("new");
        new.created = ts(200);
        let mut important = pod("important");
        important.created = ts(300);
        important.priority = 1000;
        let mut same_time = pod("same-time");
        same_time.created = ts(200);
        q.add_or_update(new.clone(), now);
        q.add_or_update(same_time, now);
        q.add_or_update(important, now);
        q.add_or_update(old, now);
        let order: Vec<String> = std::iter::from_fn(|| q.pop().map(|p| p.pod.name)).collect();
        assert_eq!(order, ["important", "old", "new", "same-time"]);
    }

    #[test]
    fn unschedulable_pods_wait_for_a_cluster_event() {
        let mut q = q();
        let t0 = Instant::now();
        q.add_or_update(pod("p"), t0);
        let popped = q.pop().unwrap();
        q.requeue_unschedulable(&popped.pod, popped.cycle, t0);
        assert_eq!(q.state("default/p"), Some(State::Unschedulable));
        assert!(!q.has_active());
        // Time alone (past the back-off) does not bring it back...
        q.flush(t0 + Duration::from_secs(30));
        assert_eq!(q.state("default/p"), Some(State::Unschedulable));
        // ...an event does.
        q.move_all_to_active(t0 + Duration::from_secs(30));
        assert_eq!(q.state("default/p"), Some(State::Active));
        assert_eq!(q.pop().unwrap().attempts, 1);
    }

    #[test]
    fn event_during_back_off_goes_through_backoff_queue() {
        let mut q = q();
        let t0 = Instant::now();
        q.add_or_update(pod("p"), t0);
        for attempt in 1..=3u64 {
            let popped = q.pop().unwrap();
            let now = t0 + Duration::from_secs(100 * attempt);
            q.requeue_unschedulable(&popped.pod, popped.cycle, now);
            q.move_all_to_active(now);
            // Back-off after `attempt` failures is 1, 2, 4 s.
            assert_eq!(q.state("default/p"), Some(State::Backoff));
            let wake = q.next_wakeup().unwrap();
            assert_eq!(wake - now, Duration::from_secs(1 << (attempt - 1)));
            q.flush(wake - Duration::from_millis(1));
            assert_eq!(q.state("default/p"), Some(State::Backoff));
            q.flush(wake);
            assert_eq!(q.state("default/p"), Some(State::Active));
        }
    }

    #[test]
    fn event_while_in_flight_is_not_lost() {
        let mut q = q();
        let t0 = Instant::now();
        q.add_or_update(pod("p"), t0);
        let popped = q.pop().unwrap();
        q.move_all_to_active(t0); // e.g. a node was added during the cycle
        q.requeue_unschedulable(&popped.pod, popped.cycle, t0);
        assert_eq!(q.state("default/p"), Some(State::Backoff));
        q.flush(t0 + Duration::from_secs(1));
        assert_eq!(q.state("default/p"), Some(State::Active));
    }

    #[test]
    fn unschedulable_timeout_is_a_safety_net() {
        let mut q = q();
        let t0 = Instant::now();
        q.add_or_update(pod("p"), t0);
        let popped = q.pop().unwrap();
        q.requeue_unschedulable(&popped.pod, popped.cycle, t0);
        assert_eq!(q.next_wakeup(), Some(t0 + UNSCHEDULABLE_TIMEOUT));
        q.flush(t0 + UNSCHEDULABLE_TIMEOUT);
        assert_eq!(q.state("default/p"), Some(State::Active));
    }

    #[test]
    fn errors_back_off_then_retry() {
        let mut q = q();
        let t0 = Instant::now();
        q.add_or_update(pod("p"), t0);
        let popped = q.pop().unwrap();
        q.requeue_error(&popped.pod, t0);
        assert_eq!(q.state("default/p"), Some(State::Backoff));
        q.flush(t0 + Duration::from_secs(1));
        assert!(q.has_active());
    }

    #[test]
    fn updates_deletes_and_done() {
        let mut q = q();
        let t0 = Instant::now();
        q.add_or_update(pod("p"), t0);
        let popped = q.pop().unwrap();
        q.requeue_unschedulable(&popped.pod, popped.cycle, t0);
        // An unchanged update leaves it waiting; a changed one moves it.
        q.add_or_update(pod("p"), t0 + Duration::from_secs(5));
        assert_eq!(q.state("default/p"), Some(State::Unschedulable));
        let mut changed = pod("p");
        changed.tolerations = vec![Default::default()];
        q.add_or_update(changed, t0 + Duration::from_secs(5));
        assert_eq!(q.state("default/p"), Some(State::Active));

        let popped = q.pop().unwrap();
        q.remove("default/p"); // deleted while in flight
        q.requeue_unschedulable(&popped.pod, popped.cycle, t0);
        assert!(q.is_empty(), "a deleted pod is not requeued");

        q.add_or_update(pod("p"), t0);
        let popped = q.pop().unwrap();
        // Re-created under the same name while in flight: the old attempt must not touch it.
        let mut reborn = pod("p");
        reborn.uid = "other".into();
        q.add_or_update(reborn, t0);
        q.done(&popped.pod);
        assert_eq!(q.state("default/p"), Some(State::Active));
        let popped = q.pop().unwrap();
        q.done(&popped.pod);
        assert!(q.is_empty());
    }
}
