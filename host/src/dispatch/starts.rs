//! When attempts to a target may start: its `rate_limit`, and its pauses
//! (a 429's `Retry-After` holds the whole target, not only that delivery).
//!
//! The rate is GCRA: a target has a theoretical arrival time (`tat`); an
//! attempt may start once `tat - tolerance` has come, and each start moves
//! `tat` on by one interval (`every`). A quiet target's `tat` falls behind
//! the clock, which lets `burst` attempts start at once. A pause moves
//! `tat` forward.
//!
//! A delivery waiting for its turn stays unclaimed: it is neither leased
//! nor counted as an attempt. For a fast rate (a start every 100 ms or
//! less), a worker waits out any pause, claims what may start within about
//! 100 ms, then reserves exactly that many starts. For a slow rate, or a
//! pause on a target without one, it reserves first, waits for the first
//! start, then claims; starts that found no delivery are given back,
//! unless starts were reserved after them.
//!
//! Where `tat` lives: in this process, or, for a target with a rate on a
//! shared store (PostgreSQL), in the database, so that the rate holds for
//! every node together. A shared reservation is one statement per batch of
//! starts; if the database fails, the batch falls back to this process's
//! book (the rate then holds per node, until the database answers again).
//! A target without a rate is paused per node.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::config::RateLimit;
use crate::store::SharedStarts;

/// The longest a `Retry-After` may pause a target.
const MAX_PAUSE: Duration = Duration::from_secs(3600);

/// The start book of every target this process delivers to.
pub struct Starts {
    origin: Instant,
    /// Per target, on a clock of µs since `origin`.
    local: Mutex<HashMap<String, Book>>,
    shared: Option<Arc<dyn SharedStarts>>,
}

/// When each of a batch's attempts may start.
#[derive(Debug)]
pub struct Reserved {
    pub at: Vec<Instant>,
    /// The book's `tat` just after this reservation, and whether it is the
    /// shared book's: a refund applies only while nobody reserved since.
    end: Option<(bool, i64)>,
}

impl Starts {
    pub fn new(shared: Option<Arc<dyn SharedStarts>>) -> Self {
        Starts {
            origin: Instant::now(),
            local: Mutex::new(HashMap::new()),
            shared,
        }
    }

    fn now_us(&self) -> i64 {
        self.origin.elapsed().as_micros() as i64
    }

    /// Reserve `n` starts to `target` (at least one).
    pub async fn reserve(&self, target: &str, n: usize, rate: Option<RateLimit>) -> Reserved {
        let n = n.max(1);
        if let (Some(shared), Some(rate)) = (&self.shared, rate) {
            let every = us(rate.every);
            match shared.reserve_starts(target, n as u32, every).await {
                Ok((base, now)) => {
                    let here = Instant::now();
                    let at = offsets(base, now, n, every, us(rate.tolerance()))
                        .map(|d| here + d)
                        .collect();
                    let end = Some((true, base + n as i64 * every));
                    return Reserved { at, end };
                }
                Err(e) => tracing::warn!(
                    target = %target,
                    "rate limit: the shared store failed ({e}); this node keeps the rate by itself meanwhile"
                ),
            }
        }
        let (every, tolerance) = rate.map_or((0, 0), |r| (us(r.every), us(r.tolerance())));
        let now = self.now_us();
        let (delays, end) = self.book(target, now, |book| {
            (book.reserve(now, n, every, tolerance), book.tat)
        });
        let here = Instant::now();
        Reserved {
            at: delays.into_iter().map(|d| here + d).collect(),
            end: rate.map(|_| (false, end)),
        }
    }

    /// When the next start to `target` may come, reserving nothing: now,
    /// unless the target is paused or its rate is spent ahead.
    pub async fn ready_at(&self, target: &str, rate: Option<RateLimit>) -> Instant {
        let tolerance = rate.map_or(0, |r| us(r.tolerance()));
        if let (Some(shared), Some(_)) = (&self.shared, rate) {
            match shared.next_start(target, tolerance).await {
                Ok(ahead) => return Instant::now() + Duration::from_micros(ahead.max(0) as u64),
                Err(e) => {
                    tracing::warn!(target = %target, "rate limit: the shared store failed ({e})")
                }
            }
        }
        let now = self.now_us();
        let ahead = self.book(target, now, |book| book.tat - tolerance - now);
        Instant::now() + Duration::from_micros(ahead.max(0) as u64)
    }

    fn book<T>(&self, target: &str, now: i64, f: impl FnOnce(&mut Book) -> T) -> T {
        let mut local = self.local.lock().expect("start book lock poisoned");
        // Looked up before inserting: no key is allocated per batch.
        if let Some(book) = local.get_mut(target) {
            return f(book);
        }
        f(local.entry(target.to_string()).or_insert(Book { tat: now }))
    }

    /// Give back the last `n` starts of `reserved`, not used, unless
    /// starts were reserved after them (given back then, they would
    /// overlap those): unused, they are only capacity lost.
    pub async fn refund(
        &self,
        target: &str,
        reserved: &Reserved,
        n: usize,
        rate: Option<RateLimit>,
    ) {
        let (Some(rate), Some((shared, end))) = (rate, reserved.end) else {
            return;
        };
        if n == 0 {
            return;
        }
        let every = us(rate.every);
        match (&self.shared, shared) {
            (Some(book), true) => {
                if let Err(e) = book.refund_starts(target, n as u32, every, end).await {
                    tracing::warn!(target = %target, "rate limit: the shared store failed ({e})");
                }
            }
            _ => {
                let now = self.now_us();
                self.book(target, now, |book| book.refund(n, every, end));
            }
        }
    }

