//! A deadline for every connection to send a complete request head: from
//! accept, and again from the end of each response while a keep-alive
//! connection idles.
//!
//! hyper's `header_read_timeout` starts only with the first byte of a head,
//! so a socket that sends nothing (or one byte, then nothing) was held open
//! forever, and enough of them locked every client out. Here the clock runs
//! whenever no request is being served: from accept (`server.read_timeout_ms`),
//! and from the last byte of each response (`server.idle_timeout_ms`, the
//! keep-alive idle time, which pooling clients expect to be generous). A
//! request whose head is complete stops it; its body has its own deadline in
//! ingest, and hyper's own header timeout still cuts a slow head off.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::http::{Request, Response};
use hyper::body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// The deadline one connection's reads are held to; `None` while a request
/// is being served.
#[derive(Debug, Clone)]
pub struct HeadDeadline {
    /// Idle time allowed after a response, before the next request's head.
    idle: Duration,
    // A std mutex: held to read or set an instant, never across an await.
    until: Arc<Mutex<Option<Instant>>>,
}

impl HeadDeadline {
    /// Starts running now (at accept), for `first`; after each response it
    /// runs again for `idle`.
    pub fn start(first: Duration, idle: Duration) -> Self {
        HeadDeadline {
            idle,
            until: Arc::new(Mutex::new(Some(Instant::now() + first))),
        }
    }

    fn get(&self) -> Option<Instant> {
        *self.until.lock().expect("deadline lock poisoned")
    }

    fn set(&self, until: Option<Instant>) {
        *self.until.lock().expect("deadline lock poisoned") = until;
    }
}

/// The connection's socket, failing reads with `TimedOut` once the deadline
/// passes with no request in service.
pub struct DeadlineIo<T> {
    io: T,
    deadline: HeadDeadline,
    sleep: Pin<Box<Sleep>>,
    armed_for: Option<Instant>,
}

impl<T> DeadlineIo<T> {
    pub fn new(io: T, deadline: HeadDeadline) -> Self {
        DeadlineIo {
            io,
            deadline,
            sleep: Box::pin(tokio::time::sleep(Duration::ZERO)),
            armed_for: None,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for DeadlineIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let read = Pin::new(&mut this.io).poll_read(cx, buf);
        if read.is_ready() {
            return read;
        }
        let Some(until) = this.deadline.get() else {
            return Poll::Pending;
        };
        if this.armed_for != Some(until) {
            this.sleep.as_mut().reset(until);
            this.armed_for = Some(until);
        }
        match this.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no complete request head in time (server.read_timeout_ms, server.idle_timeout_ms)",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for DeadlineIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// The connection's service: stops the deadline while a request is served,
/// and starts it again when the response's last byte is out (or the
/// response is dropped), so a slow reader of a large answer is not cut off.
#[derive(Debug, Clone)]
pub struct StopsDeadline<S> {
    pub inner: S,
    pub deadline: HeadDeadline,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, RB> hyper::service::Service<Request<B>> for StopsDeadline<S>
where
    S: hyper::service::Service<Request<B>, Response = Response<RB>>,
    S::Future: Send + 'static,
    RB: Body + Unpin + Send + 'static,
{
    type Response = Response<ServingBody<RB>>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn call(&self, request: Request<B>) -> Self::Future {
        let serving = Serving::begin(self.deadline.clone());
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            Ok(response.map(|inner| ServingBody {
                inner,
                serving: Some(serving),
            }))
        })
    }
}

/// A response body that keeps the deadline stopped until it is all sent.
pub struct ServingBody<B> {
    inner: B,
    serving: Option<Serving>,
}

impl<B: Body + Unpin> Body for ServingBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        let frame = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(None) = frame {
            this.serving = None;
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A request in service: the deadline is stopped until this is dropped.
pub struct Serving(HeadDeadline);

impl Serving {
    fn begin(deadline: HeadDeadline) -> Self {
        deadline.set(None);
        Serving(deadline)
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        self.0.set(Some(Instant::now() + self.0.idle));
    }
}
