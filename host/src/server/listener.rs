//! The HTTP listener, with the limits axum's `serve` does not expose.
//!
//! Against floods and slow-loris clients: a cap on open connections (extra
//! ones are closed at once), a cap on header count and header bytes, and a
//! deadline for a request's headers to arrive. Body reads have their own
//! deadline in ingest. On shutdown the listener closes and requests in
//! progress get a grace period.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

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
/// progress up to `grace` to finish.
pub async fn serve_http(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) {
    let mut builder = Builder::new(TokioExecutor::new()).http1_only();
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_headers(limits.max_headers)
        .max_buf_size(limits.max_header_bytes.max(MIN_HEADER_BUFFER));
    let graceful = GracefulShutdown::new();
    let connections = Arc::new(Semaphore::new(limits.max_connections.max(1)));
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
        let Ok(slot) = connections.clone().try_acquire_owned() else {
            tracing::warn!(
                "too many open connections ({}); closing a new one",
                limits.max_connections
            );
            continue;
        };
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
