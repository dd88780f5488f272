//! The HTTP listener, with the limits axum's `serve` does not expose.
//!
//! Against floods and slow-loris clients: caps on open connections, in all
//! and per client IP (extra ones are closed at once), a cap on header count
//! and header bytes, and a deadline for a complete request head that runs
//! from accept and whenever a connection idles (`idle.rs`), so silent
//! sockets are closed. Body reads have their own deadline in ingest. The
//! limits are read for every new connection, so a config reload changes
//! them for the connections that follow. On shutdown the listener closes
//! and requests in progress get a grace period.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

use super::idle::{DeadlineIo, HeadDeadline, StopsDeadline};

/// Limits on HTTP connections and request heads.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub max_headers: usize,
    pub max_header_bytes: usize,
    pub header_timeout: Duration,
    /// Keep-alive idle time between a response and the next request.
    pub idle_timeout: Duration,
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
    let open = Arc::new(Mutex::new(OpenConnections::default()));
    let mut refusals = Refusals::default();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
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
        let slot = match ConnectionSlot::take(&open, peer.ip(), &limits) {
            Ok(slot) => slot,
            Err(why) => {
                refusals.note(peer.ip(), &why);
                continue;
            }
        };
        let mut builder = Builder::new(TokioExecutor::new()).http1_only();
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .max_headers(limits.max_headers)
            .max_buf_size(limits.max_header_bytes.max(MIN_HEADER_BUFFER));
        let deadline = HeadDeadline::start(limits.header_timeout, limits.idle_timeout);
        let service = StopsDeadline {
            inner: TowerToHyperService::new(app.clone()),
            deadline: deadline.clone(),
        };
        let io = TokioIo::new(DeadlineIo::new(stream, deadline));
        let conn = builder
            .serve_connection_with_upgrades(io, service)
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

/// Open connections, in all and per client.
#[derive(Debug, Default)]
struct OpenConnections {
    total: usize,
    per_client: HashMap<IpAddr, usize>,
}

/// Who counts as one client: an IPv4 address, or an IPv6 /64 (one host's
/// share of addresses, which it can pick freely).
fn client_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        },
    }
}

/// Refused connections, logged at most every [`REFUSALS_LOG_EVERY`] so a
/// flood does not become a log flood.
#[derive(Debug, Default)]
struct Refusals {
    since_log: u64,
    last_log: Option<tokio::time::Instant>,
}

const REFUSALS_LOG_EVERY: Duration = Duration::from_secs(10);

impl Refusals {
    fn note(&mut self, ip: IpAddr, why: &str) {
        self.since_log += 1;
        let now = tokio::time::Instant::now();
        if self
            .last_log
            .is_some_and(|at| now.duration_since(at) < REFUSALS_LOG_EVERY)
        {
            return;
        }
        tracing::warn!(client = %ip, refused = self.since_log,
            "closing new connections: {why}");
        self.since_log = 0;
        self.last_log = Some(now);
    }
}

/// One open connection, counted until dropped. Counters rather than
/// semaphores, so the caps can change while connections are open.
struct ConnectionSlot {
    open: Arc<Mutex<OpenConnections>>,
    ip: IpAddr,
}

impl ConnectionSlot {
    fn take(
        open: &Arc<Mutex<OpenConnections>>,
        ip: IpAddr,
        limits: &HttpLimits,
    ) -> Result<Self, String> {
        let mut counts = open.lock().expect("connection counts poisoned");
        if counts.total >= limits.max_connections.max(1) {
            return Err(format!(
                "{} connections are open (server.max_connections)",
                counts.total
            ));
        }
        let from_ip = counts.per_client.entry(client_of(ip)).or_default();
        if *from_ip >= limits.max_connections_per_ip.max(1) {
            return Err(format!(
                "{from_ip} connections are open from this client (server.max_connections_per_ip)"
            ));
        }
        *from_ip += 1;
        counts.total += 1;
        Ok(ConnectionSlot {
            open: open.clone(),
            ip,
        })
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut counts = self.open.lock().expect("connection counts poisoned");
        counts.total -= 1;
        let client = client_of(self.ip);
        if let Some(n) = counts.per_client.get_mut(&client) {
            *n -= 1;
            if *n == 0 {
                counts.per_client.remove(&client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_count_in_all_and_per_client_and_free_on_drop() {
        let open = Arc::new(Mutex::new(OpenConnections::default()));
        let limits = HttpLimits {
            max_connections: 3,
            max_connections_per_ip: 2,
            max_headers: 1,
            max_header_bytes: 1,
            header_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(1),
        };
        let (a, b): (IpAddr, IpAddr) = ("127.0.0.2".parse().unwrap(), "127.0.0.1".parse().unwrap());
        let a1 = ConnectionSlot::take(&open, a, &limits).unwrap();
        let _a2 = ConnectionSlot::take(&open, a, &limits).unwrap();
        let refused = ConnectionSlot::take(&open, a, &limits).err().unwrap();
        assert!(refused.contains("max_connections_per_ip"), "{refused}");
        let _b1 = ConnectionSlot::take(&open, b, &limits).unwrap();
        let refused = ConnectionSlot::take(&open, b, &limits).err().unwrap();
        assert!(refused.contains("server.max_connections)"), "{refused}");
        drop(a1);
        let _b2 = ConnectionSlot::take(&open, b, &limits).unwrap();
        assert_eq!(open.lock().unwrap().total, 3);
    }

    #[test]
    fn an_ipv6_client_is_its_slash_64() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(client_of(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(
            client_of(ip("2001:db8:1:2:ffff::9")),
            client_of(ip("2001:db8:1:2::1"))
        );
        assert_ne!(
            client_of(ip("2001:db8:1:3::1")),
            client_of(ip("2001:db8:1:2::1"))
        );
        assert_eq!(client_of(ip("::ffff:127.0.0.2")), ip("127.0.0.2"));
        assert_eq!(client_of(ip("127.0.0.2")), ip("127.0.0.2"));
    }
}
