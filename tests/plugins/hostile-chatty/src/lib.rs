//! Hostile test plugin: prints far more than the router keeps (100 KiB to
//! stdout and stderr), then keeps the event. Too much output is cut, and is
//! no reason to fail the event.
#![allow(clippy::print_stdout)]

use wasmhook_sdk::prelude::*;

#[plugin]
pub fn handle(ev: Event, _cfg: &Config) -> Result<Outcome> {
    let line = "x".repeat(1023);
    for i in 0..100 {
        if i % 2 == 0 {
            println!("{line}");
        } else {
            eprintln!("{line}");
        }
    }
    Ok(Outcome::keep(ev))
}
