use super::*;

fn line<'a>(text: &'a str, series: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
}

fn new(id: &str) -> Ingested {
    Ingested::New {
        id: id.into(),
        untyped: false,
    }
}

#[test]
fn renders_counters_histograms_and_gauges_with_escaped_labels() {
    let m = Metrics::default();
    m.ingested("github", &new("a"), Duration::from_millis(2));
    m.ingested("github", &new("b"), Duration::from_millis(3));
    m.plugin_emitted("a\"b", Duration::from_millis(1));
    let text = m.render(&Snapshot {
        queue: Some(QueueStats::default()),
        targets: Some(vec![TargetGauges {
            name: "ci".into(),
            backlog: 7,
            circuit: Some(CircuitState::Open),
            ..TargetGauges::default()
        }]),
        plugins_loaded: 3,
    });
    let value = |s| line(&text, s);
    assert_eq!(
        value("wasmhook_events_received_total{source=\"github\"}"),
        Some("2"),
        "{text}"
    );
    assert_eq!(
        value("wasmhook_plugin_calls_total{plugin=\"a\\\"b\",result=\"emit\"}"),
        Some("1"),
        "{text}"
    );
    assert_eq!(
        value("wasmhook_ingest_duration_seconds_count{source=\"github\"}"),
        Some("2")
    );
    assert_eq!(
        value("wasmhook_ingest_duration_seconds_sum{source=\"github\"}"),
        Some("0.005")
    );
    assert_eq!(value("wasmhook_target_backlog{target=\"ci\"}"), Some("7"));
    assert_eq!(
        value("wasmhook_target_circuit_open{target=\"ci\"}"),
        Some("1")
    );
    assert_eq!(value("wasmhook_plugins_loaded"), Some("3"));
    assert_eq!(value("wasmhook_queue_dead"), Some("0"));
    assert!(
        text.contains("# TYPE wasmhook_queue_dead gauge\n"),
        "{text}"
    );
    assert!(text.ends_with("# EOF\n"));

    assert_eq!(value("wasmhook_store_up"), Some("1"));

    // The store down: its gauges keep their last values, not 0, and say so.
    let text = m.render(&Snapshot::default());
    assert_eq!(
        line(&text, "wasmhook_target_backlog{target=\"ci\"}"),
        Some("7"),
        "{text}"
    );
    assert_eq!(line(&text, "wasmhook_store_up"), Some("0"));

    // A target gone from the config leaves the gauges.
    let text = m.render(&Snapshot {
        queue: Some(QueueStats::default()),
        targets: Some(Vec::new()),
        ..Snapshot::default()
    });
    assert_eq!(
        line(&text, "wasmhook_target_backlog{target=\"ci\"}"),
        None,
        "{text}"
    );
}

#[test]
fn each_ingest_outcome_lands_in_its_own_series() {
    let m = Metrics::default();
    let took = Duration::from_millis(1);
    m.ingested(
        "s",
        &Ingested::New {
            id: "a".into(),
            untyped: true,
        },
        took,
    );
    m.ingested(
        "s",
        &Ingested::Duplicate {
            id: "a".into(),
            original: "a".into(),
        },
        took,
    );
    m.ingested(
        "s",
        &Ingested::Refused(Refusal::Signature("bad".into())),
        took,
    );
    m.ingested("s", &Ingested::Refused(Refusal::Draining), took);
    m.ingested("", &Ingested::Refused(Refusal::UnknownSource), took);
    let text = m.render(&Snapshot::default());
    let value = |s| line(&text, s);
    assert_eq!(
        value("wasmhook_events_received_total{source=\"s\"}"),
        Some("1"),
        "{text}"
    );
    assert_eq!(
        value("wasmhook_events_untyped_total{source=\"s\"}"),
        Some("1")
    );
    assert_eq!(
        value("wasmhook_events_duplicate_total{source=\"s\"}"),
        Some("1")
    );
    assert_eq!(
        value("wasmhook_ingest_rejected_total{source=\"s\",reason=\"signature\"}"),
        Some("1")
    );
    assert_eq!(
        value("wasmhook_ingest_rejected_total{source=\"s\",reason=\"draining\"}"),
        Some("1")
    );
    assert_eq!(
        value("wasmhook_ingest_rejected_total{source=\"\",reason=\"unknown_source\"}"),
        Some("1")
    );
    // A duplicate is not a refusal.
    assert_eq!(
        value("wasmhook_ingest_rejected_total{source=\"s\",reason=\"duplicate\"}"),
        None
    );
    assert_eq!(
        value("wasmhook_ingest_duration_seconds_count{source=\"s\"}"),
        Some("4")
    );
}