    /// Start nothing more to `target` for `pause` (its `Retry-After`), at
    /// most [`MAX_PAUSE`]; returns how long that is.
    pub async fn pause(&self, target: &str, pause: Duration, rate: Option<RateLimit>) -> Duration {
        let pause = pause.min(MAX_PAUSE);
        // The first start after the pause may come `tolerance` early.
        let ahead = us(pause) + rate.map_or(0, |r| us(r.tolerance()));
        if let (Some(shared), Some(_)) = (&self.shared, rate) {
            match shared.hold_starts(target, ahead).await {
                Ok(()) => return pause,
                Err(e) => {
                    tracing::warn!(target = %target, "pausing the target: the shared store failed ({e}); pausing this node only")
                }
            }
        }
        let now = self.now_us();
        self.book(target, now, |book| book.hold(now, ahead));
        pause
    }
}

/// One target's GCRA state: its theoretical arrival time, in µs.
#[derive(Debug)]
struct Book {
    tat: i64,
}

impl Book {
    /// Reserve `n` starts at `now`; each one's delay from `now`.
    fn reserve(&mut self, now: i64, n: usize, every: i64, tolerance: i64) -> Vec<Duration> {
        let base = self.tat.max(now);
        self.tat = base + n as i64 * every;
        offsets(base, now, n, every, tolerance).collect()
    }

    /// Give back `n` starts if `tat` is still `end`.
    fn refund(&mut self, n: usize, every: i64, end: i64) {
        if self.tat == end {
            self.tat -= n as i64 * every;
        }
    }

    /// No start before `now + ahead - tolerance`.
    fn hold(&mut self, now: i64, ahead: i64) {
        self.tat = self.tat.max(now + ahead);
    }
}

fn us(d: Duration) -> i64 {
    d.as_micros() as i64
}

/// GCRA: the `n` starts after `tat` went from `base` (≥ `now`) on by
/// `every` each, as delays from `now`: start j may come at
/// `base + j × every - tolerance`, and not before now.
fn offsets(
    base: i64,
    now: i64,
    n: usize,
    every: i64,
    tolerance: i64,
) -> impl Iterator<Item = Duration> {
    (0..n as i64)
        .map(move |j| Duration::from_micros((base + j * every - tolerance - now).max(0) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: i64 = 1000;

    fn ms(delays: Vec<Duration>) -> Vec<u64> {
        delays.iter().map(|d| d.as_millis() as u64).collect()
    }

    #[test]
    fn starts_are_spaced_by_the_rate_after_a_burst() {
        // 50/s, a burst of 3: one every 20 ms, 40 ms early at most.
        let (every, tolerance) = (20 * MS, 40 * MS);
        let mut book = Book { tat: 0 };
        // A quiet target: the burst goes at once, the rest one per 20 ms.
        assert_eq!(ms(book.reserve(0, 3, every, tolerance)), [0, 0, 0]);
        assert_eq!(ms(book.reserve(0, 4, every, tolerance)), [20, 40, 60, 80]);
        // Unused starts are given back: the next takes the first's place,
        // unless starts were reserved after them.
        book.refund(2, every, 140 * MS);
        assert_eq!(ms(book.reserve(0, 1, every, tolerance)), [60]);
        book.refund(1, every, 100 * MS);
        assert_eq!(
            book.tat,
            120 * MS,
            "not given back over a later reservation"
        );
        // Half-way, the delays count from then.
        assert_eq!(ms(book.reserve(50 * MS, 1, every, tolerance)), [30]);
        // Once the target was quiet long enough, a burst goes at once again.
        assert_eq!(ms(book.reserve(1000 * MS, 3, every, tolerance)), [0, 0, 0]);
        assert_eq!(ms(book.reserve(1000 * MS, 1, every, tolerance)), [20]);
    }

    #[test]
    fn a_pause_holds_every_start_with_or_without_a_rate() {
        let mut book = Book { tat: 0 };
        assert_eq!(ms(book.reserve(0, 2, 0, 0)), [0, 0]);
        book.hold(0, 2000 * MS);
        assert_eq!(ms(book.reserve(500 * MS, 2, 0, 0)), [1500, 1500]);
        // 10/s, a burst of 5: a pause of 1 s holds `ahead` = 1 s + 400 ms.
        let mut book = Book { tat: 0 };
        book.hold(0, 1400 * MS);
        assert_eq!(
            ms(book.reserve(0, 6, 100 * MS, 400 * MS)),
            [1000, 1100, 1200, 1300, 1400, 1500]
        );
        // A later, shorter pause does not shorten it.
        book.hold(0, 10 * MS);
        assert_eq!(ms(book.reserve(0, 1, 100 * MS, 400 * MS)), [1600]);
    }

    #[tokio::test]
    async fn the_book_keeps_targets_apart_and_caps_a_pause() {
        let starts = Starts::new(None);
        let rate = Some(RateLimit {
            every: Duration::from_secs(1),
            burst: 1,
        });
        let t0 = Instant::now();
        let first = starts.reserve("t", 2, rate).await;
        let other = starts.reserve("u", 1, rate).await;
        let late = |at: Instant| at.saturating_duration_since(t0);
        assert!(late(first.at[0]) < Duration::from_millis(100));
        assert!(late(first.at[1]) >= Duration::from_millis(900));
        assert!(
            late(other.at[0]) < Duration::from_millis(100),
            "another target waits for none"
        );
        // A Retry-After of a day holds the target for the cap.
        starts.pause("u", Duration::from_secs(86_400), None).await;
        let held = starts.reserve("u", 1, None).await;
        assert!(late(held.at[0]) >= MAX_PAUSE - Duration::from_secs(1));
        assert!(late(held.at[0]) <= MAX_PAUSE + Duration::from_secs(1));
    }
}
