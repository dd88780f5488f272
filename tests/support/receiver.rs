//! A local webhook target on 127.0.0.1 that records every request.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio::sync::Notify;

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    /// When it arrived.
    pub at: std::time::Instant,
    /// The status the receiver answered (0 while a `Hang` is pending).
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: Bytes,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("delivered body is JSON")
    }
}

/// How the receiver answers requests on one path.
#[derive(Debug, Clone, Copy)]
pub enum Behaviour {
    /// 200 to everything.
    Ok,
    /// `status` for the first `n` requests, then 200.
    FailFirst { n: usize, status: u16 },
    /// Always `status`.
    Always(u16),
    /// `status` for the first `n` requests whose body contains `needle`;
    /// 200 to the rest.
    FailMatching {
        needle: &'static str,
        n: usize,
        status: u16,
    },
    /// `status` until `until`, then 200: a target that is down for a while.
    FailUntil {
        until: std::time::Instant,
        status: u16,
    },
    /// Never answer (until the test ends).
    Hang,
    /// 200, after this many milliseconds.
    Slow(u64),
    /// 200, once the test calls [`Receiver::release`].
    Hold,
    /// 429 with `Retry-After: <seconds>` for the first `n` requests, then 200.
    RetryAfterSecs { n: usize, secs: u64 },
    /// 429 with `Retry-After: <HTTP-date now + secs>` for the first `n`, then 200.
    RetryAfterDate { n: usize, secs: u64 },
}

#[derive(Default)]
struct Inner {
    received: Mutex<Vec<Received>>,
    behaviours: Mutex<HashMap<String, Behaviour>>,
    counts: Mutex<HashMap<String, usize>>,
    changed: Notify,
    released: std::sync::atomic::AtomicBool,
}

/// Records requests to `http://ADDR/{path}`.
#[derive(Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    inner: Arc<Inner>,
}

impl Receiver {
    pub async fn start() -> Self {
        let inner = Arc::new(Inner::default());
        let app = axum::Router::new()
            .route("/{*path}", axum::routing::post(handle))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver { addr, inner }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}/{path}", self.addr)
    }

    pub fn set(&self, path: &str, behaviour: Behaviour) {
        self.inner
            .behaviours
            .lock()
            .unwrap()
            .insert(path.to_string(), behaviour);
    }

    /// Let every `Hold` request, pending or to come, be answered.
    pub fn release(&self) {
        self.inner
            .released
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.inner.changed.notify_waiters();
    }

    /// Everything received on `path` so far.
    pub fn on(&self, path: &str) -> Vec<Received> {
        self.inner
            .received
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    /// Wait until `path` has received at least `n` requests; returns them.
    pub async fn wait_for(&self, path: &str, n: usize, timeout: Duration) -> Vec<Received> {
        let wait = async {
            loop {
                let notified = self.inner.changed.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                let got = self.on(path);
                if got.len() >= n {
                    return got;
                }
                notified.await;
            }
        };
        match tokio::time::timeout(timeout, wait).await {
            Ok(got) => got,
            Err(_) => panic!(
                "timed out after {timeout:?} waiting for {n} requests on /{path}; got {}",
                self.on(path).len()
            ),
        }
    }
}

async fn handle(
    State(inner): State<Arc<Inner>>,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let behaviour = inner
        .behaviours
        .lock()
        .unwrap()
        .get(&path)
        .copied()
        .unwrap_or(Behaviour::Ok);
    let count = {
        let mut counts = inner.counts.lock().unwrap();
        let c = counts.entry(path.clone()).or_default();
        *c += 1;
        *c
    };
    let matching = match behaviour {
        Behaviour::FailMatching { needle, .. }
            if String::from_utf8_lossy(&body).contains(needle) =>
        {
            let mut counts = inner.counts.lock().unwrap();
            let c = counts.entry(format!("{path}\0{needle}")).or_default();
            *c += 1;
            Some(*c)
        }
        _ => None,
    };
    let mut retry_after = None;
    let status = match behaviour {
        Behaviour::Ok | Behaviour::Slow(_) | Behaviour::Hold => 200,
        Behaviour::FailFirst { n, status } if count <= n => status,
        Behaviour::RetryAfterSecs { n, secs } if count <= n => {
            retry_after = Some(secs.to_string());
            429
        }
        Behaviour::RetryAfterDate { n, secs } if count <= n => {
            let at = std::time::SystemTime::now() + Duration::from_secs(secs);
            retry_after = Some(httpdate::fmt_http_date(at));
            429
        }
        Behaviour::FailFirst { .. }
        | Behaviour::RetryAfterSecs { .. }
        | Behaviour::RetryAfterDate { .. } => 200,
        Behaviour::Always(status) => status,
        Behaviour::FailMatching { n, status, .. } if matching.is_some_and(|c| c <= n) => status,
        Behaviour::FailMatching { .. } => 200,
        Behaviour::FailUntil { until, status } if std::time::Instant::now() < until => status,
        Behaviour::FailUntil { .. } => 200,
        Behaviour::Hang => 0,
    };
    inner.received.lock().unwrap().push(Received {
        path,
        at: std::time::Instant::now(),
        status,
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body,
    });
    inner.changed.notify_waiters();
    match behaviour {
        Behaviour::Hang => std::future::pending::<()>().await,
        Behaviour::Slow(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
        Behaviour::Hold => loop {
            let released = inner.changed.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            if inner.released.load(std::sync::atomic::Ordering::SeqCst) {
                break;
            }
            released.await;
        },
        _ => {}
    }
    let mut response = (StatusCode::from_u16(status).unwrap(), "received").into_response();
    if let Some(value) = retry_after {
        response
            .headers_mut()
            .insert("retry-after", value.parse().unwrap());
    }
    response
}
