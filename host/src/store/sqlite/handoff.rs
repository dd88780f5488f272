//! New deliveries handed straight to their target's worker, in memory.
//!
//! A delivery committed by this process can go to its worker without a
//! claim query: it is inserted already leased (`in_flight`, with a lease
//! [`HANDOFF_WAIT`] longer than the worker's), and queued here once the
//! transaction commits. The table stays the truth: if the process dies, the
//! lease runs out (or the next start releases it) and a claim takes it.
//!
//! Rules:
//! - Bounded: at most [`HANDOFF_MAX`] deliveries and [`HANDOFF_BYTES`] of
//!   bodies per target wait here; beyond that, new deliveries are inserted
//!   due and wait in the table.
//! - Fair to the table: while the table holds deliveries for the target
//!   that are due (retries whose time came, a backlog, a replay), new ones
//!   join them there rather than overtake them.
//! - Never stale: an entry that waited so long that less than the worker's
//!   lease is left is dropped here; its lease then runs out and a claim
//!   takes it from the table.
//!
//! `db_next_due` is only touched on the store thread (inside jobs), so it
//! follows the table's order of changes exactly.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use super::rows::Start;
use crate::store::Delivery;

/// Most deliveries waiting in memory per target.
pub const HANDOFF_MAX: usize = 1024;
/// Most body bytes waiting in memory per target.
pub const HANDOFF_BYTES: usize = 8 << 20;
/// How long a delivery may wait here: its lease is this much longer than
/// the worker's own, so the attempt always has a whole lease left.
pub const HANDOFF_WAIT: Duration = Duration::from_secs(20);

#[derive(Default)]
pub struct Targets {
    map: Mutex<HashMap<String, Arc<TargetQueue>>>,
}

impl Targets {
    pub fn get(&self, target: &str) -> Arc<TargetQueue> {
        let mut map = self.map.lock().expect("targets lock poisoned");
        // Looked up by `&str` first: no key is allocated on the hot path.
        if let Some(q) = map.get(target) {
            return q.clone();
        }
        map.entry(target.to_string()).or_default().clone()
    }

    /// Where each of `deliveries` starts: leased and reserved here, or due
    /// in the table. Runs on the store thread, inside the job that inserts
    /// them. `waits[i]`: delivery `i` waits for an earlier one with its
    /// ordering key, so it goes to the table, where claims keep the order.
    pub fn plan(
        &self,
        deliveries: &[Delivery],
        waits: &[bool],
        now: i64,
    ) -> (Vec<Start>, Vec<Option<Handed>>) {
        let mut starts = Vec::with_capacity(deliveries.len());
        let mut handed = Vec::with_capacity(deliveries.len());
        for (d, &waits) in deliveries.iter().zip(waits) {
            if waits {
                // Not due until the one before it finishes, which wakes
                // the claim.
                starts.push(Start::Due);
                handed.push(None);
                continue;
            }
            let queue = self.get(&d.target);
            match queue.reserve(d.event.body.len(), now) {
                Some(lease_until) => {
                    starts.push(Start::Leased { lease_until });
                    handed.push(Some(Handed {
                        queue,
                        lease_until,
                        bytes: d.event.body.len(),
                        delivery: None,
                        armed: true,
                    }));
                }
                None => {
                    queue.due_in_table(now);
                    starts.push(Start::Due);
                    handed.push(None);
                }
            }
        }
        (starts, handed)
    }
}

#[derive(Default)]
pub struct TargetQueue {
    /// Wakes the target's claim: something was handed over or became due.
    pub notify: Notify,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    ready: VecDeque<(Delivery, i64)>,
    /// Entries and bytes queued or reserved by a transaction not yet committed.
    entries: usize,
    bytes: usize,
    /// The worker's lease, learnt from its claims; nothing is handed over
    /// before the target has a worker.
    lease: Option<Duration>,
    /// When the earliest delivery in the table is due (ms), as far as this
    /// process knows: `None` when there is none. Unknown counts as due.
    db_next_due: Option<i64>,
    /// Whether a claim has looked at the table yet.
    known: bool,
    /// The worker stopped claiming for a while (its target is paused, or
    /// its circuit open): nothing is handed over until it claims again.
    held: bool,
}

impl State {
    /// Whether the table may hold deliveries due by `now` (unknown counts).
    fn table_due(&self, now: i64) -> bool {
        !self.known || self.db_next_due.is_some_and(|at| at <= now)
    }

    /// Something in the table is due at `at` (ms) or later.
    fn due_at(&mut self, at: i64) {
        self.db_next_due = Some(self.db_next_due.map_or(at, |d| d.min(at)));
    }
}

