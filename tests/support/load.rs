//! A light load generator and a counting sink, for the benchmarks.
//!
//! Each runs on one thread of its own, with a single-threaded runtime and
//! plain HTTP/1 connections (hyper, no client pool), so the router under
//! test gets the rest of the machine and the raw hop (generator straight
//! into the sink) measures what the loopback and these two can do.
//!
//! Every request body starts with `{"sent_us":N,` where N is the time the
//! request was due (µs since [`clock`]'s origin, shared by the whole
//! process). The sink reads it back from what it receives, so the latency
//! it records is end to end: from when the event was due at the router to
//! when its delivery arrived. In an open loop the due time is the schedule,
//! not the moment the generator got round to sending, so a stalled router
//! cannot hide its stall (no coordinated omission).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// Microseconds since the first call in this process.
pub fn clock() -> u64 {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    ORIGIN.get_or_init(Instant::now).elapsed().as_micros() as u64
}

fn single_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a single-threaded runtime")
}

/// A body of `size` bytes or so: `template` with the due time put first.
fn stamped(template: &str, due_us: u64) -> Bytes {
    let rest = template.strip_prefix('{').expect("a JSON object template");
    Bytes::from(format!("{{\"sent_us\":{due_us},{rest}"))
}

/// The due time a body carries, if it has one.
fn stamp_of(body: &[u8]) -> Option<u64> {
    const KEY: &[u8] = b"\"sent_us\":";
    let at = body.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let digits = body[at..].iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&body[at..at + digits])
        .ok()?
        .parse()
        .ok()
}

#[derive(Default)]
struct SinkState {
    received: AtomicU64,
    /// Notified when `received` reaches `expect`.
    expect: AtomicU64,
    reached: Notify,
    /// Latency of each stamped request, µs.
    latencies: Mutex<Vec<u32>>,
    /// Requests received in each second since the sink started.
    per_second: Mutex<Vec<u64>>,
    status: AtomicU64,
}

/// Counts what it receives on any path and answers `status` (200 unless
/// set), on a thread of its own.
#[derive(Clone)]
pub struct Sink {
    pub addr: SocketAddr,
    started: Instant,
    state: Arc<SinkState>,
}

impl Sink {
    pub fn start() -> Sink {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding the sink");
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let state = Arc::new(SinkState {
            status: AtomicU64::new(200),
            ..SinkState::default()
        });
        let started = Instant::now();
        let shared = state.clone();
        std::thread::Builder::new()
            .name("bench-sink".into())
            .spawn(move || {
                single_thread_runtime().block_on(async move {
                    let listener = TcpListener::from_std(std_listener).unwrap();
                    loop {
                        let Ok((stream, _)) = listener.accept().await else {
                            continue;
                        };
                        let _ = stream.set_nodelay(true);
                        let state = shared.clone();
                        tokio::spawn(async move {
                            let service = hyper::service::service_fn(move |req| {
                                let state = state.clone();
                                async move { Ok::<_, Infallible>(receive(&state, started, req).await) }
                            });
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        });
                    }
                });
            })
            .expect("spawning the sink thread");
        Sink {
            addr,
            started,
            state,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}/{path}", self.addr)
    }

    /// Answer every request with `status` from now on.
    pub fn answer(&self, status: u16) {
        self.state.status.store(status.into(), Ordering::Relaxed);
    }

    pub fn received(&self) -> u64 {
        self.state.received.load(Ordering::Acquire)
    }

    /// Wait until `n` requests in all have arrived; `false` on timeout.
    pub async fn wait_for(&self, n: u64, timeout: Duration) -> bool {
        self.state.expect.store(n, Ordering::Release);
        let wait = async {
            loop {
                let reached = self.state.reached.notified();
                tokio::pin!(reached);
                reached.as_mut().enable();
                if self.received() >= n {
                    return;
                }
                reached.await;
            }
        };
        tokio::time::timeout(timeout, wait).await.is_ok()
    }

    /// The latencies recorded since the last call (µs), sorted.
    pub fn take_latencies(&self) -> Vec<u32> {
        let mut l = std::mem::take(&mut *self.state.latencies.lock().unwrap());
        l.sort_unstable();
        l
    }

    /// Requests per second since the sink started, one entry per second.
    pub fn per_second(&self) -> Vec<u64> {
        self.state.per_second.lock().unwrap().clone()
    }

    /// When the sink started: second 0 of [`Sink::per_second`].
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Seconds since the sink started (to index [`Sink::per_second`]).
    pub fn second_now(&self) -> usize {
        self.started.elapsed().as_secs() as usize
    }
}

async fn receive(
    state: &SinkState,
    started: Instant,
    req: hyper::Request<Incoming>,
) -> hyper::Response<Full<Bytes>> {
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    if let Some(sent) = stamp_of(&body) {
        let latency = clock().saturating_sub(sent).min(u32::MAX as u64) as u32;
        state.latencies.lock().unwrap().push(latency);
    }
    {
        let second = started.elapsed().as_secs() as usize;
        let mut per_second = state.per_second.lock().unwrap();
        if per_second.len() <= second {
            per_second.resize(second + 1, 0);
        }
        per_second[second] += 1;
    }
    let n = state.received.fetch_add(1, Ordering::AcqRel) + 1;
    if n == state.expect.load(Ordering::Acquire) {
        state.reached.notify_one();
    }
    let status = state.status.load(Ordering::Relaxed) as u16;
    hyper::Response::builder()
        .status(status)
        .body(Full::new(Bytes::new()))
        .unwrap()
}

