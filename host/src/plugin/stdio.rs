//! A plugin's stdout and stderr: the first bytes kept for the log, the rest
//! discarded, and the guest never told.
//!
//! wasmtime's `MemoryOutputPipe` fails writes past its capacity, and Rust's
//! `println!` panics on a failed write, so a chatty plugin trapped and failed
//! its event. Printing too much is not a reason to lose an event.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// Always ready for this many bytes: the guest never waits on its output.
const WRITE_BUDGET: usize = 64 * 1024;

/// Output kept up to a capacity; the excess is counted and dropped.
#[derive(Debug, Clone)]
pub struct CappedOutput {
    // A std mutex: held to append bytes, never across an await.
    inner: Arc<Mutex<Kept>>,
}

#[derive(Debug)]
struct Kept {
    capacity: usize,
    bytes: Vec<u8>,
    dropped: usize,
}

impl CappedOutput {
    pub fn new(capacity: usize) -> Self {
        CappedOutput {
            inner: Arc::new(Mutex::new(Kept {
                capacity,
                bytes: Vec::new(),
                dropped: 0,
            })),
        }
    }

    /// What was kept, and how many bytes were dropped past the capacity.
    pub fn contents(&self) -> (Vec<u8>, usize) {
        let kept = self.inner.lock().expect("stdio lock poisoned");
        (kept.bytes.clone(), kept.dropped)
    }

    /// Forget what was kept, for the next event of a kept instance.
    pub fn clear(&self) {
        let mut kept = self.inner.lock().expect("stdio lock poisoned");
        kept.bytes.clear();
        kept.dropped = 0;
    }

    fn append(&self, bytes: &[u8]) {
        let mut kept = self.inner.lock().expect("stdio lock poisoned");
        let room = kept.capacity.saturating_sub(kept.bytes.len());
        let (now, later) = bytes.split_at(room.min(bytes.len()));
        kept.bytes.extend_from_slice(now);
        kept.dropped += later.len();
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for CappedOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.append(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_BUDGET)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CappedOutput {
    async fn ready(&mut self) {}
}

impl AsyncWrite for CappedOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.append(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl IsTerminal for CappedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CappedOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_first_bytes_and_counts_the_rest() {
        let mut out = CappedOutput::new(10);
        out.write(Bytes::from_static(b"hello ")).unwrap();
        out.write(Bytes::from_static(b"world, and more")).unwrap();
        assert_eq!(out.check_write().unwrap(), WRITE_BUDGET, "never full");
        let (kept, dropped) = out.contents();
        assert_eq!(kept, b"hello worl");
        assert_eq!(dropped, 11);
    }
}
