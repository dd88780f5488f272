//! One HTTP attempt of one delivery.

use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::signing;
use crate::config::Target;
use crate::metrics::Failure;
use crate::store::Delivery;

/// Headers never forwarded from the event to a target: hop-by-hop headers
/// (RFC 9110 §7.6.1), those the client computes, the signature headers we set
/// ourselves, and credentials meant for the router, not the target.
const NOT_FORWARDED: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
    "expect",
    "authorization",
    "cookie",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
];

/// Most of a response body worth keeping for the log.
const EXCERPT_BYTES: usize = 512;

/// What the target said, for the attempt log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reply {
    pub status: Option<u16>,
    /// Why no answer came, when none did.
    pub failure: Option<Failure>,
    /// The start of the response body, on one line.
    pub excerpt: Option<String>,
}

/// How an attempt went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Success,
    /// Worth another try: timeout, connection error, 408, 429, 5xx.
    Retryable {
        error: String,
        retry_after: Option<Duration>,
    },
    /// Trying again will not help: any other status.
    Permanent {
        error: String,
    },
}

/// The body of every attempt: the delivery's bytes, in one frame.
type Body = http_body_util::Full<bytes::Bytes>;

/// The shared HTTP client: one connection pool for every target, HTTP/1.1
/// or HTTP/2 (over TLS, as the target offers it), `https://` checked
/// against the public web roots.
///
/// It is hyper's own pooled client, not reqwest: an attempt needs none of
/// reqwest's layers (redirects, proxies, cookies, decompression), and they
/// cost about 15 µs of CPU per delivered event, a twelfth of the router's
/// (`cargo bench -p wasmhook-e2e --bench throughput -- e2e-fsync`, 3
/// alternating runs each: 180 against 165 µs).
#[derive(Debug, Clone)]
pub struct Sender {
    client: Client<HttpsConnector<HttpConnector>, Body>,
}

const USER_AGENT: &str = concat!("wasmhook/", env!("CARGO_PKG_VERSION"));

impl Sender {
    pub fn new() -> anyhow::Result<Self> {
        for name in [
            "HTTPS_PROXY",
            "https_proxy",
            "HTTP_PROXY",
            "http_proxy",
            "ALL_PROXY",
            "all_proxy",
        ] {
            if std::env::var_os(name).is_some_and(|v| !v.is_empty()) {
                tracing::warn!(
                    "{name} is set, but deliveries go straight to their targets: wasmhook does not send through proxies"
                );
            }
        }
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        Self::with_roots(roots)
    }

