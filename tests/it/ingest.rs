//! The ingest contract: status codes and ids.

use wasmhook_e2e::{Receiver, Router, Setup, s_to_t};

use crate::WAIT;

#[tokio::test(flavor = "multi_thread")]
async fn ingest_answers_202_404_413_400_as_the_contract_says() {
    let rx = Receiver::start().await;
    let config = format!(
        "[[sources]]\nname = \"gh\"\nevent_type = {{ header = \"x-github-event\" }}\n\n\
         [[sources]]\nname = \"stripe\"\nevent_type = {{ json_pointer = \"/type\" }}\n\n\
         [[targets]]\nname = \"t\"\nurl = \"{}\"\n\n\
         [[targets]]\nname = \"all-gh\"\nurl = \"{}\"\n\n\
         [[routes]]\nname = \"r\"\nsource = \"stripe\"\nevent_types = [\"invoice.paid\"]\ntargets = [\"t\"]\n\n\
         [[routes]]\nname = \"every-gh\"\nsource = \"gh\"\ntargets = [\"all-gh\"]\n",
        rx.url("t"),
        rx.url("all-gh")
    );
    let router = Router::with(Setup {
        config: &config,
        server_extra: "max_body_bytes = 1024",
        ..Setup::default()
    })
    .await;

    let (status, body) = router.ingest("nope", "{}", &[]).await;
    assert_eq!(status, 404);
    assert!(body["error"].as_str().unwrap().contains("nope"));

    let (status, body) = router
        .ingest("gh", vec![b'x'; 2048], &[("x-github-event", "push")])
        .await;
    assert_eq!(status, 413, "{body}");

    // No routing field is no reason to refuse: accepted with the type "".
    let (status, body) = router
        .ingest("gh", r#"{"untyped":1}"#, &[("webhook-id", "gh-untyped")])
        .await;
    assert_eq!(
        (status, body["id"].as_str()),
        (202, Some("gh-untyped")),
        "{body}"
    );
    for (i, untyped) in ["not json", r#"[{"type":"invoice.paid"}]"#]
        .iter()
        .enumerate()
    {
        let id = format!("stripe-untyped-{i}");
        let (status, body) = router
            .ingest("stripe", *untyped, &[("webhook-id", &id)])
            .await;
        assert_eq!(status, 202, "{untyped}: {body}");
    }
    // A route without event_types sees the untyped event, as sent.
    let got = rx.wait_for("all-gh", 1, WAIT).await;
    assert_eq!(&got[0].body[..], br#"{"untyped":1}"#);
    let (status, event) = router.api("/api/events/gh-untyped").await;
    assert_eq!(
        (status, &event["event_type"]),
        (200, &serde_json::json!(""))
    );

    // Malformed HTTP is still a 400: here an id no store could key on.
    let (status, body) = router.ingest("gh", "{}", &[("webhook-id", "a b")]).await;
    assert_eq!(status, 400, "{body}");

    // The id comes from Idempotency-Key; the route's event_types pre-filter applies.
    let (status, body) = router
        .ingest(
            "stripe",
            r#"{"type":"invoice.paid"}"#,
            &[("idempotency-key", "key-1")],
        )
        .await;
    assert_eq!((status, body["id"].as_str()), (202, Some("key-1")));
    assert_eq!(
        router
            .ingest("stripe", r#"{"type":"invoice.created"}"#, &[])
            .await
            .0,
        202
    );
    let got = rx.wait_for("t", 1, WAIT).await;
    assert_eq!(got[0].json()["type"], "invoice.paid");
    // The untyped events skipped the route with event_types.
    for i in 0..2 {
        let (_, event) = crate::eventually_async("the untyped event processed", || async {
            let (status, event) = router.api(&format!("/api/events/stripe-untyped-{i}")).await;
            (status == 200 && event["state"] == "processed").then_some(((), event))
        })
        .await;
        assert_eq!(event["event_type"], "");
        assert_eq!(event["deliveries"], serde_json::json!([]), "{event}");
    }
    assert_eq!(rx.on("t").len(), 1);

    assert_eq!(router.get("/healthz").await.0, 200);
    assert_eq!(router.get("/readyz").await.0, 200);
    let (status, metrics) = router.get("/metrics").await;
    assert_eq!(status, 200);
    assert!(
        metrics.contains("wasmhook_events_received_total{source=\"stripe\"} 4"),
        "{metrics}"
    );
    assert!(
        metrics.contains("wasmhook_events_untyped_total{source=\"stripe\"} 2")
            && metrics.contains("wasmhook_events_untyped_total{source=\"gh\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("wasmhook_ingest_rejected_total{source=\"gh\",reason=\"too_large\"} 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_queue_answers_503_instead_of_losing_events() {
    let rx = Receiver::start().await;
    // One slow plugin call at a time (each runs to its 500 ms deadline), and
    // room for 3 events waiting: the pipeline backs up and ingest must refuse.
    let config = s_to_t(&rx, "r", &["hostile-loop"]);
    let router = Router::with(Setup {
        config: &config,
        plugins: &["hostile-loop"],
        storage_extra: "queue_capacity = 3",
        plugins_extra: "max_concurrency = 1\ntimeout_ms = 500",
        ..Setup::default()
    })
    .await;
    let mut accepted = 0;
    let mut refused = None;
    for i in 0..10 {
        let id = format!("full-{i}");
        let (status, body) = router
            .ingest("s", format!("{{\"i\":{i}}}"), &[("webhook-id", &id)])
            .await;
        match status {
            202 => accepted += 1,
            503 => {
                refused = Some((id, body));
                break;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    let (id, body) = refused.expect("ingest refused once the queue was full");
    assert!(
        body["error"].as_str().unwrap().contains("queue is full"),
        "{body}"
    );
    // The operator's line names the event refused.
    router
        .wait_log("the queue-full line, naming the event", WAIT, |l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("queue full"))
                && l["span"]["event_id"] == id.as_str()
                && l["span"]["source"] == "s"
        })
        .await;
    assert!(
        (3..=5).contains(&accepted),
        "3 waiting plus at most the ones in the pipeline: {accepted}"
    );
    assert_eq!(
        router
            .metric("wasmhook_ingest_rejected_total{source=\"s\",reason=\"queue_full\"}")
            .await,
        1.0
    );
    assert_eq!(
        router
            .metric("wasmhook_events_received_total{source=\"s\"}")
            .await,
        accepted as f64
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn non_ascii_header_values_and_ids_survive_the_trip() {
    use reqwest::header::HeaderValue;
    let rx = Receiver::start().await;
    let config = s_to_t(&rx, "r", &[]);
    let router = Router::start(&config, &[], "").await;
    let client = reqwest::Client::new();
    let mut answers = Vec::new();
    for _ in 0..2 {
        let resp = client
            .post(router.url("/ingest/s"))
            .header(
                "x-name",
                HeaderValue::from_bytes("Café".as_bytes()).unwrap(),
            )
            .header(
                "idempotency-key",
                HeaderValue::from_bytes("commande-née-1".as_bytes()).unwrap(),
            )
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 202);
        answers.push(
            serde_json::from_slice::<serde_json::Value>(&resp.bytes().await.unwrap()).unwrap(),
        );
    }
    assert_eq!(answers[0]["id"], "commande-née-1");
    assert_eq!(answers[1]["duplicate"], true, "the retry is a duplicate");
    let got = rx.wait_for("t", 1, WAIT).await;
    assert_eq!(got[0].header("x-name"), Some("Café"));
}
