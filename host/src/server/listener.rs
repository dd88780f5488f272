//! The HTTP listener, with the limits axum's `serve` does not expose.
//!
//! Against floods and slow-loris clients: a cap on open connections (extra
//! ones are closed at once), a cap on header count and header bytes, and a
//! deadline for a request's headers to arrive. Body reads have their own
//! deadline in ingest. The limits are read for every new connection, so a
//! config reload changes them for the connections that follow. On shutdown
//! the listener closes and requests in progress get a grace period.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

/// Limits on HTTP connections and request heads.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    pub max_connections: usize,
    pub max_headers: usize,
    pub max_header_bytes: usize,
    pub header_timeout: Duration,
}

/// hyper refuses smaller read buffers.
const MIN_HEADER_BUFFER: usize = 8192;

/// Serve `app` on `listener` until `shutdown` resolves, then give requests in
/// progress up to `grace` to finish. `limits` is asked for every connection.
pub async fn serve_http(
    listener: TcpListener,
    app: Router,
    limits: impl Fn() -> HttpLimits,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) {
    let graceful = GracefulShutdown::new();
    let open = Arc::new(AtomicUsize::new(0));
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: back off a moment.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Answers are small and written whole: don't let Nagle hold them back.
        let _ = stream.set_nodelay(true);
        let limits = limits();
        let Some(slot) = ConnectionSlot::take(&open, limits.max_connections) else {
            tracing::warn!(
                "too many open connections ({}); closing a new one",
                limits.max_connections
            );
            continue;
        };
        let mut builder = Builder::new(TokioExecutor::new()).http1_only();
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .max_headers(limits.max_headers)
            .max_buf_size(limits.max_header_bytes.max(MIN_HEADER_BUFFER));
        let service = TowerToHyperService::new(app.clone());
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            // Client errors (resets, timeouts, oversized heads) end only
            // that connection; hyper has already answered what it could.
            let _ = conn.await;
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still in progress after {grace:?}; closing them");
    }
}

/// One open connection, counted until dropped. A counter rather than a
/// semaphore, so the cap can change while connections are open.
struct ConnectionSlot(Arc<AtomicUsize>);

impl ConnectionSlot {
    fn take(open: &Arc<AtomicUsize>, max: usize) -> Option<Self> {
        let before = open.fetch_add(1, Ordering::AcqRel);
        let slot = ConnectionSlot(open.clone());
        (before < max.max(1)).then_some(slot)
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}