    /// A sender that trusts `roots` for `https://` targets.
    pub fn with_roots(roots: rustls::RootCertStore) -> anyhow::Result<Self> {
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut tcp = HttpConnector::new();
        // The scheme is checked by the HTTPS layer above.
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        // A pooled connection whose peer vanished (a NAT or balancer that
        // dropped it silently) is found dead in about 30 s, not after the
        // kernel's 15 minutes of retransmits: HTTP/2 sends every attempt
        // to a target over one connection.
        tcp.set_keepalive(Some(Duration::from_secs(15)));
        tcp.set_keepalive_interval(Some(Duration::from_secs(15)));
        tcp.set_keepalive_retries(Some(3));
        tcp.set_tcp_user_timeout(Some(Duration::from_secs(30)));
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(tcp);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector);
        Ok(Sender { client })
    }

    pub async fn attempt(&self, target: &Target, delivery: &Delivery) -> (Verdict, Reply) {
        // The timeout covers connecting and the answer's head: once the
        // status came, the attempt has its verdict. The start of the body
        // that the log keeps is read within what is left of it, and a body
        // that stalls only cuts the excerpt short.
        let deadline = tokio::time::Instant::now() + target.timeout;
        let mut sent_again = false;
        let answer = loop {
            let request = signed_request(target, delivery, !sent_again);
            match tokio::time::timeout_at(deadline, self.client.request(request)).await {
                // Sent once more, at once and within the same timeout: the
                // target took none of it. Only once, as RFC 9113 (8.7)
                // asks of a client.
                Ok(Err(e)) if !sent_again && turned_away_unprocessed(&e) => {
                    tracing::debug!(
                        delivery_id = %delivery.id,
                        "the target turned the request away unprocessed ({}); sending it again",
                        root_cause(&e)
                    );
                    sent_again = true;
                }
                answer => break answer,
            }
        };
        let unanswered = |failure, error| {
            let reply = Reply {
                failure: Some(failure),
                ..Reply::default()
            };
            let verdict = Verdict::Retryable {
                error,
                retry_after: None,
            };
            (verdict, reply)
        };
        let (head, body) = match answer {
            Ok(Ok(answer)) => answer.into_parts(),
            Ok(Err(e)) if e.is_connect() => {
                let why = root_cause(&e);
                return unanswered(Failure::Connect, format!("connection failed: {why}"));
            }
            Ok(Err(e)) => {
                let why = root_cause(&e);
                return unanswered(Failure::Other, format!("request failed: {why}"));
            }
            Err(_) => {
                let ms = target.timeout.as_millis();
                return unanswered(Failure::Timeout, format!("timed out after {ms} ms"));
            }
        };
        let excerpt = body_excerpt(body, deadline).await;
        let status = head.status;
        let retry_after = head
            .headers
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| super::retry::parse_retry_after(v, std::time::SystemTime::now()));
        let code = status.as_u16();
        let reply = Reply {
            status: Some(code),
            failure: None,
            excerpt: (!excerpt.is_empty()).then(|| excerpt.clone()),
        };
        if status.is_success() {
            return (Verdict::Success, reply);
        }
        let error = if excerpt.is_empty() {
            format!("HTTP {code}")
        } else {
            format!("HTTP {code}: {excerpt}")
        };
        let verdict = if code == 408 || code == 429 || status.is_server_error() {
            Verdict::Retryable { error, retry_after }
        } else {
            Verdict::Permanent { error }
        };
        (verdict, reply)
    }
}

/// The request that delivers `delivery` to `target`, signed now; `warn`
/// about the headers it cannot send.
fn signed_request(target: &Target, delivery: &Delivery, warn: bool) -> http::Request<Body> {
    let event = &delivery.event;
    let mut headers = HeaderMap::new();
    for (name, value) in &event.headers {
        if NOT_FORWARDED.contains(&name.as_str()) {
            continue;
        }
        match (
            HeaderName::try_from(name.as_str()),
            // Bytes, not `&str`: a UTF-8 value (`Café`) is sent as received.
            HeaderValue::from_bytes(value.as_bytes()),
        ) {
            (Ok(n), Ok(v)) => {
                headers.append(n, v);
            }
            // Only a plugin can make one (ingest stores what HTTP
            // carried): say so rather than drop it unseen (once, not again
            // as the request is built again).
            _ if warn => tracing::warn!(
                delivery_id = %delivery.id,
                header = %name.escape_debug(),
                "not sending a header a plugin set: its name or value is not valid in HTTP"
            ),
            _ => {}
        }
    }
    if !headers.contains_key(http::header::CONTENT_TYPE) {
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
    }
    let timestamp = now_secs();
    if crate::telemetry::enabled()
        && let Some(parent) = crate::telemetry::traceparent(&tracing::Span::current())
    {
        // The target's work joins this attempt's span.
        headers.insert(crate::telemetry::TRACEPARENT, header_value(&parent));
    }
    headers.insert("webhook-id", header_value(&delivery.id));
    headers.insert("webhook-timestamp", header_value(&timestamp.to_string()));
    if !target.signing_keys.is_empty() {
        let sig = signing::signature_header(
            target.signing_keys.iter().map(|k| k.expose()),
            &delivery.id,
            timestamp,
            &event.body,
        );
        headers.insert("webhook-signature", header_value(&sig));
    }

    // What a client says of itself, unless the event already said it.
    headers
        .entry(http::header::USER_AGENT)
        .or_insert(HeaderValue::from_static(USER_AGENT));
    headers
        .entry(http::header::ACCEPT)
        .or_insert(HeaderValue::from_static("*/*"));
    // A redirect is never followed: it would send the signed payload
    // somewhere the config never named.
    let mut request = http::Request::new(Body::new(event.body.clone()));
    *request.method_mut() = http::Method::POST;
    *request.headers_mut() = headers;
    *request.uri_mut() = target.endpoint.uri.clone();
    if let Some(basic) = &target.endpoint.basic_auth {
        request
            .headers_mut()
            .insert(http::header::AUTHORIZATION, basic.clone());
    }
    request
}

