//! Test plugin: sets header `x-tag` to config `tag`, and routes the event to the
//! targets in config `to` (comma-separated; empty means the route's targets).
use wasmhook_sdk::prelude::*;

#[plugin]
pub fn handle(mut ev: Event, cfg: &Config) -> Result<Outcome> {
    log::info(format!("tagging {}", ev.id));
    if let Some(tag) = cfg.get("tag") {
        ev.set_header("x-tag", tag);
    }
    Ok(Outcome::route(ev, cfg.list("to")))
}
