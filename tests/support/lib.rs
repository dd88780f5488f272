//! Test support: start the real `wasmhook` binary, run a local HTTP target,
//! and wait on conditions (never on fixed sleeps).

pub use router::binary;

pub mod browser;
pub mod load;
mod receiver;
mod router;
pub mod stream;
pub mod templates;

pub use receiver::{Behaviour, Received, Receiver};
pub use router::{ADMIN_TOKEN, Router, Setup, Signal, on_postgres, plugin_wasm};

use std::time::Duration;

/// The smallest useful config: source `s`, target `t` on `rx`, and a route
/// named `route` from one to the other through `plugins`.
pub fn s_to_t(rx: &Receiver, route: &str, plugins: &[&str]) -> String {
    let plugins: Vec<String> = plugins.iter().map(|p| format!("\"{p}\"")).collect();
    format!(
        "[[sources]]\nname = \"s\"\n\n[[targets]]\nname = \"t\"\nurl = \"{}\"\n\n\
         [[routes]]\nname = \"{route}\"\nsource = \"s\"\nplugins = [{}]\ntargets = [\"t\"]\n",
        rx.url("t"),
        plugins.join(", ")
    )
}

/// Poll `check` until it returns `Some`, or panic with `what` after `timeout`.
/// Used only where no event can be awaited (another process's state).
pub async fn eventually<T>(what: &str, timeout: Duration, check: impl FnMut() -> Option<T>) -> T {
    eventually_or_say(what, timeout, check, String::new).await
}

/// [`eventually`], adding what `say` returns to the panic: what the test
/// saw by then (a process's last log lines, say).
pub async fn eventually_or_say<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Option<T>,
    say: impl FnOnce() -> String,
) -> T {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}{}", say());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
