//! Delivery: Standard Webhooks signing, retries with a stable id, final failures.

use std::process::Command;

use wasmhook_e2e::{Behaviour, Received, Receiver, Router};

use crate::WAIT;

/// From shared/testdata/signatures.json (the official test vector's secret).
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const ROTATED: &str = "whsec_dGhpcy1pcy1hLXNlY29uZC1rZXktZm9yLXJvdGF0aW9u";

/// Run the `standardwebhooks` Python package over a received request.
fn python_verifies(secret: &str, r: &Received) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let headers = dir.path().join("headers.json");
    let body = dir.path().join("body");
    std::fs::write(&headers, serde_json::to_vec(&r.headers).unwrap()).unwrap();
    std::fs::write(&body, &r.body).unwrap();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/py/verify_standard_webhooks.py"
    );
    let out = Command::new("python3")
        .arg(script)
        .arg(secret)
        .arg(&headers)
        .arg(&body)
        .output()
        .expect("python3 runs (CI installs it with the standardwebhooks package)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("ModuleNotFoundError"),
        "pip install standardwebhooks first: {stderr}"
    );
    if out.status.success() {
        Ok(())
    } else {
        Err(stderr.into_owned())
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn deliveries_are_signed_and_an_independent_verifier_accepts_them() {
    let rx = Receiver::start().await;
    let config = format!(
        "[[sources]]\nname = \"s\"\n\n\
         [[targets]]\nname = \"one\"\nurl = \"{}\"\nsigning_secret = \"{SECRET}\"\n\n\
         [[targets]]\nname = \"rotating\"\nurl = \"{}\"\nsigning_secret = [\"{ROTATED}\", \"{SECRET}\"]\n\n\
         [[routes]]\nname = \"r\"\nsource = \"s\"\ntargets = [\"one\", \"rotating\"]\n",
        rx.url("one"),
        rx.url("rotating"),
    );
    let router = Router::start(&config, &[], "").await;
    let body = r#"{"hello":"world","n":[1,2,3]}"#;
    assert_eq!(
        router
            .ingest("s", body, &[("content-type", "application/json")])
            .await
            .0,
        202
    );

    let one = rx.wait_for("one", 1, WAIT).await.remove(0);
    assert!(one.header("webhook-id").unwrap().starts_with("msg_"));
    assert!(
        one.header("webhook-timestamp")
            .unwrap()
            .parse::<i64>()
            .is_ok()
    );
    assert!(one.header("webhook-signature").unwrap().starts_with("v1,"));
    assert_eq!(one.body.as_ref(), body.as_bytes());
    python_verifies(SECRET, &one).expect("standardwebhooks verifies our signature");
    assert!(
        python_verifies(ROTATED, &one).is_err(),
        "a different secret must not verify"
    );

    // During rotation: one signature per secret, space-separated; each verifies.
    let rot = rx.wait_for("rotating", 1, WAIT).await.remove(0);
    assert_eq!(
        rot.header("webhook-signature").unwrap().split(' ').count(),
        2
    );
    python_verifies(SECRET, &rot).expect("old secret verifies");
    python_verifies(ROTATED, &rot).expect("new secret verifies");
    assert_ne!(
        one.header("webhook-id"),
        rot.header("webhook-id"),
        "one delivery id per target"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_target_that_fails_twice_gets_the_event_on_the_third_attempt_with_the_same_id() {
    let rx = Receiver::start().await;
    rx.set("flaky", Behaviour::FailFirst { n: 2, status: 503 });
    let config = format!(
        "[[sources]]\nname = \"s\"\n\n\
         [[targets]]\nname = \"flaky\"\nurl = \"{}\"\nsigning_secret = \"{SECRET}\"\nretry_schedule = [\"20ms\", \"40ms\"]\nmax_attempts = 5\n\n\
         [[routes]]\nname = \"r\"\nsource = \"s\"\ntargets = [\"flaky\"]\n",
        rx.url("flaky")
    );
    let router = Router::start(&config, &[], "").await;
    assert_eq!(router.ingest("s", "{}", &[]).await.0, 202);
    router
        .wait_metric(
            "wasmhook_delivery_attempts_total{target=\"flaky\",result=\"delivered\"}",
            1.0,
            WAIT,
        )
        .await;
    let attempts = rx.on("flaky");
    assert_eq!(attempts.len(), 3, "two failures, then success");
    let ids: Vec<_> = attempts
        .iter()
        .map(|r| r.header("webhook-id").unwrap())
        .collect();
    assert!(
        ids.iter().all(|id| *id == ids[0]),
        "same webhook-id on every attempt: {ids:?}"
    );
    for a in &attempts {
        python_verifies(SECRET, a).expect("every attempt is freshly signed");
    }
    assert_eq!(
        router
            .metric("wasmhook_delivery_attempts_total{target=\"flaky\",result=\"retry\"}")
            .await,
        2.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn retries_stop_at_max_attempts_and_a_4xx_is_final() {
    let rx = Receiver::start().await;
    rx.set("down", Behaviour::Always(500));
    rx.set("refuses", Behaviour::Always(400));
    let config = format!(
        "[[sources]]\nname = \"s\"\n\n\
         [[targets]]\nname = \"down\"\nurl = \"{}\"\nretry_schedule = [\"10ms\"]\nmax_attempts = 3\n\n\
         [[targets]]\nname = \"refuses\"\nurl = \"{}\"\nretry_schedule = [\"10ms\"]\nmax_attempts = 3\n\n\
         [[routes]]\nname = \"r\"\nsource = \"s\"\ntargets = [\"down\", \"refuses\"]\n",
        rx.url("down"),
        rx.url("refuses")
    );
    let router = Router::start(&config, &[], "").await;
    assert_eq!(router.ingest("s", "{}", &[]).await.0, 202);
    router.wait_metric("wasmhook_queue_dead", 2.0, WAIT).await;
    assert_eq!(rx.on("down").len(), 3, "3 attempts, then dead");
    assert_eq!(rx.on("refuses").len(), 1, "400 is not retried");
}
