//! Test plugin: tags each event with how many events its instance has
//! served (`x-instance-calls`), which is 1 in a fresh instance and counts up
//! under `plugins.reuse`. Config `leak_mb`: leak that much memory per call,
//! so a kept instance runs out of memory after a few events.
use std::sync::atomic::{AtomicU32, Ordering};

use wasmhook_sdk::prelude::*;

static CALLS: AtomicU32 = AtomicU32::new(0);

#[plugin]
pub fn handle(ev: Event, cfg: &Config) -> Result<Outcome> {
    let n = CALLS.fetch_add(1, Ordering::Relaxed) + 1;
    let leak_mb = cfg.parse_or::<usize>("leak_mb", 0)?;
    if leak_mb > 0 {
        // Touch every page, so the memory is really taken.
        std::mem::forget(vec![1u8; leak_mb << 20]);
    }
    Ok(Outcome::keep(
        ev.with_header("x-instance-calls", n.to_string()),
    ))
}
