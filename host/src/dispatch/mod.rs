//! Signed HTTP delivery to targets, with retries.
//!
//! Invariants:
//! - Each target has its own worker, queue and `max_in_flight` semaphore: a
//!   slow or failing target never delays another.
//! - A delivery's `webhook-id` is its stable id, the same on every attempt;
//!   `webhook-timestamp` and `webhook-signature` are made fresh per attempt.
//! - Only 2xx is success. Timeouts, connection errors, 408, 429 and 5xx are
//!   retried on the target's schedule; any other status is final.

mod circuit;
mod retry;
mod sender;
pub mod signing;
mod starts;
mod worker;

pub use circuit::Circuits;
pub use retry::RetryPolicy;
pub use sender::{Reply, Sender, Verdict};
pub use worker::Dispatcher;
