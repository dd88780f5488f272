//! Hostile test plugin: recurses until the stack runs out.
use wasmhook_sdk::prelude::*;

fn dive(depth: u64, pad: [u8; 64]) -> u64 {
    let pad = std::hint::black_box(pad);
    if depth == u64::MAX {
        depth
    } else {
        dive(depth + 1, pad) + u64::from(pad[0])
    }
}

#[plugin]
pub fn handle(ev: Event, _cfg: &Config) -> Result<Outcome> {
    let d = dive(0, [1; 64]);
    log::info(format!("{d}"));
    Ok(Outcome::keep(ev))
}
