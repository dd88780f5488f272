//! Hostile test plugin: emits far more output than any sane cap (64 × 256 KiB).
use wasmhook_sdk::prelude::*;

#[plugin]
pub fn handle(ev: Event, _cfg: &Config) -> Result<Outcome> {
    let big = vec![b'x'; 256 * 1024];
    let outputs = (0..64).map(|i| Event {
        id: format!("{}-{i}", ev.id),
        body: big.clone(),
        ..ev.clone()
    });
    Ok(Outcome::emit(outputs))
}
