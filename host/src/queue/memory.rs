//! An in-memory [`Store`]: bounded, fast, and lost on restart.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;

use super::{AttemptResult, Delivery, QueueStats, RouteFailure, Store, StoreError};
use crate::event::Event;

/// Holds at most `capacity` items (events awaiting the pipeline, failed
/// routes, deliveries pending, in flight or dead). `accept` answers
/// [`StoreError::Full`] at the cap, so ingest says 503 instead of growing
/// without bound. A split can overshoot the cap by its fan-out, which the
/// plugin output cap bounds.
pub struct MemoryStore {
    capacity: usize,
    held: AtomicUsize,
    events_tx: mpsc::Sender<Event>,
    // A tokio mutex: `next_event` awaits the receiver while holding it.
    events_rx: tokio::sync::Mutex<mpsc::Receiver<Event>>,
    // std mutexes: held only for map and heap operations, never across an await.
    targets: Mutex<HashMap<String, TargetQueue>>,
    notify: Mutex<HashMap<String, std::sync::Arc<Notify>>>,
    dead: Mutex<Vec<Delivery>>,
    failed: Mutex<Vec<(Event, RouteFailure)>>,
    in_flight: AtomicUsize,
}

#[derive(Default)]
struct TargetQueue {
    due: BinaryHeap<Reverse<Scheduled>>,
    seq: u64,
}

struct Scheduled {
    at: Instant,
    seq: u64,
    delivery: Delivery,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

impl MemoryStore {
    pub fn new(capacity: usize) -> Self {
        let (events_tx, events_rx) = mpsc::channel(capacity.max(1));
        MemoryStore {
            capacity,
            held: AtomicUsize::new(0),
            events_tx,
            events_rx: tokio::sync::Mutex::new(events_rx),
            targets: Mutex::default(),
            notify: Mutex::default(),
            dead: Mutex::default(),
            failed: Mutex::default(),
            in_flight: AtomicUsize::new(0),
        }
    }

    fn notifier(&self, target: &str) -> std::sync::Arc<Notify> {
        self.notify
            .lock()
            .expect("notify lock poisoned")
            .entry(target.to_string())
            .or_default()
            .clone()
    }

    fn schedule(&self, delivery: Delivery, at: Instant) {
        let target = delivery.target.clone();
        {
            let mut targets = self.targets.lock().expect("targets lock poisoned");
            let queue = targets.entry(target.clone()).or_default();
            queue.seq += 1;
            let seq = queue.seq;
            queue.due.push(Reverse(Scheduled { at, seq, delivery }));
        }
        self.notifier(&target).notify_one();
    }

    /// Dead deliveries, oldest first.
    pub fn dead(&self) -> Vec<Delivery> {
        self.dead.lock().expect("dead lock poisoned").clone()
    }

