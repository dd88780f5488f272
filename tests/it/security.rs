//! Inbound verification, secrets that stay secret, hostile requests.

use std::process::Command;

use serde_json::Value;
use wasmhook_e2e::{ADMIN_TOKEN, Receiver, Router, Setup};

use crate::WAIT;

const GITHUB: &str = "gh-s3cret-value-1";
const STRIPE: &str = "whsec_stripe_s3cret_value";
const SLACK: &str = "slack-s3cret-value-8f74";
const SHOPIFY: &str = "shpss_s3cret_value";
const STANDARD: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const GENERIC: &str = "generic-s3cret-value";
const OLD: &str = "rotated-out-s3cret";
const OUTBOUND: &str = "whsec_dGhpcy1pcy1hLXNlY29uZC1rZXktZm9yLXJvdGF0aW9u";

/// Signature headers for `body`, made independently of the router: by the
/// spec's own library for Standard Webhooks, else by Python's `hmac`
/// (tests/py/sign.py, standard library only).
fn sign(scheme: &str, secret: &str, body: &str, msg_id: &str) -> Vec<(String, String)> {
    if scheme == "standard-webhooks" {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let signature = standardwebhooks::Webhook::new(secret)
            .unwrap()
            .sign(msg_id, now, body.as_bytes())
            .unwrap();
        return vec![
            ("webhook-id".into(), msg_id.into()),
            ("webhook-timestamp".into(), now.to_string()),
            ("webhook-signature".into(), signature),
        ];
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("body");
    std::fs::write(&path, body).unwrap();
    let out = Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/py/sign.py"))
        .args([scheme, secret])
        .arg(&path)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v.as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect()
}

fn config(rx: &Receiver) -> String {
    format!(
        r#"
[[sources]]
name = "github"
verify = {{ scheme = "github", secret = ["{OLD}", "{GITHUB}"] }}

[[sources]]
name = "stripe"
verify = {{ scheme = "stripe", secret = "{STRIPE}" }}

[[sources]]
name = "slack"
verify = {{ scheme = "slack", secret = "{SLACK}" }}

[[sources]]
name = "shopify"
verify = {{ scheme = "shopify", secret = "{SHOPIFY}" }}

[[sources]]
name = "standard"
verify = {{ scheme = "standard-webhooks", secret = "{STANDARD}" }}

[[sources]]
name = "generic"
verify = {{ scheme = "hmac", secret = "{GENERIC}", header = "x-signature", prefix = "sha256=", timestamp_header = "x-timestamp" }}

[[targets]]
name = "t"
url = "{}"
signing_secret = "{OUTBOUND}"

[[routes]]
name = "all-github"
source = "github"
targets = ["t"]

[[routes]]
name = "all-stripe"
source = "stripe"
targets = ["t"]

[[routes]]
name = "all-slack"
source = "slack"
targets = ["t"]

[[routes]]
name = "all-shopify"
source = "shopify"
targets = ["t"]

[[routes]]
name = "all-standard"
source = "standard"
targets = ["t"]

[[routes]]
name = "all-generic"
source = "generic"
targets = ["t"]
"#,
        rx.url("t")
    )
}

async fn post(
    router: &Router,
    source: &str,
    body: &str,
    headers: &[(String, String)],
) -> (u16, Value) {
    let refs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    router.ingest(source, body.to_string(), &refs).await
}

#[tokio::test(flavor = "multi_thread")]
async fn every_scheme_accepts_genuine_requests_and_refuses_forged_ones_storing_nothing() {
    let rx = Receiver::start().await;
    let router = Router::with(Setup {
        config: &config(&rx),
        durable: true,
        ..Setup::default()
    })
    .await;
    let cases = [
        ("github", "github", GITHUB),
        ("stripe", "stripe", STRIPE),
        ("slack", "slack", SLACK),
        ("shopify", "shopify", SHOPIFY),
        ("standard", "standard-webhooks", STANDARD),
        ("generic", "hmac", GENERIC),
    ];
    for (n, (source, scheme, secret)) in cases.iter().enumerate() {
        let id = format!("{source}-good");
        let body = format!(r#"{{"n":{n},"source":"{source}"}}"#);
        let mut headers = sign(scheme, secret, &body, &id);
        headers.push(("idempotency-key".into(), id.clone()));
        let (status, resp) = post(&router, source, &body, &headers).await;
        assert_eq!(status, 202, "{source}: {resp}");

        // The same signed request replayed under a new unsigned id is the
        // same event. (Standard Webhooks signs its id: a new one is a 401.)
        if *scheme != "standard-webhooks" {
            let replay_id = format!("{source}-replay");
            let mut replay = headers.clone();
            replay.retain(|(k, _)| k != "idempotency-key");
            replay.push(("idempotency-key".into(), replay_id.clone()));
            let (status, resp) = post(&router, source, &body, &replay).await;
            assert_eq!(
                (status, resp["duplicate"].as_bool(), resp["id"].as_str()),
                (202, Some(true), Some(id.as_str())),
                "{source}: {resp}"
            );
            assert_eq!(
                router.api(&format!("/api/events/{replay_id}")).await.0,
                404,
                "{source}: a replay stores nothing"
            );
        }

        // Same signature, tampered body: refused, with the failed check named.
        let forged_id = format!("{source}-forged");
        let mut forged = headers.clone();
        forged.retain(|(k, _)| k != "idempotency-key" && k != "webhook-id");
        forged.push(("idempotency-key".into(), forged_id.clone()));
        if *scheme == "standard-webhooks" {
            forged.push(("webhook-id".into(), forged_id.clone()));
        }
        let (status, resp) = post(&router, source, &body.replace('}', r#","x":1}"#), &forged).await;
        assert_eq!(status, 401, "{source}: {resp}");
        let message = resp["error"].as_str().unwrap();
        assert!(message.starts_with("signature check failed"), "{message}");
        assert!(!message.contains(secret), "{message}");
        assert_eq!(
            router.api(&format!("/api/events/{forged_id}")).await.0,
            404,
            "{source}: nothing stored"
        );

        // Signed with another secret: refused.
        let wrong = sign(
            scheme,
            if *scheme == "standard-webhooks" {
                OUTBOUND
            } else {
                "not-the-secret"
            },
            &body,
            &forged_id,
        );
        assert_eq!(
            post(&router, source, &body, &wrong).await.0,
            401,
            "{source}"
        );
        // No signature at all: refused, naming the missing header.
        let (status, resp) = post(&router, source, &body, &[]).await;
        assert_eq!(status, 401);
        assert!(
            resp["error"]
                .as_str()
                .unwrap()
                .contains("missing signature header"),
            "{resp}"
        );
    }
    let got = rx.wait_for("t", cases.len(), WAIT).await;
    assert_eq!(
        got.len(),
        cases.len(),
        "only the genuine requests were delivered"
    );
    // The sender's signature is its proof to us: stripped before the event
    // is stored, so no target ever gets it (and could replay it to us).
    let inbound = [
        "x-hub-signature-256",
        "stripe-signature",
        "x-slack-signature",
        "x-shopify-hmac-sha256",
        "x-signature",
        "webhook-signature",
    ];
    for r in &got {
        for h in &inbound[..5] {
            assert!(r.header(h).is_none(), "{h} was forwarded: {:?}", r.headers);
        }
    }
    for (source, ..) in &cases {
        let (_, event) = router.api(&format!("/api/events/{source}-good")).await;
        let stored: Vec<&str> = event["headers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h[0].as_str().unwrap())
            .collect();
        assert!(stored.contains(&"idempotency-key"), "{event}");
        for h in inbound {
            assert!(!stored.contains(&h), "{source}: {h} was stored: {event}");
        }
    }
    assert_eq!(
        router
            .metric("wasmhook_ingest_rejected_total{source=\"github\",reason=\"signature\"}")
            .await,
        3.0
    );

    // A stale Slack timestamp is refused even with a valid signature.
    let body = r#"{"late":true}"#;
    let stale = format!(
        "{{\"X-Slack-Request-Timestamp\": \"1531420618\", \"X-Slack-Signature\": \"v0={}\"}}",
        "00".repeat(32)
    );
    let stale: Vec<(String, String)> = serde_json::from_str::<Value>(&stale)
        .unwrap()
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect();
    let (status, resp) = post(&router, "slack", body, &stale).await;
    assert_eq!(status, 401);
    assert!(
        resp["error"].as_str().unwrap().contains("tolerance"),
        "{resp}"
    );

    // Secrets never reach the log or the API.
    let (_, event) = router.api("/api/events/github-good").await;
    let (_, plugins) = router.api("/api/plugins").await;
    let log = router.log_text();
    for secret in [
        GITHUB,
        OLD,
        STRIPE,
        SLACK,
        SHOPIFY,
        STANDARD,
        GENERIC,
        OUTBOUND,
        ADMIN_TOKEN,
    ] {
        assert!(!log.contains(secret), "a secret leaked into the log");
        assert!(!event.to_string().contains(secret) && !plugins.to_string().contains(secret));
    }
}

#[test]
fn check_never_prints_secrets() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("plugins")).unwrap();
    // A config with secrets everywhere and one error elsewhere.
    let toml = format!(
        "[server]\nadmin_token = \"{ADMIN_TOKEN}\"\n\n[[sources]]\nname = \"s\"\nverify = {{ scheme = \"github\", secret = \"{GITHUB}\" }}\n\n\
         [[targets]]\nname = \"t\"\nurl = \"http://127.0.0.1:9/\"\nsigning_secret = \"{OUTBOUND}\"\n\n\
         [[routes]]\nname = \"r\"\nsource = \"s\"\ntargets = [\"nope\"]\n"
    );
    let path = dir.path().join("wasmhook.toml");
    std::fs::write(&path, toml).unwrap();
    let out = Command::new(wasmhook_e2e::binary())
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("no target is named \"nope\""), "{text}");
    for secret in [GITHUB, OUTBOUND, ADMIN_TOKEN] {
        assert!(!text.contains(secret), "{text}");
    }
    // A bad secret is named by key and line, not echoed.
    let bad = std::fs::read_to_string(&path)
        .unwrap()
        .replace(OUTBOUND, "whsec_not*base64*but*s3cret");
    std::fs::write(&path, bad).unwrap();
    let out = Command::new(wasmhook_e2e::binary())
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("signing_secret") && !text.contains("not*base64*but*s3cret"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn without_an_admin_token_the_admin_api_does_not_exist() {
    let config = "[[sources]]\nname = \"s\"\n\n[[targets]]\nname = \"t\"\nurl = \"http://127.0.0.1:9/\"\n\n[[routes]]\nname = \"r\"\nsource = \"s\"\ntargets = [\"t\"]\n";
    let router = Router::with(Setup {
        config,
        no_admin_token: true,
        ..Setup::default()
    })
    .await;
    let client = reqwest::Client::new();
    for path in ["/api/plugins", "/api/events/x", "/api/deliveries"] {
        let status = client
            .get(router.url(path))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 404, "{path}");
    }
    assert_eq!(router.get("/healthz").await.0, 200);
    assert_eq!(router.get("/metrics").await.0, 200);
}

mod limits {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    use wasmhook_e2e::{Router, Setup};

    const CONFIG: &str = "[[sources]]\nname = \"s\"\n\n[[targets]]\nname = \"t\"\nurl = \"http://127.0.0.1:9/\"\n\n[[routes]]\nname = \"r\"\nsource = \"s\"\ntargets = [\"t\"]\n";

    async fn router() -> Router {
        Router::with(Setup {
            config: CONFIG,
            server_extra: "max_headers = 20\nmax_header_bytes = 8192\nread_timeout_ms = 300",
            ..Setup::default()
        })
        .await
    }

    /// Send raw bytes, then read the whole answer until the server closes.
    async fn raw(router: &Router, request: &[u8]) -> String {
        let mut s = TcpStream::connect(router.addr).await.unwrap();
        s.write_all(request).await.unwrap();
        let mut out = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
        assert!(read.is_ok(), "the server kept the connection open");
        String::from_utf8_lossy(&out).into_owned()
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn too_many_or_too_large_headers_are_refused() {
        let router = router().await;
        let mut many = String::from("POST /ingest/s HTTP/1.1\r\nhost: x\r\nconnection: close\r\n");
        for i in 0..50 {
            many.push_str(&format!("x-h{i}: v\r\n"));
        }
        many.push_str("content-length: 2\r\n\r\n{}");
        assert!(
            raw(&router, many.as_bytes())
                .await
                .starts_with("HTTP/1.1 431")
        );
        let huge = format!(
            "POST /ingest/s HTTP/1.1\r\nhost: x\r\nx-big: {}\r\ncontent-length: 2\r\n\r\n{{}}",
            "a".repeat(64 * 1024)
        );
        assert!(
            raw(&router, huge.as_bytes())
                .await
                .starts_with("HTTP/1.1 431")
        );
        // Still serving.
        assert_eq!(router.ingest("s", "{}", &[]).await.0, 202);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn silent_sockets_are_closed_and_a_flood_of_them_locks_no_one_out() {
        let router = Router::with(Setup {
            config: CONFIG,
            server_extra: "read_timeout_ms = 300\nmax_connections = 100\nmax_connections_per_ip = 50",
            ..Setup::default()
        })
        .await;
        // A flood from another client address: sockets that send nothing,
        // or one byte and then nothing. More than the server's whole cap.
        let mut flood = Vec::new();
        for i in 0..150 {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
            let mut s = socket.connect(router.addr).await.unwrap();
            if i % 2 == 1 {
                s.write_all(b"P").await.unwrap();
            }
            flood.push(s);
        }
        // The per-client cap leaves room for everyone else.
        assert_eq!(router.get("/healthz").await.0, 200);
        assert_eq!(router.ingest("s", "{}", &[]).await.0, 202);
        // Every flood socket is closed by the server: those past the cap at
        // once, the others when the request-head deadline passes.
        for mut s in flood {
            let mut answer = Vec::new();
            let read =
                tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut answer)).await;
            assert!(read.is_ok(), "a silent socket was still open after 10 s");
        }
        router
            .wait_log_contains("server.max_connections_per_ip", Duration::from_secs(10))
            .await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn slow_clients_are_cut_off() {
        let router = router().await;
        // Slow-loris: headers that never finish. The server closes the connection.
        let mut s = TcpStream::connect(router.addr).await.unwrap();
        s.write_all(b"POST /ingest/s HTTP/1.1\r\nhost: x\r\nx-slow: ")
            .await
            .unwrap();
        let mut buf = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
        assert!(
            closed.is_ok(),
            "a client that never finishes its headers is disconnected"
        );

        // A body that never finishes: 408 after read_timeout_ms.
        let mut s = TcpStream::connect(router.addr).await.unwrap();
        s.write_all(
            b"POST /ingest/s HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n{\"partial\":",
        )
        .await
        .unwrap();
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        let answer = String::from_utf8_lossy(&buf[..n]);
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert_eq!(
            router
                .metric("wasmhook_events_received_total{source=\"s\"}")
                .await,
            0.0
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn over_the_concurrent_request_cap_ingest_answers_503_with_retry_after() {
        let router = Router::with(Setup {
            config: CONFIG,
            server_extra: "max_concurrent_requests = 1\nread_timeout_ms = 5000",
            ..Setup::default()
        })
        .await;
        // One request holds the only slot: its body is still arriving. If a
        // probe happens to take the slot first, the holder is the one
        // refused; then it is answered at once, and we start over.
        let deadline = tokio::time::Instant::now() + crate::WAIT;
        let client = reqwest::Client::new();
        let (mut holder, resp) = 'hold: loop {
            assert!(
                tokio::time::Instant::now() < deadline,
                "never saw a request refused at the cap"
            );
            let mut holder = TcpStream::connect(router.addr).await.unwrap();
            holder
                .write_all(b"POST /ingest/s HTTP/1.1\r\nhost: x\r\ncontent-length: 11\r\n\r\n{")
                .await
                .unwrap();
            loop {
                let r = client
                    .post(router.url("/ingest/s"))
                    .body("{}")
                    .send()
                    .await
                    .unwrap();
                if r.status() == 503 {
                    break 'hold (holder, r);
                }
                // Was the holder answered (refused) instead? Waiting for that
                // is also the pause between probes.
                let mut peek = [0u8; 1];
                let answered =
                    tokio::time::timeout(Duration::from_millis(20), holder.peek(&mut peek)).await;
                if answered.is_ok() {
                    continue 'hold;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "never saw a request refused at the cap"
                );
            }
        };
        assert_eq!(
            resp.headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok()),
            Some("1")
        );
        // Finish the first request: it is served, and the slot frees.
        holder.write_all(b"\"a\":12345}").await.unwrap();
        let mut buf = vec![0u8; 1024];
        let n = holder.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 202"));
        assert_eq!(router.ingest("s", "{}", &[]).await.0, 202);
    }
}
