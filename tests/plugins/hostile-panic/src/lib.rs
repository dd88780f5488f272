//! Hostile test plugin: panics on every event.
use wasmhook_sdk::prelude::*;

#[plugin]
pub fn handle(ev: Event, _cfg: &Config) -> Result<Outcome> {
    panic!("hostile-panic was asked to handle {}", ev.id);
}
