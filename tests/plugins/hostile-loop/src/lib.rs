//! Hostile test plugin: spins forever. The router's deadline must stop it.
use wasmhook_sdk::prelude::*;

#[plugin]
pub fn handle(ev: Event, _cfg: &Config) -> Result<Outcome> {
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
        if n == u64::MAX {
            return Ok(Outcome::keep(ev));
        }
    }
}
