//! The dashboard at `/ui/` and the admin API calls it stands on: the event
//! list, "try it", the live stream, targets. The browser test drives a real
//! headless Chromium (skipped, saying so, where there is none; CI requires it).

use serde_json::{Value, json};
use wasmhook_e2e::browser::Browser;
use wasmhook_e2e::{ADMIN_TOKEN, Behaviour, Receiver, Router, Setup};

use crate::{WAIT, eventually_async};

/// Source `s` (typed by `/type`) → `filter-event-type` (allow
/// order.created) → target `flaky`, which gives up after one attempt.
fn config(rx: &Receiver) -> String {
    format!(
        "[[sources]]\nname = \"s\"\nevent_type = {{ json_pointer = \"/type\" }}\n\n\
         [[sources]]\nname = \"other\"\n\n\
         [[targets]]\nname = \"flaky\"\nurl = \"{}\"\nmax_attempts = 1\n\n\
         [[routes]]\nname = \"orders\"\nsource = \"s\"\n\
         plugins = [{{ name = \"filter-event-type\", config = {{ allow = \"order.created\" }} }}]\n\
         targets = [\"flaky\"]\n",
        rx.url("flaky")
    )
}

async fn router(rx: &Receiver) -> Router {
    Router::with(Setup {
        config: &config(rx),
        plugins: &["filter-event-type"],
        ..Setup::default()
    })
    .await
}

async fn send(router: &Router, source: &str, body: &str) -> String {
    let (status, answer) = router.ingest(source, body.to_string(), &[]).await;
    assert_eq!(status, 202, "{answer}");
    answer["id"].as_str().unwrap().to_string()
}

