//! Where retention's reading of old events stopped, for both stores.
//!
//! Each pass reads on from there, so an old event is read once, not on every
//! pass: an event that deliveries hold (dead ones are kept 30 days by
//! default) would otherwise be read again at every pass for as long as they
//! do. Such an event is deleted with its last delivery instead, by the
//! statement that deletes the delivery, and one processed or re-run after
//! the reading passed it moves the reading back ([`PruneCursor::again_from`]).
//! Every [`RESCAN_EVERY`] the reading starts from the first again: a
//! backstop for an event freed in a way these miss (a failed route's row
//! deleted by hand, say, or on PostgreSQL one that two nodes freed at once
//! past the 10,000 a node checks again at its next pass).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::event::now_ms;

/// How often retention reads every old event again from the first.
pub const RESCAN_EVERY: Duration = Duration::from_secs(600);

/// An event's row is written a little after the time it is stamped with
/// (its routes run first, and the commit waits its turn): the reading stops
/// short of events this recent, so that one committed late, behind where it
/// stopped, is still read (with a retention this short).
pub const SETTLE_MS: i64 = 10_000;

/// An event's key in time order: `(received_at, id, source)`.
pub type EventKey = (i64, String, String);

/// Before every event.
fn the_first() -> EventKey {
    (i64::MIN, String::new(), String::new())
}

pub struct PruneCursor(Mutex<Scan>);

struct Scan {
    /// The reading has read every event up to this key.
    after: EventKey,
    /// The next pass reads from here, if it is before `after`: an event
    /// was processed or re-run since, which may have freed it.
    rewind: Option<EventKey>,
    since: Instant,
}

impl PruneCursor {
    pub fn new() -> Self {
        PruneCursor(Mutex::new(Scan {
            after: the_first(),
            rewind: None,
            since: Instant::now(),
        }))
    }

    /// Where a pass reads from (after this key). It is recorded at once, so
    /// a pass that fails reads again from here, not from past a rewind.
    pub fn start(&self) -> EventKey {
        let mut scan = self.0.lock().expect("prune cursor lock");
        if scan.since.elapsed() >= RESCAN_EVERY {
            scan.since = Instant::now();
            scan.after = the_first();
        }
        if let Some(rewind) = scan.rewind.take() {
            scan.after = scan.after.clone().min(rewind);
        }
        scan.after.clone()
    }

    /// A pass has read up to `last` (the last key it read, if it read any):
    /// the next reads on from there, but never from within the last
    /// [`SETTLE_MS`].
    pub fn read_to(&self, last: Option<EventKey>) {
        let settled = (now_ms() as i64 - SETTLE_MS, String::new(), String::new());
        let mut scan = self.0.lock().expect("prune cursor lock");
        if let Some(last) = last {
            scan.after = scan.after.clone().max(last).min(settled);
        }
    }

    /// The event received at `received_at` (ms) may be done with now, if
    /// nothing is left of it: the next pass reads it again, wherever the
    /// reading stopped. (Before every key received then: the pass reads a
    /// few events again rather than build the key just before this one.)
    pub fn again_from(&self, received_at: u64) {
        // The reading never passes the last `SETTLE_MS`: an event this
        // recent (every one processed on time) is still ahead of it, and
        // takes no lock.
        let received_at = received_at as i64;
        if received_at > now_ms() as i64 - SETTLE_MS {
            return;
        }
        let key = (received_at - 1, String::new(), String::new());
        let mut scan = self.0.lock().expect("prune cursor lock");
        if scan.rewind.as_ref().is_none_or(|r| key < *r) {
            scan.rewind = Some(key);
        }
    }

    /// Waits for `commit`, which processes or re-runs the event received at
    /// `received_at`, then reads that event again ([`Self::again_from`]):
    /// even if the commit reports an error, since it may have landed.
    pub async fn again_after<T>(&self, received_at: u64, commit: impl Future<Output = T>) -> T {
        let outcome = commit.await;
        self.again_from(received_at);
        outcome
    }

    /// Where the next pass would read from, without starting it.
    #[cfg(test)]
    pub fn after(&self) -> EventKey {
        self.0.lock().unwrap().after.clone()
    }

    /// As if [`RESCAN_EVERY`] had passed since the last rescan.
    #[cfg(test)]
    pub fn rescan_due(&self) {
        self.0.lock().unwrap().since -= RESCAN_EVERY;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(at: i64, id: &str) -> EventKey {
        (at, id.into(), "s".into())
    }

    #[test]
    fn the_reading_goes_on_from_where_it_stopped_and_back_for_an_older_event() {
        let cursor = PruneCursor::new();
        assert_eq!(cursor.start(), the_first());
        let old = now_ms() as i64 - 60_000;
        cursor.read_to(Some(key(old, "b")));
        assert_eq!(cursor.start(), key(old, "b"));
        // A pass that read nothing leaves the reading where it was.
        cursor.read_to(None);
        assert_eq!(cursor.start(), key(old, "b"));
        // An event processed late, behind the reading, moves it back; the
        // earliest such wins, and a later one does not undo it.
        cursor.again_from((old - 500) as u64);
        cursor.again_from((old - 1000) as u64);
        cursor.again_from((old - 200) as u64);
        let back = (old - 1001, String::new(), String::new());
        assert_eq!(cursor.start(), back);
        // The rewind is recorded at once: a pass that fails and reports
        // nothing reads from there again.
        assert_eq!(cursor.start(), back);
        cursor.read_to(Some(key(old, "c")));
        assert_eq!(cursor.start(), key(old, "c"));
    }

    #[test]
    fn the_reading_stops_short_of_recent_events_and_starts_over_for_the_rescan() {
        let cursor = PruneCursor::new();
        let now = now_ms() as i64;
        cursor.read_to(Some(key(now, "a")));
        let at = cursor.start();
        assert!(at.0 <= now - SETTLE_MS && at.1.is_empty(), "{at:?}");
        // A recent event is still ahead of the reading: no rewind.
        cursor.again_from(now as u64);
        assert_eq!(cursor.start(), at);
        cursor.rescan_due();
        assert_eq!(cursor.start(), the_first());
        assert_eq!(cursor.start(), the_first());
    }
}
