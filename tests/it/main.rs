//! End-to-end tests: the real `wasmhook` binary, real plugins built from
//! source (`cargo xtask build-plugins`), and a real HTTP target on 127.0.0.1.

mod cli;
mod cluster;
mod control;
mod dashboard;
mod delivery;
mod durable;
mod hostile;
mod ingest;
mod metrics;
mod openapi;
mod plugins;
mod reload;
mod security;
mod telemetry;
mod templates;

use std::time::Duration;

/// Generous: CI machines are small, and a timeout here only bounds a failure.
pub const WAIT: Duration = Duration::from_secs(20);

/// Poll an async check until it yields `Some`, for state in another process.
pub async fn eventually_async<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {WAIT:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The most requests that arrived within any one second (by arrival time,
/// `got` in order of arrival).
pub fn most_in_a_second(got: &[wasmhook_e2e::Received]) -> usize {
    got.iter()
        .enumerate()
        .map(|(i, first)| {
            got[i..]
                .iter()
                .take_while(|r| r.at - first.at < Duration::from_secs(1))
                .count()
        })
        .max()
        .unwrap_or(0)
}