fn ids(page: &Value) -> Vec<String> {
    page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_event_list_filters_pages_and_refuses_bad_parameters() {
    let rx = Receiver::start().await;
    let router = router(&rx).await;
    let mut sent = Vec::new();
    for i in 0..5 {
        sent.push(
            send(
                &router,
                "s",
                &format!(r#"{{"type":"order.created","n":{i}}}"#),
            )
            .await,
        );
    }
    let other = send(&router, "other", "{}").await;
    let dropped = send(&router, "s", r#"{"type":"order.refunded"}"#).await;

    // Newest first, paged by `next`, with nothing lost or repeated.
    let (status, first) = router.api("/api/events?limit=4").await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(ids(&first).len(), 4);
    assert_eq!(ids(&first)[0], dropped);
    let next = first["next"].as_str().expect("a full page has a next");
    let (_, second) = router
        .api(&format!("/api/events?limit=4&before={next}"))
        .await;
    let mut all: Vec<String> = ids(&first).into_iter().chain(ids(&second)).collect();
    assert_eq!(second["next"], Value::Null, "{second}");
    all.sort();
    let mut expected: Vec<String> = sent
        .iter()
        .cloned()
        .chain([other, dropped.clone()])
        .collect();
    expected.sort();
    assert_eq!(all, expected);

    let (_, by_source) = router.api("/api/events?source=other").await;
    assert_eq!(ids(&by_source).len(), 1);
    let (_, by_type) = router.api("/api/events?type=order.refunded").await;
    assert_eq!(ids(&by_type), [dropped]);
    let (_, before) = router.api("/api/events?before=1").await;
    assert!(ids(&before).is_empty(), "nothing was received before 1 ms");
    // Deliveries are counted per event.
    let created = &by_source["events"][0];
    assert_eq!(created["deliveries"], 0);

    // Ids are unique per source: the same id from two sources is two
    // events, and `?source=` picks one.
    for source in ["s", "other"] {
        let (status, _) = router
            .ingest(
                source,
                format!(r#"{{"from":"{source}"}}"#),
                &[("webhook-id", "shared-1")],
            )
            .await;
        assert_eq!(status, 202);
    }
    let (status, any) = router.api("/api/events/shared-1").await;
    assert_eq!(status, 200, "without a source, the first received: {any}");
    for source in ["s", "other"] {
        let (status, one) = router
            .api(&format!("/api/events/shared-1?source={source}"))
            .await;
        assert_eq!((status, &one["source"]), (200, &json!(source)), "{one}");
    }
    assert_eq!(router.api("/api/events/shared-1?source=nope").await.0, 404);

    for bad in ["state=lost", "before=yesterday", "limit=x", "colour=red"] {
        let (status, body) = router.api(&format!("/api/events?{bad}")).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body["error"].as_str().is_some(), "{body}");
    }
    let (status, unfiltered) = router
        .api("/api/events?state=&source=&type=&limit=100")
        .await;
    assert_eq!(status, 200, "empty filters filter nothing");
    assert_eq!(ids(&unfiltered).len(), 9, "{unfiltered}");
    let (status, all) = router.api("/api/deliveries?state=&target=&after=").await;
    assert_eq!(status, 200, "{all}");
}

#[tokio::test(flavor = "multi_thread")]
async fn try_it_runs_a_loaded_plugin_and_stores_nothing() {
    let rx = Receiver::start().await;
    let router = router(&rx).await;
    let run = |body: Value| {
        let router = &router;
        async move {
            router
                .api_post_json("/api/plugins/filter-event-type/run", &body)
                .await
        }
    };
    let (status, kept) = run(json!({
        "event": { "type": "push", "body": { "n": 1 } },
        "config": { "allow": "push" }
    }))
    .await;
    assert_eq!(status, 200, "{kept}");
    assert_eq!(kept["outcome"], "emit", "{kept}");
    assert_eq!(kept["emit"][0]["body"], json!({ "n": 1 }));
    let (_, dropped) =
        run(json!({ "event": { "type": "star" }, "config": { "allow": "push" } })).await;
    assert_eq!(dropped["outcome"], "drop", "{dropped}");
    assert!(
        dropped["reason"].as_str().unwrap().contains("star"),
        "{dropped}"
    );
    // A list, as a route's config has it, is joined with commas.
    let (_, listed) =
        run(json!({ "event": { "type": "star" }, "config": { "allow": ["push", "star"] } })).await;
    assert_eq!(listed["outcome"], "emit", "{listed}");

    // On a stored event, by id.
    let id = send(&router, "s", r#"{"type":"order.created"}"#).await;
    let (status, on_stored) =
        run(json!({ "event_id": id, "config": { "allow": "order.created" } })).await;
    assert_eq!(
        (status, &on_stored["outcome"]),
        (200, &json!("emit")),
        "{on_stored}"
    );

    // Nothing was stored or delivered by any of it: one event, the one sent.
    let (_, list) = router.api("/api/events").await;
    assert_eq!(ids(&list), [id]);

    for (body, status) in [
        (json!({ "event": {}, "event_id": "x" }), 400),
        (json!({}), 400),
        (json!({ "event": { "headers": 7 } }), 400),
        (json!({ "event": {}, "config": { "a": [[1]] } }), 400),
        (json!({ "event": {}, "config": { "a": { "b": 1 } } }), 400),
        (json!({ "event_id": "evt_missing" }), 404),
    ] {
        let (got, answer) = run(body.clone()).await;
        assert_eq!(got, status, "{body}: {answer}");
    }
    let (status, _) = router
        .api_post_json("/api/plugins/no-such-plugin/run", &json!({ "event": {} }))
        .await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_live_stream_shows_each_new_event_as_a_server_sent_event() {
    let rx = Receiver::start().await;
    let router = router(&rx).await;
    let client = reqwest::Client::new();
    let refused = client.get(router.url("/api/stream")).send().await.unwrap();
    assert_eq!(refused.status(), 401);
    let mut stream = client
        .get(router.url("/api/stream?source=s"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    assert!(
        stream.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    // The response head is out, so the subscription is in place.
    send(&router, "other", "{}").await;
    let id = send(&router, "s", r#"{"type":"order.created"}"#).await;
    // The event and its delivery attempt, each one server-sent event (in
    // either order: the attempt may finish before ingest has answered).
    let mut seen = String::new();
    let got = tokio::time::timeout(WAIT, async {
        while !(seen.contains("event: attempt\n")
            && seen.contains("event: event\n")
            && seen.ends_with("\n\n"))
        {
            let chunk = stream
                .chunk()
                .await
                .unwrap()
                .expect("the stream stays open");
            seen.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    })
    .await;
    assert!(got.is_ok(), "no event and attempt on the stream: {seen:?}");
    let messages: Vec<&str> = seen.split("\n\n").filter(|m| !m.is_empty()).collect();
    let events: Vec<&&str> = messages
        .iter()
        .filter(|m| m.starts_with("event: event\n"))
        .collect();
    assert_eq!(events.len(), 1, "only source s's event: {seen}");
    assert!(events[0].contains(&format!("\"id\":\"{id}\"")), "{seen}");
    let attempt = messages
        .iter()
        .find(|m| m.starts_with("event: attempt"))
        .unwrap();
    assert!(
        attempt.contains(&format!("\"event_id\":\"{id}\"")),
        "{attempt}"
    );
    assert!(attempt.contains("\"outcome\":\"delivered\""), "{attempt}");
}

#[tokio::test(flavor = "multi_thread")]
async fn targets_show_their_backlog_and_masked_credentials() {
    let rx = Receiver::start().await;
    rx.set("flaky", Behaviour::Always(500));
    let config = config(&rx).replace("http://", "http://user:hunter2@");
    let router = Router::with(Setup {
        config: &config,
        plugins: &["filter-event-type"],
        ..Setup::default()
    })
    .await;
    send(&router, "s", r#"{"type":"order.created"}"#).await;
    let target = eventually_async("a dead delivery on the target", || async {
        let (_, body) = router.api("/api/targets").await;
        let t = body["targets"][0].clone();
        (t["dead"] == 1).then_some(t)
    })
    .await;
    assert_eq!(target["name"], "flaky");
    let url = target["url"].as_str().unwrap();
    assert!(
        url.contains("//***:***@") && !url.contains("hunter2") && !url.contains("user"),
        "{url}"
    );
    assert_eq!(target["attempts"], 1);
    assert_eq!(target["success_rate"], 0.0);
    let (_, overview) = router.api("/api/overview").await;
    assert_eq!(overview["queue"]["dead"], 1, "{overview}");
    assert_eq!(
        overview["series"]["delivered"].as_array().unwrap().len(),
        3600
    );
}

/// Every admin call refuses a request without the token, a wrong one and
/// an empty one, before it does anything.
#[tokio::test(flavor = "multi_thread")]
async fn every_admin_call_needs_the_token() {
    let rx = Receiver::start().await;
    let router = router(&rx).await;
    let calls = [
        ("GET", "/api/overview"),
        ("GET", "/api/plugins"),
        ("POST", "/api/plugins/filter-event-type/run"),
        ("GET", "/api/targets"),
        ("GET", "/api/stream"),
        ("GET", "/api/events"),
        ("GET", "/api/events/evt_1"),
        ("POST", "/api/events/evt_1/rerun"),
        ("GET", "/api/deliveries"),
        ("POST", "/api/deliveries/d1/retry"),
        ("POST", "/api/targets/flaky/replay"),
        ("POST", "/api/targets/flaky/pause"),
        ("POST", "/api/targets/flaky/resume"),
        ("POST", "/api/deliveries/d1/skip"),
    ];
    let client = reqwest::Client::new();
    for (method, path) in calls {
        for token in [None, Some("wrong"), Some("")] {
            let mut request = client.request(method.parse().unwrap(), router.url(path));
            if let Some(t) = token {
                request = request.header("authorization", format!("Bearer {t}"));
            }
            let status = request.send().await.unwrap().status();
            assert_eq!(status, 401, "{method} {path} with {token:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_exists_only_with_a_token_and_sends_a_strict_policy() {
    let rx = Receiver::start().await;
    let router = router(&rx).await;
    let page = reqwest::get(router.url("/ui/")).await.unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    let html = page.text().await.unwrap();
    assert!(html.contains("app.js") && !html.contains(ADMIN_TOKEN));
    assert_eq!(router.get("/ui/app.js").await.0, 200);
    // An encoded `..` reaches the handler as a file name, and is no file.
    assert_eq!(router.get("/ui/..%2FCargo.toml").await.0, 404);
    assert_eq!(router.get("/ui/nothing.js").await.0, 404);

    let off = Router::with(Setup {
        config: &config(&rx),
        plugins: &["filter-event-type"],
        no_admin_token: true,
        ..Setup::default()
    })
    .await;
    for path in ["/ui/", "/ui", "/ui/app.js", "/api/events", "/api/stream"] {
        assert_eq!(off.get(path).await.0, 404, "{path}");
    }
}

/// Sign in, find events, read why one was dropped, retry a dead delivery,
/// replay a target, try a plugin, watch the live tail, and see that an
/// attacker's body is shown as text and runs nothing.
#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_finds_explains_and_fixes_events_in_a_real_browser() {
    let Some(browser) = Browser::start("the dashboard's browser test").await else {
        return;
    };
    let rx = Receiver::start().await;
    rx.set("flaky", Behaviour::Always(500));
    let router = router(&rx).await;

    // Sign in: a wrong token is refused, the right one lands on the overview.
    browser.goto(&router.url("/ui/")).await;
    browser.wait_text("h1", "Sign in").await;
    browser.screenshot("ui-signin").await;
    browser.fill("#token", "not-the-token").await;
    browser.click("#signin-submit").await;
    browser
        .wait_text("#signin-error", "not the admin token")
        .await;
    browser.fill("#token", ADMIN_TOKEN).await;
    browser.click("#signin-submit").await;
    browser.wait_text("h1", "Overview").await;
    let stored = browser
        .eval("return JSON.stringify(Object.keys(sessionStorage))")
        .await;
    assert!(stored.as_str().unwrap().contains("admin_token"), "{stored}");
    assert!(
        !browser
            .eval("return location.href")
            .await
            .as_str()
            .unwrap()
            .contains(ADMIN_TOKEN)
    );

    // Events: two that die at the target, one dropped, one hostile.
    let dead_one = send(&router, "s", r#"{"type":"order.created","n":1}"#).await;
    let dead_two = send(&router, "s", r#"{"type":"order.created","n":2}"#).await;
    let dropped = send(&router, "s", r#"{"type":"order.refunded"}"#).await;
    let xss = r#"{"type":"order.refunded","note":"<img src=x onerror=alert(1)><script>window.__xss=1</script>"}"#;
    let (status, answer) = router
        .ingest("s", xss, &[("x-evil", "<script>alert(2)</script>")])
        .await;
    assert_eq!(status, 202);
    let hostile = answer["id"].as_str().unwrap().to_string();
    // The sender picks the id and the type too.
    let (status, _) = router
        .ingest(
            "s",
            r#"{"type":"<script>alert(4)</script>"}"#,
            &[("webhook-id", "<img/src=x/onerror=alert(3)>")],
        )
        .await;
    assert_eq!(status, 202);
    router.wait_metric("wasmhook_queue_dead", 2.0, WAIT).await;

    browser.goto(&router.url("/ui/#/events")).await;
    browser.wait_text("#events-table", &hostile).await;
    browser.wait_text("#events-table", &dead_one).await;
    browser
        .wait_text("#events-table", "<img/src=x/onerror=alert(3)>")
        .await;
    browser
        .wait_text("#events-table", "<script>alert(4)</script>")
        .await;
    no_markup_made(&browser, "an id or type").await;
    browser.screenshot("ui-events").await;

    // Filter by type, then search by id.
    browser
        .fill("#event-filters input[name=type]", "order.refunded")
        .await;
    browser.click("#event-filters button[type=submit]").await;
    browser.wait_text("#events-table", &dropped).await;
    // The filtered page, not the one before it: dropped + hostile.
    browser.wait_count("#events-table tbody tr", 2).await;
    browser.fill("#search-id", &dropped).await;
    browser.click("#event-search button").await;

    // Its detail says which plugin dropped it and why.
    browser.wait_text("#event-id", &dropped).await;
    let routes = browser
        .wait_text("#routes-table", "dropped by plugin filter-event-type")
        .await;
    assert!(
        routes.contains("\"order.refunded\" is not in allow"),
        "{routes}"
    );
    browser.screenshot("ui-event-detail").await;

    // The hostile body and header show as text, and nothing ran.
    browser
        .goto(&router.url(&format!("/ui/#/events/{hostile}")))
        .await;
    let body = browser
        .wait_text("#event-body", "<img src=x onerror=alert(1)>")
        .await;
    assert!(body.contains("<script>window.__xss=1</script>"), "{body}");
    browser
        .wait_text("#headers-table", "<script>alert(2)</script>")
        .await;
    no_markup_made(&browser, "the body or a header").await;
    assert_eq!(
        browser.eval("return window.__xss === undefined").await,
        json!(true)
    );
    assert_eq!(browser.alert().await, None, "no dialog was raised");

    // A dead delivery: Retry, and it shows as delivered.
    rx.set("flaky", Behaviour::Ok);
    browser
        .goto(&router.url(&format!("/ui/#/events/{dead_one}")))
        .await;
    browser.wait_text(".delivery-state", "dead").await;
    browser.click("button.retry").await;
    browser.wait_text("#flash", "is due again").await;
    rx.wait_for("flaky", 3, WAIT).await;
    browser.reload().await;
    browser.wait_text(".delivery-state", "delivered").await;
    browser.screenshot("ui-delivered-after-retry").await;

    // Replay the target's other dead delivery from the deliveries page.
    browser
        .goto(&router.url("/ui/#/deliveries?state=dead&target=flaky"))
        .await;
    browser.wait_text("#deliveries-table", &dead_two).await;
    browser.screenshot("ui-deliveries").await;
    browser.click("#replay").await;
    browser
        .wait_text("#flash", "Replayed 1 dead deliveries of flaky")
        .await;
    let delivered = rx.wait_for("flaky", 4, WAIT).await;
    assert!(
        delivered.last().unwrap().json()["n"] == 2,
        "the replayed delivery is event two's"
    );

    // Try it, on a stored event, with a config that keeps it and one that drops it.
    browser
        .goto(&router.url(&format!(
            "/ui/#/plugins?event={dead_two}&plugin=filter-event-type"
        )))
        .await;
    browser
        .wait_text("#plugins-table", "filter-event-type")
        .await;
    browser.wait_text("#try-event", &dead_two).await;
    browser
        .set_value("#try-config", r#"{"allow": "order.created"}"#)
        .await;
    browser.click("#try-run").await;
    browser
        .wait_text("#try-outcome", "1 event(s) emitted")
        .await;
    browser
        .set_value("#try-config", r#"{"allow": "push"}"#)
        .await;
    browser.click("#try-run").await;
    let outcome = browser
        .wait_text(
            "#try-output",
            "dropped: event type \"order.created\" is not in allow",
        )
        .await;
    assert!(
        !outcome.contains("null"),
        "nothing absent is shown: {outcome}"
    );
    browser.screenshot("ui-plugins-try-it").await;

    // Targets, and the overview with its chart.
    browser.goto(&router.url("/ui/#/targets")).await;
    browser.wait_text("#targets-table", "flaky").await;
    browser.screenshot("ui-targets").await;
    // Pause for a maintenance window, and resume.
    browser.click("#targets-table button.pause").await;
    browser.wait_text("#targets-table", "paused").await;
    assert_eq!(
        router.api("/api/targets").await.1["targets"][0]["state"],
        "paused"
    );
    browser.click("#targets-table button.resume").await;
    browser.wait_text("#targets-table", "active").await;
    browser.goto(&router.url("/ui/#/")).await;
    browser.wait_text("h1", "Overview").await;
    assert_eq!(browser.count("#chart polyline").await, 3);
    // Zero is a figure too: both dead deliveries were fixed.
    browser.wait_text("a.card", "Dead\n0").await;
    browser.screenshot("ui-overview").await;

    // The live tail shows an event sent after it opened.
    browser.goto(&router.url("/ui/#/live")).await;
    browser.wait_text("#live-status", "watching").await;
    let fresh = send(&router, "s", r#"{"type":"order.created","live":true}"#).await;
    browser.wait_text("#live-table", &fresh).await;
    browser
        .wait_text("#live-table tr.attempt", "delivered")
        .await;
    browser.screenshot("ui-live").await;

    // Signing out forgets the token.
    browser.click("#sign-out").await;
    browser.wait_text("h1", "Sign in").await;
    assert_eq!(browser.eval("return sessionStorage.length").await, json!(0));
    browser.close().await;
}

/// Nothing the sender wrote became an element on the page: it shows as text.
async fn no_markup_made(browser: &Browser, what: &str) {
    for tag in ["img", "script"] {
        assert_eq!(
            browser.count(&format!("#main {tag}")).await,
            0,
            "{what} made an <{tag}> element"
        );
    }
}