impl TargetQueue {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("handoff lock poisoned")
    }

    /// A place for a delivery of `bytes`, and its lease's end; `None` when
    /// it must wait in the table.
    fn reserve(&self, bytes: usize, now: i64) -> Option<i64> {
        let mut s = self.lock();
        let lease = s.lease?;
        if s.held {
            return None;
        }
        let table_first = s.table_due(now);
        let full = s.entries >= HANDOFF_MAX || (s.entries > 0 && s.bytes + bytes > HANDOFF_BYTES);
        if table_first || full {
            return None;
        }
        s.entries += 1;
        s.bytes += bytes;
        Some(now + (lease + HANDOFF_WAIT).as_millis() as i64)
    }

    /// Something in the table is due at `at` (ms) or later.
    pub fn due_in_table(&self, at: i64) {
        self.lock().due_at(at);
    }

    /// A claim looked at the table: this is when the next one is due there.
    pub fn table_seen(&self, next: Option<i64>) {
        let mut s = self.lock();
        s.known = true;
        s.db_next_due = next;
    }

    /// Whether the table may hold deliveries due by `now`.
    pub fn table_due(&self, now: i64) -> bool {
        self.lock().table_due(now)
    }

    /// The worker stops claiming for a while: hand nothing more over, and
    /// return what waits here, for the caller to give back to the table.
    pub fn hold(&self) -> Vec<Delivery> {
        let mut s = self.lock();
        s.held = true;
        let ready: Vec<Delivery> = s.ready.drain(..).map(|(d, _)| d).collect();
        for d in &ready {
            s.entries -= 1;
            s.bytes -= d.event.body.len();
        }
        ready
    }

    /// Whether the worker has claimed and found nothing due in the table.
    #[cfg(test)]
    pub fn is_waiting(&self) -> bool {
        let s = self.lock();
        s.lease.is_some() && s.known && s.db_next_due.is_none()
    }

    /// When the table's next delivery is due, if this process knows of one.
    pub fn table_next(&self) -> Option<i64> {
        self.lock().db_next_due
    }

    /// Up to `max` handed-over deliveries with at least `lease` left, for a
    /// worker whose lease is `lease`. Stale ones are dropped: the table has
    /// them, due when their lease ends.
    pub fn take(&self, max: usize, lease: Duration, now: i64) -> Vec<Delivery> {
        let mut s = self.lock();
        s.lease = Some(lease);
        s.held = false;
        let mut got = Vec::new();
        while got.len() < max {
            let Some((d, lease_until)) = s.ready.pop_front() else {
                break;
            };
            s.entries -= 1;
            s.bytes -= d.event.body.len();
            if lease_until - now >= lease.as_millis() as i64 {
                got.push(d);
            } else {
                s.due_at(lease_until);
            }
        }
        got
    }
}

/// A place reserved for a delivery, filled once its transaction commits.
/// Dropped unfilled (the commit failed, or the row existed already), it
/// gives its place back.
pub struct Handed {
    queue: Arc<TargetQueue>,
    lease_until: i64,
    bytes: usize,
    delivery: Option<Delivery>,
    /// Still holding its place (not pushed).
    armed: bool,
}

impl Handed {
    pub fn fill(&mut self, mut delivery: Delivery) {
        delivery.lease = self.lease_until as u64;
        self.delivery = Some(delivery);
    }

    /// After the commit: queue the delivery for its worker, and return
    /// the worker's queue to wake once everything is queued.
    pub fn push(mut self) -> Arc<TargetQueue> {
        if let Some(d) = self.delivery.take() {
            debug_assert_eq!(d.event.body.len(), self.bytes);
            self.queue.lock().ready.push_back((d, self.lease_until));
            self.armed = false;
        }
        self.queue.clone()
    }
}

