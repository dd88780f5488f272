//! Test plugin, built twice (versioned-v1, versioned-v2) from this one file:
//! sets header `x-plugin-version` to the build's version, so a hot-swap test
//! can tell which version served each event.
use wasmhook_sdk::prelude::*;

const VERSION: &str = match env!("CARGO_PKG_NAME").as_bytes() {
    b"versioned-v1" => "v1",
    _ => "v2",
};

#[plugin]
pub fn handle(mut ev: Event, _cfg: &Config) -> Result<Outcome> {
    ev.set_header("x-plugin-version", VERSION);
    Ok(Outcome::keep(ev))
}
