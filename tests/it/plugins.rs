//! Each example plugin's behaviour, end to end.

use serde_json::json;
use wasmhook_e2e::{Receiver, Router};

use crate::WAIT;

fn target(name: &str, url: &str) -> String {
    format!("[[targets]]\nname = \"{name}\"\nurl = \"{url}\"\nretry_schedule = [\"10ms\"]\n\n")
}

#[tokio::test(flavor = "multi_thread")]
async fn filter_event_type_keeps_listed_types_and_drops_the_rest() {
    let rx = Receiver::start().await;
    let config = format!(
        "[[sources]]\nname = \"gh\"\nevent_type = {{ header = \"x-github-event\" }}\n\n{}\
         [[routes]]\nname = \"pushes\"\nsource = \"gh\"\n\
         plugins = [{{ name = \"filter-event-type\", config = {{ allow = \"push,release\" }} }}]\ntargets = [\"t\"]\n",
        target("t", &rx.url("t"))
    );
    let router = Router::start(&config, &["filter-event-type"], "").await;
    for (ty, body) in [
        ("star", r#"{"n":1}"#),
        ("push", r#"{"n":2}"#),
        ("issues", r#"{"n":3}"#),
        ("release", r#"{"n":4}"#),
    ] {
        let (status, resp) = router
            .ingest(
                "gh",
                body,
                &[("x-github-event", ty), ("content-type", "application/json")],
            )
            .await;
        assert_eq!(status, 202, "{resp}");
        assert!(resp["id"].as_str().is_some_and(|id| !id.is_empty()));
    }
    let got = rx.wait_for("t", 2, WAIT).await;
    router
        .wait_metric("wasmhook_route_drops_total{route=\"pushes\"}", 2.0, WAIT)
        .await;
    let mut ns: Vec<i64> = got
        .iter()
        .map(|r| r.json()["n"].as_i64().unwrap())
        .collect();
    ns.sort();
    assert_eq!(ns, [2, 4], "only push and release pass");
    // The event is forwarded unchanged, with its headers.
    let push = got.iter().find(|r| r.json()["n"] == 2).unwrap();
    assert_eq!(push.body.as_ref(), br#"{"n":2}"#);
    assert_eq!(push.header("x-github-event"), Some("push"));
    assert_eq!(push.header("content-type"), Some("application/json"));
}

#[tokio::test(flavor = "multi_thread")]
async fn redact_removes_fields_and_fails_closed_on_what_it_cannot_parse() {
    let rx = Receiver::start().await;
    let config = format!(
        "[[sources]]\nname = \"s\"\n\n{}[[routes]]\nname = \"r\"\nsource = \"s\"\n\
         plugins = [{{ name = \"redact\", config = {{ fields = \"/user/email,/card\" }} }}]\ntargets = [\"t\"]\n",
        target("t", &rx.url("t"))
    );
    let router = Router::start(&config, &["redact"], "").await;
    let body =
        json!({"user": {"email": "ann@example.com", "name": "Ann"}, "card": "4242", "total": 5})
            .to_string();
    assert_eq!(
        router
            .ingest("s", body, &[("content-type", "application/json")])
            .await
            .0,
        202
    );
    let got = rx.wait_for("t", 1, WAIT).await;
    assert_eq!(got[0].json(), json!({"user": {"name": "Ann"}, "total": 5}));

    // What it cannot parse fails closed: kept as a failed route, not sent.
    for (id, hostile) in [
        ("form", "a=1&card=2".to_string()),
        ("trailing", r#"{"card":"4242"} x"#.to_string()),
        (
            "deep",
            format!(
                "{}{{\"card\":\"4242\"}}{}",
                "[".repeat(130),
                "]".repeat(130)
            ),
        ),
    ] {
        assert_eq!(
            router.ingest("s", hostile, &[("webhook-id", id)]).await.0,
            202
        );
    }
    router
        .wait_metric("wasmhook_route_failures_total{route=\"r\"}", 3.0, WAIT)
        .await;
    let (_, event) = router.api("/api/events/trailing").await;
    assert!(
        event["failed_routes"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("cannot redact"),
        "{event}"
    );
    assert_eq!(rx.on("t").len(), 1, "no unredacted body was delivered");
}

#[tokio::test(flavor = "multi_thread")]
async fn github_to_slack_turns_pushes_into_slack_messages() {
    let rx = Receiver::start().await;
    let config = format!(
        "[[sources]]\nname = \"github\"\nevent_type = {{ header = \"x-github-event\" }}\nid_header = \"x-github-delivery\"\n\n{}\
         [[routes]]\nname = \"gh-slack\"\nsource = \"github\"\nplugins = [\"github-to-slack\"]\ntargets = [\"slack\"]\n",
        target("slack", &rx.url("slack"))
    );
    let router = Router::start(&config, &["github-to-slack"], "").await;
    let push = json!({
        "ref": "refs/heads/main",
        "pusher": {"name": "octocat", "email": "o@example.com"},
        "repository": {"full_name": "octo-org/hello-world"},
        "commits": [{"id": "1"}, {"id": "2"}, {"id": "3"}]
    });
    let h = [
        ("x-github-event", "push"),
        ("x-github-delivery", "d-1"),
        ("content-type", "application/json"),
    ];
    let (status, resp) = router.ingest("github", push.to_string(), &h).await;
    assert_eq!(
        (status, resp["id"].as_str()),
        (202, Some("d-1")),
        "the source's id header is the event id"
    );
    let h = [
        ("x-github-event", "issues"),
        ("x-github-delivery", "d-2"),
        ("content-type", "application/json"),
    ];
    assert_eq!(router.ingest("github", "{}", &h).await.0, 202);

    let got = rx.wait_for("slack", 1, WAIT).await;
    assert_eq!(
        got[0].json(),
        json!({"text": "octocat pushed 3 commit(s) to octo-org/hello-world@main"})
    );
    router
        .wait_metric("wasmhook_route_drops_total{route=\"gh-slack\"}", 1.0, WAIT)
        .await;
    assert_eq!(rx.on("slack").len(), 1, "the issues event was dropped");
}

#[tokio::test(flavor = "multi_thread")]
async fn split_batch_makes_one_delivery_per_element_with_derived_ids() {
    let rx = Receiver::start().await;
    let config = format!(
        "[[sources]]\nname = \"s\"\n\n{}[[routes]]\nname = \"r\"\nsource = \"s\"\nplugins = [\"split-batch\"]\ntargets = [\"t\"]\n",
        target("t", &rx.url("t"))
    );
    let router = Router::start(&config, &["split-batch"], "").await;
    let (status, _) = router
        .ingest(
            "s",
            r#"[{"n":0},{"n":1},{"n":2}]"#,
            &[("webhook-id", "batch-7")],
        )
        .await;
    assert_eq!(status, 202);
    let got = rx.wait_for("t", 3, WAIT).await;
    let mut ns: Vec<i64> = got
        .iter()
        .map(|r| r.json()["n"].as_i64().unwrap())
        .collect();
    ns.sort();
    assert_eq!(ns, [0, 1, 2]);
    let ids: std::collections::HashSet<_> = got
        .iter()
        .map(|r| r.header("webhook-id").unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 3, "each element is its own delivery");

    // A non-array body passes through as one delivery.
    assert_eq!(router.ingest("s", r#"{"single":true}"#, &[]).await.0, 202);
    let got = rx.wait_for("t", 4, WAIT).await;
    assert!(got.iter().any(|r| r.body.as_ref() == br#"{"single":true}"#));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_two_plugin_chain_feeds_every_output_to_the_next_plugin() {
    let rx = Receiver::start().await;
    let config = format!(
        "[[sources]]\nname = \"s\"\n\n{}[[routes]]\nname = \"chain\"\nsource = \"s\"\n\
         plugins = [\"split-batch\", {{ name = \"redact\", config = {{ fields = \"/secret\" }} }}]\ntargets = [\"t\"]\n",
        target("t", &rx.url("t"))
    );
    let router = Router::start(&config, &["split-batch", "redact"], "").await;
    let body = r#"[{"n":1,"secret":"a"},{"n":2,"secret":"b"}]"#;
    assert_eq!(
        router
            .ingest("s", body, &[("content-type", "application/json")])
            .await
            .0,
        202
    );
    let got = rx.wait_for("t", 2, WAIT).await;
    let mut bodies: Vec<_> = got.iter().map(|r| r.json()).collect();
    bodies.sort_by_key(|v| v["n"].as_i64());
    assert_eq!(bodies, [json!({"n": 1}), json!({"n": 2})]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_routes_to_named_targets_and_an_unknown_name_fails_the_route() {
    let rx = Receiver::start().await;
    let config = format!(
        "[[sources]]\nname = \"s\"\n\n{}{}\
         [[routes]]\nname = \"to-b\"\nsource = \"s\"\n\
         plugins = [{{ name = \"tag-route\", config = {{ to = \"b\", tag = \"routed\" }} }}]\ntargets = [\"a\"]\n\n\
         [[routes]]\nname = \"to-nowhere\"\nsource = \"s\"\n\
         plugins = [{{ name = \"tag-route\", config = {{ to = \"nope\" }} }}]\ntargets = [\"a\"]\n",
        target("a", &rx.url("a")),
        target("b", &rx.url("b"))
    );
    let router = Router::start(&config, &["tag-route"], "").await;
    assert_eq!(router.ingest("s", "{}", &[]).await.0, 202);
    let got = rx.wait_for("b", 1, WAIT).await;
    assert_eq!(got[0].header("x-tag"), Some("routed"));
    router
        .wait_metric(
            "wasmhook_route_failures_total{route=\"to-nowhere\"}",
            1.0,
            WAIT,
        )
        .await;
    assert!(
        rx.on("a").is_empty(),
        "the route's own target is replaced by the plugin's choice"
    );
    router
        .wait_log_contains(
            r#"an output names target \"nope\", which is not configured"#,
            WAIT,
        )
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_sees_the_same_time_and_randomness_on_every_run_of_an_event() {
    let rx = Receiver::start().await;
    // Two routes run the same plugin on each event: two fresh instances.
    let config = format!(
        "[[sources]]\nname = \"s\"\n\n{}{}\
         [[routes]]\nname = \"one\"\nsource = \"s\"\nplugins = [\"clock-and-dice\"]\ntargets = [\"a\"]\n\n\
         [[routes]]\nname = \"two\"\nsource = \"s\"\nplugins = [\"clock-and-dice\"]\ntargets = [\"b\"]\n",
        target("a", &rx.url("a")),
        target("b", &rx.url("b"))
    );
    let router = Router::start(&config, &["clock-and-dice"], "").await;
    for i in 1..=2 {
        let id = format!("dice-{i}");
        let (status, _) = router
            .ingest("s", format!("{{\"i\":{i}}}"), &[("webhook-id", &id)])
            .await;
        assert_eq!(status, 202);
    }
    let seen = |path: &str, i: i64| -> (String, String, String) {
        let r = rx
            .on(path)
            .into_iter()
            .find(|r| r.json()["i"] == i)
            .unwrap();
        let h = |n: &str| r.header(n).unwrap().to_string();
        (h("x-now"), h("x-step"), h("x-dice"))
    };
    rx.wait_for("a", 2, WAIT).await;
    rx.wait_for("b", 2, WAIT).await;
    let mut dice = Vec::new();
    for i in 1..=2 {
        let (now, step, die) = seen("a", i);
        assert_eq!(
            (now.clone(), step.clone(), die.clone()),
            seen("b", i),
            "event {i}"
        );
        let (_, event) = router.api(&format!("/api/events/dice-{i}")).await;
        assert_eq!(
            now,
            event["received_at"].to_string(),
            "the wall clock is the arrival"
        );
        assert_eq!(step, "1000", "the monotonic clock steps 1 µs per reading");
        dice.push(die);
    }
    assert_ne!(dice[0], dice[1], "another event, other randomness");
}

/// Sends `n` events one after another, each delivered before the next, and
/// returns how many events the serving instance had seen for each.
async fn instance_calls(router: &Router, rx: &Receiver, n: usize) -> Vec<u32> {
    for i in 0..n {
        let (status, _) = router.ingest("s", format!("{{\"i\":{i}}}"), &[]).await;
        assert_eq!(status, 202);
        rx.wait_for("t", i + 1, WAIT).await;
    }
    let mut got = rx.on("t");
    got.sort_by_key(|r| r.json()["i"].as_i64().unwrap());
    got.iter()
        .map(|r| r.header("x-instance-calls").unwrap().parse().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn reuse_keeps_an_instance_for_that_many_events_and_never_fails_one_for_the_last() {
    let rx = Receiver::start().await;
    let config = wasmhook_e2e::s_to_t(&rx, "r", &["call-counter"]);
    // By default every event gets a fresh instance.
    let router = Router::start(&config, &["call-counter"], "").await;
    assert_eq!(instance_calls(&router, &rx, 3).await, [1, 1, 1]);
    drop(router);

    // With reuse = 3, one instance serves three events, then a new one.
    let rx = Receiver::start().await;
    let config = wasmhook_e2e::s_to_t(&rx, "r", &["call-counter"]);
    let router = Router::start(&config, &["call-counter"], "reuse = { call-counter = 3 }").await;
    assert_eq!(instance_calls(&router, &rx, 7).await, [1, 2, 3, 1, 2, 3, 1]);
    drop(router);

    // Idle kept instances may hold a quarter of the pool's call slots at
    // most, so they never starve other plugins: a pool of 2 keeps none.
    let rx = Receiver::start().await;
    let config = wasmhook_e2e::s_to_t(&rx, "r", &["call-counter"]);
    let router = Router::start(
        &config,
        &["call-counter"],
        "max_concurrency = 2\nreuse = { call-counter = 3 }",
    )
    .await;
    assert_eq!(instance_calls(&router, &rx, 3).await, [1, 1, 1]);
    drop(router);

    // A kept instance that runs out of memory on what earlier events left
    // (24 MiB leaked per event, 64 MiB allowed) is replaced, and the event
    // it could not take runs in a fresh one: no event fails for another's.
    let rx = Receiver::start().await;
    let config = wasmhook_e2e::s_to_t(&rx, "r", &["call-counter"]).replace(
        "plugins = [\"call-counter\"]",
        "plugins = [{ name = \"call-counter\", config = { leak_mb = 24 } }]",
    );
    let router = Router::start(
        &config,
        &["call-counter"],
        "memory_limit_mb = 64\nreuse = { call-counter = 10 }",
    )
    .await;
    assert_eq!(instance_calls(&router, &rx, 6).await, [1, 2, 1, 2, 1, 2]);
    assert_eq!(
        router
            .metric("wasmhook_route_failures_total{route=\"r\"}")
            .await,
        0.0
    );
}