/// Whether an HTTP/2 target turned the request away before it took any of
/// it up, so that sending it again cannot deliver it twice (RFC 9113, 8.7):
/// it refused the stream (`REFUSED_STREAM`), or it was closing the
/// connection (`GOAWAY` with `NO_ERROR`, which fails only the streams past
/// the last one it took).
fn turned_away_unprocessed(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(e) = cause {
        if let Some(e) = e.downcast_ref::<h2::Error>() {
            let reason = e.reason();
            return e.is_remote()
                && ((e.is_reset() && reason == Some(h2::Reason::REFUSED_STREAM))
                    || (e.is_go_away() && reason == Some(h2::Reason::NO_ERROR)));
        }
        cause = e.source();
    }
    false
}

fn header_value(s: &str) -> HeaderValue {
    HeaderValue::try_from(s).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

fn now_secs() -> i64 {
    (crate::event::now_ms() / 1000) as i64
}

/// The innermost error message: the client's own Display says little.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// Up to [`EXCERPT_BYTES`] of the body, as text on one line. A body that
/// fails midway, or is still coming at `deadline`, keeps what came before.
async fn body_excerpt(mut body: hyper::body::Incoming, deadline: tokio::time::Instant) -> String {
    use http_body_util::BodyExt as _;
    let mut buf = Vec::new();
    while buf.len() < EXCERPT_BYTES {
        match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    buf.extend_from_slice(&data);
                }
            }
            _ => break,
        }
    }
    buf.truncate(EXCERPT_BYTES);
    String::from_utf8_lossy(&buf)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::{Arc, Mutex};

    use bytes::Bytes;
    use http_body_util::BodyExt as _;
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use tokio::net::TcpListener;

    use super::*;
    use crate::event::Event;

    const CERT: &[u8] = include_bytes!("../../testdata/tls/cert.pem");
    const KEY: &[u8] = include_bytes!("../../testdata/tls/key.pem");

    /// What a target saw of one request.
    #[derive(Debug, Clone)]
    struct Seen {
        target: String,
        headers: HeaderMap,
        body: Bytes,
    }

    /// TLS with the test certificate, offering the `alpn` protocols.
    fn tls_acceptor(alpn: Vec<Vec<u8>>) -> tokio_rustls::TlsAcceptor {
        let cert = CertificateDer::from_pem_slice(CERT).unwrap();
        let key = PrivateKeyDer::from_pem_slice(KEY).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .unwrap();
        config.alpn_protocols = alpn;
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    }

    /// How an HTTP/2 target treats the first request it is sent (or, for
    /// `GoAway`, its first connection); it answers every other one 200.
    #[derive(Clone, Copy)]
    enum First {
        /// Resets the stream with this reason.
        Reset(h2::Reason),
        /// Says `GOAWAY` (`NO_ERROR`) before it reads a stream.
        GoAway,
    }

    /// What an HTTP/2 target saw: the streams it took (each request's
    /// `webhook-signature` and body), and how many connections.
    #[derive(Default)]
    struct H2Seen {
        streams: Vec<(Option<HeaderValue>, Bytes)>,
        connections: usize,
    }

    /// An HTTPS target on 127.0.0.1 that speaks only HTTP/2. Returns its
    /// address and what it saw.
    async fn h2_target(first: First) -> (std::net::SocketAddr, Arc<Mutex<H2Seen>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = tls_acceptor(vec![b"h2".to_vec()]);
        let seen = Arc::new(Mutex::new(H2Seen::default()));
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let connection = {
                    let mut seen = log.lock().unwrap();
                    seen.connections += 1;
                    seen.connections
                };
                let Ok(stream) = acceptor.accept(stream).await else {
                    continue;
                };
                let log = log.clone();
                tokio::spawn(async move {
                    let Ok(mut h2) = h2::server::handshake(stream).await else {
                        return;
                    };
                    if matches!(first, First::GoAway) && connection == 1 {
                        h2.abrupt_shutdown(h2::Reason::NO_ERROR);
                    }
                    while let Some(Ok((request, mut respond))) = h2.accept().await {
                        let (head, mut body) = request.into_parts();
                        let mut bytes = Vec::new();
                        while let Some(Ok(chunk)) = body.data().await {
                            let _ = body.flow_control().release_capacity(chunk.len());
                            bytes.extend_from_slice(&chunk);
                        }
                        let n = {
                            let mut seen = log.lock().unwrap();
                            let signature = head.headers.get("webhook-signature").cloned();
                            seen.streams.push((signature, Bytes::from(bytes)));
                            seen.streams.len()
                        };
                        match first {
                            First::Reset(reason) if n == 1 => respond.send_reset(reason),
                            _ => {
                                let _ = respond.send_response(http::Response::new(()), true);
                            }
                        }
                    }
                });
            }
        });
        (addr, seen)
    }

    #[tokio::test]
    async fn a_request_an_http2_target_turned_away_unprocessed_is_sent_again_at_once() {
        let d = delivery(&[], r#"{"n":3}"#);
        let sender = trusting_the_test_certificate();
        let signed = |addr| Target {
            signing_keys: vec![
                crate::config::decode_whsec("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap(),
            ],
            ..to(&format!("https://{addr}/"))
        };

        // A refused stream is sent again on the same connection, whole and
        // signed.
        let (addr, seen) = h2_target(First::Reset(h2::Reason::REFUSED_STREAM)).await;
        let (verdict, reply) = sender.attempt(&signed(addr), &d).await;
        assert_eq!(verdict, Verdict::Success, "{reply:?}");
        {
            let seen = seen.lock().unwrap();
            assert_eq!((seen.streams.len(), seen.connections), (2, 1));
            let (signature, body) = &seen.streams[1];
            assert!(signature.is_some());
            assert_eq!(body, r#"{"n":3}"#);
        }

        // One past a closing connection's last stream goes again on a new
        // connection: the first took no stream.
        let (addr, seen) = h2_target(First::GoAway).await;
        let (verdict, reply) = sender.attempt(&signed(addr), &d).await;
        assert_eq!(verdict, Verdict::Success, "{reply:?}");
        {
            let seen = seen.lock().unwrap();
            assert_eq!((seen.streams.len(), seen.connections), (1, 2));
        }

        // A stream reset for any other reason may have been acted on: it is
        // an attempt that failed, not sent again.
        let (addr, seen) = h2_target(First::Reset(h2::Reason::INTERNAL_ERROR)).await;
        let (verdict, reply) = sender.attempt(&to(&format!("https://{addr}/")), &d).await;
        assert_eq!(reply.status, None);
        match verdict {
            Verdict::Retryable { error, .. } => assert_eq!(
                error,
                "request failed: stream error received: unexpected internal error encountered"
            ),
            other => panic!("{other:?}"),
        }
        assert_eq!(seen.lock().unwrap().streams.len(), 1);
    }

    /// A target on 127.0.0.1 that records each request and answers it with
    /// `status`, `headers` and `body`; with `tls`, over HTTPS with the test
    /// certificate. Returns its address and what it saw.
    async fn target(
        tls: bool,
        status: u16,
        headers: &'static [(&'static str, &'static str)],
        body: &'static str,
    ) -> (std::net::SocketAddr, Arc<Mutex<Vec<Seen>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let acceptor = tls.then(|| tls_acceptor(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let log = log.clone();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let log = log.clone();
                        async move {
                            let (head, incoming) = req.into_parts();
                            let body_seen = incoming.collect().await.unwrap().to_bytes();
                            log.lock().unwrap().push(Seen {
                                target: head.uri.to_string(),
                                headers: head.headers,
                                body: body_seen,
                            });
                            let mut answer = http::Response::new(Body::new(Bytes::from(body)));
                            *answer.status_mut() = http::StatusCode::from_u16(status).unwrap();
                            for (name, value) in headers {
                                answer
                                    .headers_mut()
                                    .insert(*name, HeaderValue::from_static(value));
                            }
                            Ok::<_, Infallible>(answer)
                        }
                    });
                    match acceptor {
                        Some(acceptor) => {
                            let Ok(stream) = acceptor.accept(stream).await else {
                                return;
                            };
                            let _ = http1::Builder::new()
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        }
                        None => {
                            let _ = http1::Builder::new()
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        }
                    }
                });
            }
        });
        (addr, seen)
    }

    fn to(url: &str) -> Target {
        let url = reqwest::Url::parse(url).unwrap();
        Target {
            name: "t".into(),
            endpoint: crate::config::Endpoint::of(&url).unwrap(),
            url,
            signing_keys: Vec::new(),
            timeout: Duration::from_secs(5),
            max_attempts: 3,
            max_in_flight: 1,
            retry_schedule: vec![Duration::from_secs(1)],
            rate_limit: None,
            circuit: None,
            ordering: None,
        }
    }

    fn delivery(headers: &[(&str, &str)], body: &'static str) -> Delivery {
        Delivery {
            id: "msg_1".into(),
            event_id: "evt_1".into(),
            route: "r".into(),
            target: "t".into(),
            event: Event {
                id: "evt_1".into(),
                source: "s".into(),
                event_type: "order.created".into(),
                received_at: 0,
                headers: headers
                    .iter()
                    .map(|(n, v)| (n.to_string(), v.to_string()))
                    .collect(),
                body: Bytes::from_static(body.as_bytes()),
            },
            attempts: 0,
            lease: 0,
            order_key: None,
            order_block: false,
        }
    }

    fn trusting_the_test_certificate() -> Sender {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(CERT).unwrap())
            .unwrap();
        Sender::with_roots(roots).unwrap()
    }

    #[tokio::test]
    async fn a_delivery_arrives_whole_with_its_headers_and_the_answer_is_kept() {
        let (addr, seen) = target(false, 200, &[], "  thanks,\n  got it ").await;
        let sender = Sender::new().unwrap();
        let d = delivery(
            &[
                ("content-type", "application/json"),
                ("x-shop", "Café"),
                ("cookie", "secret"),
            ],
            r#"{"n":1}"#,
        );
        let (verdict, reply) = sender
            .attempt(&to(&format!("http://{addr}/hooks?x=1")), &d)
            .await;
        assert_eq!(verdict, Verdict::Success);
        assert_eq!(reply.status, Some(200));
        assert_eq!(reply.excerpt.as_deref(), Some("thanks, got it"));
        let seen = seen.lock().unwrap()[0].clone();
        assert_eq!(seen.target, "/hooks?x=1");
        assert_eq!(seen.body, r#"{"n":1}"#);
        let h = |n: &str| seen.headers.get(n).map(|v| v.as_bytes().to_vec());
        assert_eq!(h("content-type").unwrap(), b"application/json");
        assert_eq!(h("x-shop").unwrap(), "Café".as_bytes());
        assert_eq!(h("webhook-id").unwrap(), b"msg_1");
        assert!(h("webhook-timestamp").is_some());
        assert_eq!(h("user-agent").unwrap(), USER_AGENT.as_bytes());
        assert_eq!(h("accept").unwrap(), b"*/*");
        assert_eq!(h("content-length").unwrap(), b"7");
        assert_eq!(h("host").unwrap(), addr.to_string().as_bytes());
        assert_eq!(h("cookie"), None, "a credential meant for the router");
        assert_eq!(h("authorization"), None);
    }

    #[tokio::test]
    async fn credentials_in_the_url_go_as_basic_auth_not_in_the_request_line() {
        let (addr, seen) = target(false, 204, &[], "").await;
        let url = format!("http://ann:p%40ss@{addr}/in");
        let (verdict, _) = Sender::new()
            .unwrap()
            .attempt(&to(&url), &delivery(&[], "{}"))
            .await;
        assert_eq!(verdict, Verdict::Success);
        let seen = seen.lock().unwrap()[0].clone();
        assert_eq!(seen.target, "/in");
        // base64("ann:p@ss")
        assert_eq!(seen.headers["authorization"], "Basic YW5uOnBAc3M=");
        assert_eq!(seen.headers["host"], addr.to_string().as_str());
    }

    /// One attempt at a target that answers `status` with `headers` and `body`.
    async fn answered(
        status: u16,
        headers: &'static [(&'static str, &'static str)],
        body: &'static str,
    ) -> (Verdict, Reply) {
        let (addr, _) = target(false, status, headers, body).await;
        Sender::new()
            .unwrap()
            .attempt(&to(&format!("http://{addr}/")), &delivery(&[], "{}"))
            .await
    }

    #[tokio::test]
    async fn refusals_say_whether_to_try_again() {
        let (verdict, reply) = answered(503, &[("retry-after", "7")], "down for a bit").await;
        assert_eq!(
            verdict,
            Verdict::Retryable {
                error: "HTTP 503: down for a bit".into(),
                retry_after: Some(Duration::from_secs(7)),
            }
        );
        assert_eq!(reply.status, Some(503));
        let (verdict, _) = answered(400, &[], "").await;
        assert_eq!(
            verdict,
            Verdict::Permanent {
                error: "HTTP 400".into()
            }
        );
    }

    /// One attempt with a 200 ms timeout at `addr`, which must end on its
    /// own (a 10 s guard fails the test otherwise).
    async fn attempt_within_200ms(addr: std::net::SocketAddr) -> (Verdict, Reply) {
        let mut t = to(&format!("http://{addr}/"));
        t.timeout = Duration::from_millis(200);
        let d = delivery(&[], "{}");
        let sender = Sender::new().unwrap();
        tokio::time::timeout(Duration::from_secs(10), sender.attempt(&t, &d))
            .await
            .expect("the attempt's own timeout ends it")
    }

    #[tokio::test]
    async fn a_target_that_never_answers_times_out_and_a_closed_port_fails_to_connect() {
        // Accepts, reads, and never answers.
        let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = silent.local_addr().unwrap();
        let held = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((s, _)) = silent.accept().await {
                open.push(s);
            }
        });
        let (verdict, reply) = attempt_within_200ms(addr).await;
        assert_eq!(reply.failure, Some(Failure::Timeout));
        assert_eq!(
            verdict,
            Verdict::Retryable {
                error: "timed out after 200 ms".into(),
                retry_after: None
            }
        );
        held.abort();

        // A port nothing listens on.
        let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = closed.local_addr().unwrap();
        drop(closed);
        let (verdict, reply) = Sender::new()
            .unwrap()
            .attempt(&to(&format!("http://{addr}/")), &delivery(&[], "{}"))
            .await;
        assert_eq!(reply.failure, Some(Failure::Connect));
        match verdict {
            Verdict::Retryable { error, .. } => {
                assert!(error.starts_with("connection failed: "), "{error}");
                assert!(error.to_lowercase().contains("refused"), "{error}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn an_answer_whose_body_stalls_keeps_its_status_and_what_came() {
        // Answers 200 with the start of a body it never finishes.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let held = tokio::spawn(async move {
            use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
            let (mut s, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut buf).await.unwrap();
                request.extend_from_slice(&buf[..n]);
            }
            s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nreceived, ")
                .await
                .unwrap();
            std::future::pending::<()>().await;
            drop(s);
        });
        let (verdict, reply) = attempt_within_200ms(addr).await;
        // The target said 200: sending again would deliver twice.
        assert_eq!(verdict, Verdict::Success);
        assert_eq!(reply.status, Some(200));
        assert_eq!(reply.excerpt.as_deref(), Some("received,"));
        held.abort();
    }

    #[tokio::test]
    async fn https_targets_are_reached_and_their_certificates_checked() {
        let (addr, seen) = target(true, 200, &[], "ok").await;
        let url = format!("https://{addr}/secure");
        let d = delivery(&[], r#"{"n":2}"#);

        let (verdict, reply) = trusting_the_test_certificate().attempt(&to(&url), &d).await;
        assert_eq!(verdict, Verdict::Success, "{reply:?}");
        assert_eq!(seen.lock().unwrap()[0].body, r#"{"n":2}"#);

        // The public roots do not vouch for a self-signed certificate.
        let (verdict, reply) = Sender::new().unwrap().attempt(&to(&url), &d).await;
        assert_eq!(reply.status, None);
        match verdict {
            Verdict::Retryable { error, .. } => {
                assert!(error.contains("certificate"), "{error}")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(seen.lock().unwrap().len(), 1, "nothing was sent unverified");
    }
}