/// How to send.
#[derive(Debug, Clone, Copy)]
pub enum Pace {
    /// `connections` senders, each sending its next request when the last
    /// one is answered.
    Closed { connections: usize },
    /// `per_second` requests on a fixed schedule, over up to `connections`
    /// connections (a request that finds none free waits, and its latency
    /// counts from when it was due).
    Open { per_second: u64, connections: usize },
}

/// What a load run saw.
#[derive(Debug, Clone)]
pub struct LoadReport {
    pub sent: u64,
    pub elapsed: Duration,
    /// Answers that were not the expected status, by status (0: no answer).
    pub unexpected: Vec<(u16, u64)>,
}

/// Send `total` requests of about `template`'s size to `url` (POST, JSON),
/// at `pace`, from a thread of its own; returns when every one is answered.
/// `expect` is the status every answer should have.
pub fn send(url: &str, template: &str, total: u64, pace: Pace, expect: u16) -> LoadReport {
    let uri: hyper::Uri = url.parse().expect("a URL");
    let authority = uri.authority().expect("a URL with a host").clone();
    let addr: SocketAddr = authority.as_str().parse().expect("an IP:port URL");
    let template = template.to_string();
    std::thread::Builder::new()
        .name("bench-load".into())
        .spawn(move || {
            single_thread_runtime().block_on(generate(addr, uri, template, total, pace, expect))
        })
        .expect("spawning the load thread")
        .join()
        .expect("the load thread panicked")
}

async fn generate(
    addr: SocketAddr,
    uri: hyper::Uri,
    template: String,
    total: u64,
    pace: Pace,
    expect: u16,
) -> LoadReport {
    let (connections, per_second) = match pace {
        Pace::Closed { connections } => (connections, None),
        Pace::Open {
            per_second,
            connections,
        } => (connections, Some(per_second)),
    };
    let next = Arc::new(AtomicU64::new(0));
    let unexpected = Arc::new(Mutex::new(std::collections::BTreeMap::<u16, u64>::new()));
    let start = Instant::now();
    let start_us = clock();
    let local = tokio::task::LocalSet::new();
    local
        .run_until(async {
            let mut tasks = tokio::task::JoinSet::new();
            for _ in 0..connections {
                let (next, unexpected, uri, template) = (
                    next.clone(),
                    unexpected.clone(),
                    uri.clone(),
                    template.clone(),
                );
                tasks.spawn_local(async move {
                    let mut conn = None;
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= total {
                            return;
                        }
                        let due_us = match per_second {
                            Some(rate) => {
                                let due = start_us + i * 1_000_000 / rate;
                                let wait = due.saturating_sub(clock());
                                if wait > 0 {
                                    tokio::time::sleep(Duration::from_micros(wait)).await;
                                }
                                due
                            }
                            None => clock(),
                        };
                        let status = post(&mut conn, addr, &uri, stamped(&template, due_us)).await;
                        if status != expect {
                            *unexpected.lock().unwrap().entry(status).or_default() += 1;
                        }
                    }
                });
            }
            while let Some(done) = tasks.join_next().await {
                done.expect("a sender panicked");
            }
        })
        .await;
    LoadReport {
        sent: total,
        elapsed: start.elapsed(),
        unexpected: unexpected.lock().unwrap().clone().into_iter().collect(),
    }
}

type Conn = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// POST `body` on `conn`, (re)connecting when there is none; the status, or
/// 0 when the request failed.
async fn post(conn: &mut Option<Conn>, addr: SocketAddr, uri: &hyper::Uri, body: Bytes) -> u16 {
    for _ in 0..2 {
        if conn.as_ref().is_none_or(|c| c.is_closed()) {
            *conn = connect(addr).await;
        }
        let Some(sender) = conn.as_mut() else {
            return 0;
        };
        if sender.ready().await.is_err() {
            *conn = None;
            continue;
        }
        let req = hyper::Request::post(uri.path())
            .header(hyper::header::HOST, uri.authority().unwrap().as_str())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(body.clone()))
            .unwrap();
        match sender.send_request(req).await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let _ = resp.into_body().collect().await;
                return status;
            }
            Err(_) => *conn = None,
        }
    }
    0
}

async fn connect(addr: SocketAddr) -> Option<Conn> {
    let stream = TcpStream::connect(addr).await.ok()?;
    let _ = stream.set_nodelay(true);
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .ok()?;
    tokio::task::spawn_local(async move {
        let _ = connection.await;
    });
    Some(sender)
}

/// The `q` quantile (0..=1) of sorted `values`.
pub fn quantile(sorted: &[u32], q: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_survives_being_read_back() {
        let body = stamped(r#"{"a":1}"#, 123_456);
        assert_eq!(&body[..], br#"{"sent_us":123456,"a":1}"#);
        assert_eq!(stamp_of(&body), Some(123_456));
        assert_eq!(stamp_of(br#"{"a":1}"#), None);
    }
}
