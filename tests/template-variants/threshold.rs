//! Test variant of the Rust template: drop events whose /n is below
//! `min`, tag the rest with this version. The test suite writes it over a
//! fresh scaffold's src/lib.rs, with VERSION filled in.
use wasmhook_sdk::prelude::*;

#[plugin]
pub fn handle(ev: Event, cfg: &Config) -> Result<Outcome> {
    let body: Value = ev.json()?;
    let Some(n) = body["n"].as_i64() else {
        return Err(Error::msg("every event needs a numeric n"));
    };
    let min = cfg.parse_or::<i64>("min", 0)?;
    if n < min {
        return Ok(Outcome::drop(format!("n={n} is below min={min}")));
    }
    Ok(Outcome::keep(ev.with_header("x-plugin-version", "VERSION")))
}
