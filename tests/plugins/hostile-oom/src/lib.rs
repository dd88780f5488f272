//! Hostile test plugin: allocates 1 MiB blocks until the memory cap stops it.
use wasmhook_sdk::prelude::*;

#[plugin]
pub fn handle(ev: Event, _cfg: &Config) -> Result<Outcome> {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        hoard.push(std::hint::black_box(vec![1u8; 1 << 20]));
        if hoard.len() == usize::MAX {
            return Ok(Outcome::keep(ev));
        }
    }
}
