//! Test plugin: reports what it sees of time and chance, in headers: the
//! wall clock (`x-now`, ms), how far the monotonic clock moved between two
//! readings (`x-step`, ns), and a hash under std's random keys (`x-dice`).
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use wasmhook_sdk::prelude::*;

#[plugin]
pub fn handle(mut ev: Event, _cfg: &Config) -> Result<Outcome> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis();
    let t0 = Instant::now();
    let step = Instant::now().duration_since(t0).as_nanos();
    let dice = RandomState::new().hash_one(42u64);
    ev.set_header("x-now", now.to_string());
    ev.set_header("x-step", step.to_string());
    ev.set_header("x-dice", dice.to_string());
    Ok(Outcome::keep(ev))
}