    /// Routes that failed, with their reasons.
    pub fn failures(&self) -> Vec<RouteFailure> {
        self.failed
            .lock()
            .expect("failed lock poisoned")
            .iter()
            .map(|(_, f)| f.clone())
            .collect()
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn accept(&self, event: Event) -> Result<(), StoreError> {
        // Reserve a slot first, so concurrent accepts cannot overshoot.
        let reserved = self
            .held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.capacity).then_some(n + 1)
            });
        if reserved.is_err() {
            return Err(StoreError::Full);
        }
        self.events_tx.try_send(event).map_err(|_| {
            self.held.fetch_sub(1, Ordering::AcqRel);
            StoreError::Full
        })
    }

    async fn next_event(&self) -> Event {
        let mut rx = self.events_rx.lock().await;
        // The sender lives as long as `self`, so the channel never closes.
        rx.recv().await.expect("the store owns the sender")
    }

    async fn complete_event(
        &self,
        event: Event,
        deliveries: Vec<Delivery>,
        failures: Vec<RouteFailure>,
    ) -> Result<(), StoreError> {
        // The event's own slot becomes the slots of what it produced.
        self.record_rerun(event, deliveries, failures).await?;
        self.held.fetch_sub(1, Ordering::AcqRel);
        Ok(())
    }

    async fn take_failed(&self, plugin: &str) -> Vec<(Event, RouteFailure)> {
        let mut failed = self.failed.lock().expect("failed lock poisoned");
        let (taken, kept): (Vec<_>, Vec<_>) = failed
            .drain(..)
            .partition(|(_, f)| f.waiting_for.as_deref() == Some(plugin));
        *failed = kept;
        self.held.fetch_sub(taken.len(), Ordering::AcqRel);
        taken
    }

    async fn record_rerun(
        &self,
        event: Event,
        deliveries: Vec<Delivery>,
        failures: Vec<RouteFailure>,
    ) -> Result<(), StoreError> {
        self.held
            .fetch_add(deliveries.len() + failures.len(), Ordering::AcqRel);
        if !failures.is_empty() {
            let mut failed = self.failed.lock().expect("failed lock poisoned");
            failed.extend(failures.into_iter().map(|f| (event.clone(), f)));
        }
        let now = Instant::now();
        for d in deliveries {
            self.schedule(d, now);
        }
        Ok(())
    }

    async fn claim(&self, target: &str) -> Delivery {
        let notify = self.notifier(target);
        loop {
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let next_at = {
                let mut targets = self.targets.lock().expect("targets lock poisoned");
                let queue = targets.entry(target.to_string()).or_default();
                match queue.due.peek() {
                    Some(Reverse(s)) if s.at <= Instant::now() => {
                        let Reverse(s) = queue.due.pop().expect("peeked");
                        self.in_flight.fetch_add(1, Ordering::AcqRel);
                        return s.delivery;
                    }
                    Some(Reverse(s)) => Some(s.at),
                    None => None,
                }
            };
            match next_at {
                Some(at) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(at) => {}
                        () = &mut notified => {}
                    }
                }
                None => notified.await,
            }
        }
    }

    async fn finish_attempt(
        &self,
        delivery: Delivery,
        result: AttemptResult,
    ) -> Result<(), StoreError> {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
        match result {
            AttemptResult::Delivered { .. } => {
                self.held.fetch_sub(1, Ordering::AcqRel);
            }
            AttemptResult::Retry { after, .. } => self.schedule(delivery, Instant::now() + after),
            AttemptResult::Dead { .. } => {
                self.dead.lock().expect("dead lock poisoned").push(delivery)
            }
        }
        Ok(())
    }

    fn stats(&self) -> QueueStats {
        let pending = self
            .targets
            .lock()
            .expect("targets lock poisoned")
            .values()
            .map(|q| q.due.len())
            .sum();
        QueueStats {
            awaiting_pipeline: self.capacity.max(1) - self.events_tx.capacity(),
            pending_deliveries: pending,
            in_flight: self.in_flight.load(Ordering::Acquire),
            dead: self.dead.lock().expect("dead lock poisoned").len(),
            failed_routes: self.failed.lock().expect("failed lock poisoned").len(),
            capacity: self.capacity,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn event(id: &str) -> Event {
        Event {
            id: id.into(),
            source: "s".into(),
            event_type: String::new(),
            received_at: 0,
            headers: Vec::new(),
            body: bytes::Bytes::new(),
        }
    }

    fn delivery(id: &str, target: &str) -> Delivery {
        Delivery {
            id: id.into(),
            event_id: "e".into(),
            route: "r".into(),
            target: target.into(),
            event: event("e"),
            attempts: 0,
        }
    }

    #[tokio::test]
    async fn full_queue_refuses_instead_of_growing() {
        let store = MemoryStore::new(2);
        store.accept(event("1")).await.unwrap();
        store.accept(event("2")).await.unwrap();
        assert_eq!(store.accept(event("3")).await, Err(StoreError::Full));
        // Processing an event into zero deliveries frees its slot.
        let e = store.next_event().await;
        store.complete_event(e, vec![], vec![]).await.unwrap();
        store.accept(event("3")).await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn retries_wait_for_their_time_and_targets_are_separate() {
        let store = std::sync::Arc::new(MemoryStore::new(10));
        let e = event("1");
        store.accept(e.clone()).await.unwrap();
        let e = store.next_event().await;
        store
            .complete_event(e, vec![delivery("a", "t1"), delivery("b", "t2")], vec![])
            .await
            .unwrap();
        let a = store.claim("t1").await;
        assert_eq!(a.id, "a");
        let b = store.claim("t2").await;
        assert_eq!(b.id, "b");
        let start = Instant::now();
        store
            .finish_attempt(
                a,
                AttemptResult::Retry {
                    after: Duration::from_secs(5),
                    error: "500".into(),
                },
            )
            .await
            .unwrap();
        let again = store.claim("t1").await;
        assert_eq!(again.id, "a");
        assert!(start.elapsed() >= Duration::from_secs(5));
        store
            .finish_attempt(again, AttemptResult::Dead { error: "x".into() })
            .await
            .unwrap();
        store
            .finish_attempt(b, AttemptResult::Delivered { status: 200 })
            .await
            .unwrap();
        let stats = store.stats();
        assert_eq!(
            (stats.dead, stats.in_flight, stats.pending_deliveries),
            (1, 0, 0)
        );
    }
}