impl Drop for Handed {
    fn drop(&mut self) {
        if self.armed {
            let mut s = self.queue.lock();
            s.entries -= 1;
            s.bytes -= self.bytes;
            // Its row, if any, is leased: due in the table when that ends.
            s.due_at(self.lease_until);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;

    fn delivery(id: &str, body: usize) -> Delivery {
        Delivery {
            id: id.into(),
            event_id: "e".into(),
            route: "r".into(),
            target: "t".into(),
            event: Event {
                id: "e".into(),
                source: "s".into(),
                event_type: String::new(),
                received_at: 0,
                headers: Vec::new(),
                body: vec![b'x'; body].into(),
            },
            attempts: 0,
            lease: 0,
            order_key: None,
            order_block: false,
        }
    }

    const LEASE: Duration = Duration::from_secs(40);

    /// A queue whose worker has claimed and found the table empty.
    fn ready_targets() -> Targets {
        let targets = Targets::default();
        let q = targets.get("t");
        assert!(q.take(1, LEASE, 0).is_empty());
        q.table_seen(None);
        targets
    }

    #[test]
    fn nothing_is_handed_over_before_the_worker_claims_and_the_table_is_known() {
        let targets = Targets::default();
        let (starts, _) = targets.plan(&[delivery("a", 1)], &[false; 1], 0);
        assert_eq!(starts, [Start::Due]);
        targets.get("t").take(1, LEASE, 0);
        let (starts, _) = targets.plan(&[delivery("a", 1)], &[false; 1], 0);
        assert_eq!(starts, [Start::Due], "the table was never looked at");
    }

    #[test]
    fn handed_deliveries_reach_the_worker_after_the_commit_and_give_back_their_place() {
        let targets = ready_targets();
        let (starts, handed) =
            targets.plan(&[delivery("a", 10), delivery("b", 10)], &[false; 2], 1_000);
        let lease_until = 1_000 + (LEASE + HANDOFF_WAIT).as_millis() as i64;
        assert_eq!(starts, [Start::Leased { lease_until }; 2]);
        let mut handed: Vec<Handed> = handed.into_iter().flatten().collect();
        handed[0].fill(delivery("a", 10));
        handed[1].fill(delivery("b", 10));
        let q = targets.get("t");
        assert!(q.take(8, LEASE, 1_000).is_empty(), "not before the commit");
        for h in handed {
            h.push();
        }
        let got: Vec<String> = q.take(8, LEASE, 1_000).into_iter().map(|d| d.id).collect();
        assert_eq!(got, ["a", "b"]);
        let held = q.lock();
        assert_eq!((held.entries, held.bytes), (0, 0));
        drop(held);
    }

    #[test]
    fn a_failed_commit_gives_the_place_back_and_leaves_the_row_to_the_table() {
        let targets = ready_targets();
        let (_, handed) = targets.plan(&[delivery("a", 10)], &[false; 1], 1_000);
        drop(handed);
        let q = targets.get("t");
        let held = q.lock();
        assert_eq!((held.entries, held.bytes), (0, 0));
        drop(held);
        assert_eq!(
            q.table_next(),
            Some(1_000 + (LEASE + HANDOFF_WAIT).as_millis() as i64)
        );
    }

    #[test]
    fn due_work_in_the_table_goes_first_and_a_full_queue_spills_to_the_table() {
        let targets = ready_targets();
        let q = targets.get("t");
        q.due_in_table(500);
        let (starts, _) = targets.plan(&[delivery("a", 1)], &[false; 1], 1_000);
        assert_eq!(starts, [Start::Due], "a retry is due: join it in the table");
        q.table_seen(Some(5_000));
        let (starts, _) = targets.plan(&[delivery("a", 1)], &[false; 1], 1_000);
        assert!(
            matches!(starts[0], Start::Leased { .. }),
            "the retry is later"
        );

        let big = HANDOFF_BYTES / 2 + 1;
        let (_, first) = targets.plan(&[delivery("big", big)], &[false; 1], 1_000);
        let (starts, _) = targets.plan(&[delivery("big2", big)], &[false; 1], 1_000);
        assert_eq!(starts, [Start::Due], "over the byte budget");
        drop(first);
    }

    #[test]
    fn a_held_queue_gives_back_what_waits_and_hands_nothing_over_until_the_next_claim() {
        let targets = ready_targets();
        let (_, handed) = targets.plan(&[delivery("a", 10)], &[false; 1], 0);
        let mut h = handed.into_iter().flatten().next().unwrap();
        h.fill(delivery("a", 10));
        let q = h.push();
        let given_back: Vec<String> = q.hold().into_iter().map(|d| d.id).collect();
        assert_eq!(given_back, ["a"]);
        let held = q.lock();
        assert_eq!((held.entries, held.bytes), (0, 0));
        drop(held);
        let (starts, _) = targets.plan(&[delivery("b", 1)], &[false; 1], 0);
        assert_eq!(
            starts,
            [Start::Due],
            "held: new deliveries wait in the table"
        );
        // The claim takes what is in memory, then what is due in the table.
        assert!(q.take(8, LEASE, 0).is_empty());
        q.table_seen(None);
        let (starts, _) = targets.plan(&[delivery("c", 1)], &[false; 1], 0);
        assert!(
            matches!(starts[0], Start::Leased { .. }),
            "claiming again ends the hold"
        );
    }

    #[test]
    fn a_delivery_that_waited_too_long_is_left_to_the_table() {
        let targets = ready_targets();
        let (_, handed) = targets.plan(&[delivery("a", 1)], &[false; 1], 0);
        let mut h = handed.into_iter().flatten().next().unwrap();
        h.fill(delivery("a", 1));
        let _ = h.push();
        let q = targets.get("t");
        let late = HANDOFF_WAIT.as_millis() as i64 + 1;
        assert!(q.take(8, LEASE, late).is_empty());
        assert!(q.table_next().is_some());
    }
}
