//! Hostile test plugin: blocks in a WASI sleep for a minute, then keeps the
//! event. No guest code runs while it sleeps, so only a wall-clock bound
//! stops it. What it prints first must still reach the router's log.
#![allow(clippy::disallowed_methods)] // sleeping is the attack

use wasmhook_sdk::prelude::*;

#[plugin]
pub fn handle(ev: Event, _cfg: &Config) -> Result<Outcome> {
    println!("hostile-sleep: going to sleep on {}", ev.id);
    std::thread::sleep(std::time::Duration::from_secs(60));
    Ok(Outcome::keep(ev))
}
