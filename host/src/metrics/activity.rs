//! What happened in each second of the last hour: events in, deliveries
//! out, failed attempts. A ring of one slot per second, so its size is
//! fixed, and a slot left from an hour ago reads as zero.

use serde::Serialize;

/// Whole seconds kept, before the one under way.
pub const WINDOW: usize = 3600;
/// One slot more, for the second under way.
const SLOTS: usize = WINDOW + 1;

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    /// The second (since the epoch) this slot counts; older means empty.
    second: u64,
    events_in: u32,
    delivered: u32,
    failed: u32,
}

#[derive(Debug)]
pub struct Activity {
    slots: Box<[Slot; SLOTS]>,
}

impl Default for Activity {
    fn default() -> Self {
        Activity {
            slots: Box::new([Slot::default(); SLOTS]),
        }
    }
}

/// What happened, per second, oldest first, ending at `end` (a second
/// since the epoch, exclusive).
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Series {
    pub end: u64,
    pub step_seconds: u64,
    pub events_in: Vec<u32>,
    pub delivered: Vec<u32>,
    pub failed: Vec<u32>,
}

#[derive(Debug, Clone, Copy)]
pub enum Happened {
    EventIn,
    Delivered,
    /// An attempt that did not deliver (to be retried, or dead).
    Failed,
}

impl Activity {
    pub fn record(&mut self, now_s: u64, what: Happened) {
        let slot = &mut self.slots[(now_s % SLOTS as u64) as usize];
        if slot.second != now_s {
            *slot = Slot {
                second: now_s,
                ..Slot::default()
            };
        }
        let n = match what {
            Happened::EventIn => &mut slot.events_in,
            Happened::Delivered => &mut slot.delivered,
            Happened::Failed => &mut slot.failed,
        };
        *n = n.saturating_add(1);
    }

    /// The last `seconds` (up to an hour) before `now_s`, the second under
    /// way excluded: it is not over yet.
    pub fn series(&self, now_s: u64, seconds: usize) -> Series {
        let seconds = seconds.min(WINDOW);
        let mut out = Series {
            end: now_s,
            step_seconds: 1,
            ..Series::default()
        };
        for s in now_s.saturating_sub(seconds as u64)..now_s {
            let slot = self.slots[(s % SLOTS as u64) as usize];
            let slot = if slot.second == s {
                slot
            } else {
                Slot::default()
            };
            out.events_in.push(slot.events_in);
            out.delivered.push(slot.delivered);
            out.failed.push(slot.failed);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_second_and_forgets_after_an_hour() {
        let mut a = Activity::default();
        a.record(100, Happened::EventIn);
        a.record(100, Happened::EventIn);
        a.record(101, Happened::Delivered);
        a.record(102, Happened::Failed);
        let s = a.series(103, 4);
        assert_eq!(s.events_in, [0, 2, 0, 0]);
        assert_eq!(s.delivered, [0, 0, 1, 0]);
        assert_eq!(s.failed, [0, 0, 0, 1]);
        // An hour later the same slots read empty, and are reused cleanly.
        let later = 100 + SLOTS as u64;
        a.record(later, Happened::Delivered);
        let s = a.series(later + 1, 3);
        assert_eq!((s.events_in, s.delivered), (vec![0, 0, 0], vec![0, 0, 1]));
    }
}