#[test]
fn an_attempt_counts_its_result_its_class_and_a_delivery_its_latency() {
    let m = Metrics::default();
    let attempt = |status, failure, next| Attempted {
        target: "ci",
        delivery_id: "msg_1",
        event_id: "evt_1",
        attempts: 1,
        status,
        failure,
        next,
        refused: false,
        error: None,
        took: Duration::from_millis(5),
        received_at: now_ms() - 2_000,
    };
    let retry = NextStep::Retry {
        after: Duration::from_secs(1),
    };
    m.attempted(&attempt(Some(503), None, retry));
    m.attempted(&attempt(None, Some(Failure::Timeout), retry));
    m.attempted(&attempt(None, Some(Failure::Connect), NextStep::Dead));
    m.attempted(&attempt(Some(204), None, NextStep::Delivered));
    let text = m.render(&Snapshot::default());
    let value = |s| line(&text, s);
    for (series, n) in [
        (
            "wasmhook_delivery_attempts_total{target=\"ci\",result=\"retry\"}",
            "2",
        ),
        (
            "wasmhook_delivery_attempts_total{target=\"ci\",result=\"dead\"}",
            "1",
        ),
        (
            "wasmhook_delivery_attempts_total{target=\"ci\",result=\"delivered\"}",
            "1",
        ),
        (
            "wasmhook_attempt_responses_total{target=\"ci\",class=\"5xx\"}",
            "1",
        ),
        (
            "wasmhook_attempt_responses_total{target=\"ci\",class=\"timeout\"}",
            "1",
        ),
        (
            "wasmhook_attempt_responses_total{target=\"ci\",class=\"connect\"}",
            "1",
        ),
        (
            "wasmhook_attempt_responses_total{target=\"ci\",class=\"2xx\"}",
            "1",
        ),
        (
            "wasmhook_attempt_duration_seconds_count{target=\"ci\"}",
            "4",
        ),
        (
            "wasmhook_delivery_latency_seconds_count{target=\"ci\"}",
            "1",
        ),
        // Accepted 2 s ago: in the 2.048 s bucket (le buckets double from 100 µs), not the one below.
        (
            "wasmhook_delivery_latency_seconds_bucket{le=\"1.6384\",target=\"ci\"}",
            "0",
        ),
        (
            "wasmhook_delivery_latency_seconds_bucket{le=\"3.2768\",target=\"ci\"}",
            "1",
        ),
        // The top bucket: hours of retries still land below +Inf.
        (
            "wasmhook_delivery_latency_seconds_bucket{le=\"13421.7728\",target=\"ci\"}",
            "1",
        ),
    ] {
        assert_eq!(value(series), Some(n), "{series} in\n{text}");
    }
    let t = &m.target_summaries()["ci"];
    assert_eq!(t.success_rate, Some(0.25));
}

#[test]
fn plugin_calls_are_summed_per_name_for_the_dashboard() {
    let m = Metrics::default();
    m.plugin_emitted("redact", Duration::from_millis(2));
    m.plugin_dropped("r", "redact", "not wanted", Duration::from_millis(2));
    m.plugin_failed("redact", "timeout", Duration::from_millis(100));
    let p = &m.plugin_summaries()["redact"];
    assert_eq!((p.total, p.failed), (3, 1));
    assert!(p.p99_ms.unwrap() >= 100.0, "{p:?}");
    let text = m.render(&Snapshot::default());
    assert_eq!(
        line(&text, "wasmhook_route_drops_total{route=\"r\"}"),
        Some("1")
    );
    assert_eq!(
        line(
            &text,
            "wasmhook_plugin_call_duration_seconds_count{plugin=\"redact\"}"
        ),
        Some("3")
    );
}

#[test]
fn store_commits_fill_both_histograms() {
    let m = Metrics::default();
    let commits = m.commits();
    commits.observe(3, Duration::from_millis(4));
    commits.clone().observe(1, Duration::from_millis(1));
    let text = m.render(&Snapshot::default());
    assert_eq!(
        line(&text, "wasmhook_store_commit_batch_size_count"),
        Some("2"),
        "{text}"
    );
    assert_eq!(
        line(&text, "wasmhook_store_commit_batch_size_sum"),
        Some("4.0")
    );
    assert_eq!(
        line(&text, "wasmhook_store_commit_duration_seconds_count"),
        Some("2")
    );
}
