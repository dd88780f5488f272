//! What a plugin sees of time and chance: the same every time it runs on
//! the same event, so a replay or a re-run reproduces its output.
//!
//! - The wall clock reads the event's `received_at`, whenever it is asked.
//! - The monotonic clock starts at zero and moves 1 µs per reading: code
//!   that measures elapsed time, or waits for it to pass, still progresses.
//! - Random bytes (`wasi:random`, secure and insecure, and the insecure
//!   seed) come from a ChaCha stream seeded with the event's id.
//!
//! So a plugin gets no entropy: it must never make secrets. The router's
//! own signing keys and ids never come from here.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rand_wasi::SeedableRng;
use rand_wasi::rngs::StdRng;
use sha2::{Digest, Sha256};
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtxBuilder};

/// Give `builder` the event's clocks and randomness.
pub fn for_event(builder: &mut WasiCtxBuilder, event_id: &str, received_at_ms: u64) {
    let seed: [u8; 32] = Sha256::new()
        .chain_update(b"wasmhook plugin randomness\0")
        .chain_update(event_id.as_bytes())
        .finalize()
        .into();
    let mut insecure = seed;
    insecure[0] ^= 0xff;
    builder
        .wall_clock(EventClock(Duration::from_millis(received_at_ms)))
        .monotonic_clock(StepClock::default())
        .secure_random(StdRng::from_seed(seed))
        .insecure_random(StdRng::from_seed(insecure))
        .insecure_random_seed(u128::from_le_bytes(
            seed[..16].try_into().expect("16 bytes"),
        ));
}

/// A wall clock stopped at the event's arrival.
struct EventClock(Duration);

impl HostWallClock for EventClock {
    fn resolution(&self) -> Duration {
        Duration::from_millis(1)
    }

    fn now(&self) -> Duration {
        self.0
    }
}

/// A monotonic clock that ticks once per reading.
#[derive(Default)]
struct StepClock {
    next_ns: AtomicU64,
}

/// Nanoseconds the monotonic clock moves per reading.
const STEP_NS: u64 = 1_000;

impl HostMonotonicClock for StepClock {
    fn resolution(&self) -> u64 {
        STEP_NS
    }

    fn now(&self) -> u64 {
        self.next_ns.fetch_add(STEP_NS, Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clocks_are_fixed_and_stepping() {
        let wall = EventClock(Duration::from_millis(1_700_000_000_123));
        assert_eq!(wall.now(), wall.now());
        assert_eq!(wall.now().as_millis(), 1_700_000_000_123);
        let mono = StepClock::default();
        let (a, b) = (mono.now(), mono.now());
        assert_eq!(b - a, STEP_NS);
    }
}
