//! Delivery: Standard Webhooks signing, retries with a stable id, final failures.

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use wasmhook_e2e::{Behaviour, Received, Receiver, Router};

use crate::WAIT;

/// From the official Standard Webhooks test vector (tests/data/signatures.json).
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const ROTATED: &str = "whsec_dGhpcy1pcy1hLXNlY29uZC1rZXktZm9yLXJvdGF0aW9u";

/// Verify a received request with the spec's own Rust library
/// (`standardwebhooks`), an implementation independent of the router's.
fn independently_verified(secret: &str, r: &Received) -> Result<(), String> {
    let mut headers = HeaderMap::new();
    for (name, value) in &r.headers {
        headers.insert(
            HeaderName::try_from(name.as_str()).unwrap(),
            HeaderValue::try_from(value.as_str()).unwrap(),
        );
    }
    standardwebhooks::Webhook::new(secret)
        .unwrap()
        .verify(&r.body, &headers)
        .map_err(|e| e.to_string())
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
    independently_verified(SECRET, &one).expect("standardwebhooks verifies our signature");
    assert!(
        independently_verified(ROTATED, &one).is_err(),
        "a different secret must not verify"
    );

    // During rotation: one signature per secret, space-separated; each verifies.
    let rot = rx.wait_for("rotating", 1, WAIT).await.remove(0);
    assert_eq!(
        rot.header("webhook-signature").unwrap().split(' ').count(),
        2
    );
    independently_verified(SECRET, &rot).expect("old secret verifies");
    independently_verified(ROTATED, &rot).expect("new secret verifies");
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
        independently_verified(SECRET, a).expect("every attempt is freshly signed");
    }
    assert_eq!(
        router
            .metric("wasmhook_delivery_attempts_total{target=\"flaky\",result=\"retry\"}")
            .await,
        2.0
    );
    // Each failed attempt's line names its event, delivery, target and
    // attempt (README: "delivery lines also carry …"), from its span (at
    // `info`, one made for the line alone): in JSON, a top-level `target`
    // is the line's module.
    let (_, events) = router.api("/api/events").await;
    let event_id = &events["events"][0]["id"];
    for attempt in [1, 2] {
        router
            .wait_log(&format!("attempt {attempt}'s warning"), WAIT, |l| {
                let span = &l["span"];
                l["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("attempt failed"))
                    && span["attempt"] == attempt
                    && span["delivery_id"] == ids[0]
                    && span["target"] == "flaky"
                    && span["event_id"] == *event_id
                    && event_id.as_str().is_some_and(|id| id.starts_with("evt_"))
            })
            .await;
    }
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

#[tokio::test(flavor = "multi_thread")]
async fn a_429s_retry_after_in_seconds_or_as_an_http_date_delays_the_retry() {
    let rx = Receiver::start().await;
    rx.set("secs", Behaviour::RetryAfterSecs { n: 1, secs: 2 });
    rx.set("date", Behaviour::RetryAfterDate { n: 1, secs: 3 });
    // The schedule alone retries after 1 s ± 20 %; Retry-After is honoured
    // up to twice that, so both retries come 2 s after the 429.
    let config = format!(
        "[[sources]]\nname = \"s\"\n\n\
         [[targets]]\nname = \"secs\"\nurl = \"{}\"\nretry_schedule = [\"1s\"]\n\n\
         [[targets]]\nname = \"date\"\nurl = \"{}\"\nretry_schedule = [\"1s\"]\n\n\
         [[routes]]\nname = \"r\"\nsource = \"s\"\ntargets = [\"secs\", \"date\"]\n",
        rx.url("secs"),
        rx.url("date"),
    );
    let router = Router::start(&config, &[], "").await;
    assert_eq!(router.ingest("s", r#"{"n":1}"#, &[]).await.0, 202);
    for name in ["secs", "date"] {
        let got = rx.wait_for(name, 2, WAIT).await;
        assert_eq!((got[0].status, got[1].status), (429, 200), "{name}");
        assert_eq!(got[0].header("webhook-id"), got[1].header("webhook-id"));
        let gap = got[1].at - got[0].at;
        assert!(
            gap >= Duration::from_millis(1900),
            "{name}: retried {gap:?} after a 429 that asked for 2 s or more"
        );
    }
}

/// `rate_limit = "50/s"`: 200 events take at least 3.8 s to arrive, no
/// second holds more than 50 (+ the burst of 1), and waiting spends no
/// attempt: every delivery arrives on its first.
#[tokio::test(flavor = "multi_thread")]
async fn a_rate_limited_target_gets_no_more_than_its_rate() {
    let rx = Receiver::start().await;
    let config = format!(
        "[[sources]]\nname = \"s\"\n\n\
         [[targets]]\nname = \"t\"\nurl = \"{}\"\nrate_limit = \"50/s\"\n\n\
         [[routes]]\nname = \"r\"\nsource = \"s\"\ntargets = [\"t\"]\n",
        rx.url("t"),
    );
    let router = Router::start(&config, &[], "").await;
    let n = 200;
    // All at once, so that only the rate spaces them out.
    let sent = futures_util::future::join_all(
        (0..n).map(|i| router.ingest("s", format!(r#"{{"n":{i}}}"#), &[])),
    )
    .await;
    assert!(sent.iter().all(|(status, _)| *status == 202));
    let got = rx.wait_for("t", n, Duration::from_secs(30)).await;
    assert_eq!(got.len(), n);
    assert!(got.iter().all(|r| r.status == 200));
    let took = got[n - 1].at - got[0].at;
    assert!(
        took >= Duration::from_millis(3800),
        "{n} deliveries in {took:?}"
    );
    // The rate, the burst of one, and one for a start that the machine ran
    // a little late.
    let most = crate::most_in_a_second(&got);
    assert!(most <= 52, "{most} deliveries within a second");
    // Once every attempt is recorded, each delivery took one.
    let attempts = crate::eventually_async("every attempt recorded", || async {
        let (_, body) = router.api("/api/deliveries?target=t&limit=500").await;
        let all = body["deliveries"].as_array()?.clone();
        (all.len() == n && all.iter().all(|d| d["state"] == "delivered")).then(|| {
            all.iter()
                .map(|d| d["attempts"].as_u64())
                .collect::<Vec<_>>()
        })
    })
    .await;
    assert!(attempts.iter().all(|a| *a == Some(1)), "{attempts:?}");
}

/// A 429 with `Retry-After: 2` holds the whole target, not only the
/// delivery that got it: the others wait too, and none is attempted
/// meanwhile.
#[tokio::test(flavor = "multi_thread")]
async fn a_429s_retry_after_pauses_the_whole_target() {
    let rx = Receiver::start().await;
    rx.set("t", Behaviour::RetryAfterSecs { n: 1, secs: 2 });
    let config = format!(
        "[[sources]]\nname = \"s\"\n\n\
         [[targets]]\nname = \"t\"\nurl = \"{}\"\nmax_in_flight = 1\nretry_schedule = [\"1s\"]\n\n\
         [[routes]]\nname = \"r\"\nsource = \"s\"\ntargets = [\"t\"]\n",
        rx.url("t"),
    );
    let router = Router::start(&config, &[], "").await;
    assert_eq!(router.ingest("s", r#"{"n":0}"#, &[]).await.0, 202);
    rx.wait_for("t", 1, WAIT).await;
    for i in 1..5 {
        assert_eq!(
            router.ingest("s", format!(r#"{{"n":{i}}}"#), &[]).await.0,
            202
        );
    }
    let got = rx.wait_for("t", 6, WAIT).await;
    assert_eq!(got[0].status, 429);
    let paused = &got[1..];
    assert!(
        paused
            .iter()
            .all(|r| r.at - got[0].at >= Duration::from_millis(1900)),
        "attempted while the target asked for 2 s: {:?}",
        paused.iter().map(|r| r.at - got[0].at).collect::<Vec<_>>()
    );
}
