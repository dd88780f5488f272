//! Every way a config is refused names the key and the line, and the sample
//! config parses with its documented defaults.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

const PATH: &str = "/srv/wasmhook/wasmhook.toml";

fn parse_text(text: &str) -> Result<Config, ConfigError> {
    parse(Path::new(PATH), text)
}

/// A source, a target and a route that the bad fragments below can refer to.
const BASE: &str = r#"
[[sources]]
name = "s"

[[targets]]
name = "t"
url = "http://127.0.0.1:9000/hook"
"#;

#[test]
fn every_refusal_names_the_key_and_the_line_of_the_bad_value() {
    // Each case: the config (the bad line ends in `# here`), the key, and a
    // part of the message.
    let cases: &[(&str, &str, &str)] = &[
        (
            "[server]\nlisten = \"nope\" # here",
            "server.listen",
            "not an IP address and port",
        ),
        (
            "[server]\nmax_body_bytes = 0 # here",
            "server.max_body_bytes",
            "above 0",
        ),
        (
            "[storage]\nurl = \"sqlite://\" # here",
            "storage.url",
            "needs a file path",
        ),
        (
            "[storage]\nurl = \"mysql://db\" # here",
            "storage.url",
            "must start with sqlite://",
        ),
        (
            "[telemetry]\notlp_endpoint = \"grpc://collector:4317\" # here",
            "telemetry.otlp_endpoint",
            "must be http:// or https://",
        ),
        (
            "[telemetry]\notlp_endpoint = \"collector:4318\" # here",
            "telemetry.otlp_endpoint",
            "http://",
        ),
        (
            "[telemetry]\nsample_ratio = 1.5 # here",
            "telemetry.sample_ratio",
            "between 0 and 1",
        ),
        (
            "[telemetry]\ntimeout = \"0s\" # here",
            "telemetry.timeout",
            "above 0",
        ),
        (
            "[storage]\nqueue_capacity = 0 # here",
            "storage.queue_capacity",
            "above 0",
        ),
        (
            "[storage]\nretention = \"5 weeks\" # here",
            "storage.retention",
            "unknown unit",
        ),
        (
            "[storage]\ndead_retention = \"30\" # here",
            "storage.dead_retention",
            "has no unit",
        ),
        (
            "[storage]\ndedup_window = \"99999999999999999d\" # here",
            "storage.dedup_window",
            "too long",
        ),
        (
            "[plugins]\ntimeout_ms = 0 # here",
            "plugins.timeout_ms",
            "between 1 and 60000",
        ),
        (
            "[plugins]\nmemory_limit_mb = 5000 # here",
            "plugins.memory_limit_mb",
            "between 1 and 4096",
        ),
        (
            "[plugins]\nmax_concurrency = 0 # here",
            "plugins.max_concurrency",
            "between 1 and 1024",
        ),
        (
            "[plugins]\nreuse = { scorer = 0 } # here",
            "plugins.reuse.scorer",
            "between 1 and 1000000",
        ),
        (
            "[plugins]\nreuse = { \"../x\" = 5 } # here",
            "plugins.reuse.../x",
            "must be a plugin name",
        ),
        (
            "[[sources]]\nname = \"a b\" # here",
            "sources[1].name",
            "not a valid source name",
        ),
        (
            "[[sources]]\nname = \"a\"\n[[sources]]\nname = \"a\" # here",
            "sources[2].name",
            "already named \"a\"",
        ),
        (
            "[[sources]]\nname = \"a\"\nverify = { scheme = \"md5\", secret = \"x\" } # here",
            "sources[1].verify",
            "unknown scheme \"md5\"",
        ),
        (
            "[[sources]]\nname = \"a\"\nverify = { scheme = \"github\", secret = \"\" } # here",
            "sources[1].verify",
            "non-empty",
        ),
        (
            "[[sources]]\nname = \"a\"\nverify = { scheme = \"hmac\", secret = \"x\" } # here",
            "sources[1].verify",
            "needs `header`",
        ),
        (
            "[[sources]]\nname = \"a\"\nverify = { scheme = \"hmac\", secret = \"x\", header = \"x-sig\", encoding = \"rot13\" } # here",
            "sources[1].verify",
            "\"hex\" or \"base64\"",
        ),
        (
            "[[sources]]\nname = \"a\"\nverify = { scheme = \"github\", secret = \"x\", header = \"x-sig\" } # here",
            "sources[1].verify",
            "are for scheme = \"hmac\"",
        ),
        (
            "[[sources]]\nname = \"a\"\nverify = { scheme = \"standard-webhooks\", secret = \"plain\" } # here",
            "sources[1].verify",
            "whsec_",
        ),
        (
            "[[sources]]\nname = \"a\"\nevent_type = { json_pointer = \"type\" } # here",
            "sources[1].event_type.json_pointer",
            "must start with '/'",
        ),
        (
            "[[sources]]\nname = \"a\"\nevent_type = { header = \"x\", json_pointer = \"/t\" } # here",
            "sources[1].event_type",
            "exactly one of",
        ),
        (
            "[[targets]]\nname = \"u\"\nurl = \"ftp://host/x\" # here",
            "targets[1].url",
            "not an http:// or https:// URL",
        ),
        (
            "[[targets]]\nname = \"u\"\nurl = \"http://h/\"\nsigning_secret = \"whsec_!!\" # here",
            "targets[1].signing_secret",
            "not valid base64",
        ),
        (
            "[[targets]]\nname = \"u\"\nurl = \"http://h/\"\nsigning_secret = \"whsec_c2hvcnQ=\" # here",
            "targets[1].signing_secret",
            "shorter than 16 bytes",
        ),
        (
            "[[targets]]\nname = \"u\"\nurl = \"http://h/\"\nmax_attempts = 0 # here",
            "targets[1].max_attempts",
            "at least 1",
        ),
        (
            "[[targets]]\nname = \"u\"\nurl = \"http://h/\"\nmax_in_flight = 0 # here",
            "targets[1].max_in_flight",
            "at least 1",
        ),
        (
            "[[targets]]\nname = \"u\"\nurl = \"http://h/\"\nretry_schedule = [] # here",
            "targets[1].retry_schedule",
            "at least one delay",
        ),
        (
            "[[targets]]\nname = \"u\"\nurl = \"http://h/\"\nretry_schedule = [\"5s\", \"5x\"] # here",
            "targets[1].retry_schedule",
            "unknown unit",
        ),
        (
            "[[targets]]\nname = \"u\"\nurl = \"http://h/\"\nordering = { key = { json_pointer = \"customer\" } } # here",
            "targets[1].ordering",
            "not a JSON pointer",
        ),
        (
            "[[targets]]\nname = \"u\"\nurl = \"http://h/\"\nordering = { key = { header = \"a\", json_pointer = \"/b\" } } # here",
            "targets[1].ordering",
            "exactly one",
        ),
        (
            "[[targets]]\nname = \"u\"\nurl = \"http://h/\"\nordering = { key = { header = \"a\" }, on_dead = \"skip\" } # here",
            "targets[1].ordering",
            "\"release\"",
        ),
        (
            "[[targets]]\nname = \"u\"\nurl = \"http://h/\"\ncircuit = { failures = 0 } # here",
            "targets[1].circuit",
            "between 1 and",
        ),
        (
            "[[targets]]\nname = \"u\"\nurl = \"http://h/\"\ncircuit = { cool_down = \"0s\" } # here",
            "targets[1].circuit",
            "more than 0",
        ),
        (
            "[[targets]]\nname = \"u\"\nurl = \"http://h/\"\ncircuit = { cool_down = \"1m\", max_cool_down = \"30s\" } # here",
            "targets[1].circuit",
            "shorter than cool_down",
        ),
        (
            "[[targets]]\nname = \"u\"\nurl = \"http://h/\"\nrate_limit = \"50\" # here",
            "targets[1].rate_limit",
            "not a rate",
        ),
        (
            "[[targets]]\nname = \"u\"\nurl = \"http://h/\"\nrate_limit = \"0/s\" # here",
            "targets[1].rate_limit",
            "above 0",
        ),
        (
            "[[targets]]\nname = \"u\"\nurl = \"http://h/\"\nrate_limit = \"5/d\" # here",
            "targets[1].rate_limit",
            "unknown unit",
        ),
        (
            "[[targets]]\nname = \"u\"\nurl = \"http://h/\"\nrate_limit = { rate = \"5/s\", burst = 0 } # here",
            "targets[1].rate_limit",
            "burst = 0",
        ),
        (
            "[[routes]]\nname = \"r\"\nsource = \"nope\" # here\ntargets = [\"t\"]",
            "routes[0].source",
            "no source is named \"nope\"; configured sources: s",
        ),
        (
            "[[routes]]\nname = \"r\"\nsource = \"s\"\nplugins = [\"../evil\"] # here",
            "routes[0].plugins[0].name",
            "file stem",
        ),
        (
            "[[routes]]\nname = \"r\"\nsource = \"s\"\nplugins = [{ name = \"p\", config = { deep = { x = 1 } } }] # here",
            "routes[0].plugins[0].config",
            "string, number, boolean",
        ),
        (
            "[[routes]]\nname = \"r\"\nsource = \"s\"\ntargets = [\"t\", \"nope\"] # here",
            "routes[0].targets",
            "no target is named \"nope\"; configured targets: t",
        ),
        (
            "[[routes]]\nname = \"r\" # here\nsource = \"s\"",
            "routes[0].targets",
            "needs at least one target",
        ),
        (
            "[[routes]]\nname = \"r\"\nsource = \"s\"\ntargets = [\"t\"]\n[[routes]]\nname = \"r\" # here\nsource = \"s\"\ntargets = [\"t\"]",
            "routes[1].name",
            "already named \"r\"",
        ),
    ];
    for (fragment, key, message) in cases {
        let text = format!("{BASE}\n{fragment}\n");
        // Fragments that open [server], [storage] or [plugins] go first: a
        // table header after [[targets]] would otherwise nest under it.
        let text = if fragment.starts_with("[server]")
            || fragment.starts_with("[storage]")
            || fragment.starts_with("[plugins]")
        {
            format!("{fragment}\n{BASE}\n")
        } else {
            text
        };
        let line = text
            .lines()
            .position(|l| l.ends_with("# here"))
            .expect("each case marks its line")
            + 1;
        let err = parse_text(&text).expect_err(fragment);
        assert_eq!(err.key, *key, "{fragment}\n→ {err}");
        assert_eq!(err.line, Some(line), "{fragment}\n→ {err}");
        assert!(err.message.contains(message), "{fragment}\n→ {err}");
        assert_eq!(err.path, PathBuf::from(PATH));
        let shown = err.to_string();
        assert!(
            shown.starts_with(&format!("{PATH}:{line}: {key}: ")),
            "{shown}"
        );
    }
}

#[test]
fn unknown_keys_and_unset_variables_are_errors_with_a_line() {
    let err = parse_text("[server]\nlisten = \"127.0.0.1:1\"\nlisen = 1\n").unwrap_err();
    assert_eq!(err.line, Some(3), "{err}");
    assert!(err.message.contains("unknown field `lisen`"), "{err}");

    let err = parse_text(&format!(
        "{BASE}\n[[targets]]\nname = \"u\"\nurl = \"http://h/\"\nsigning_secret = \"${{WASMHOOK_TEST_SURELY_UNSET_VAR}}\"\n"
    ))
    .unwrap_err();
    assert!(
        err.to_string().contains("WASMHOOK_TEST_SURELY_UNSET_VAR"),
        "{err}"
    );
    assert!(err.line.is_some(), "{err}");
}

#[test]
fn an_empty_file_is_the_documented_defaults() {
    let c = parse_text("").unwrap();
    assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(c.server.max_body_bytes, 1 << 20);
    assert!(c.server.admin_token.is_none());
    assert_eq!(
        c.storage.url,
        StorageUrl::Sqlite(PathBuf::from("/srv/wasmhook/data/wasmhook.db")),
        "relative to the config file's folder"
    );
    assert!(c.storage.fsync);
    assert_eq!(c.storage.retention, Duration::from_secs(72 * 3600));
    assert_eq!(c.storage.dead_retention, Duration::from_secs(30 * 86400));
    assert_eq!(c.storage.dedup_window, Duration::from_secs(24 * 3600));
    assert_eq!(c.plugins.dir, PathBuf::from("/srv/wasmhook/plugins"));
    assert_eq!(c.plugins.limits.timeout, Duration::from_millis(100));
    assert_eq!(c.plugins.limits.memory_bytes, 64 << 20);
    assert!(c.sources.is_empty() && c.targets.is_empty() && c.routes.is_empty());
    assert!(c.telemetry.otlp_endpoint.is_none(), "no spans exported");
    assert_eq!(c.telemetry.service_name, "wasmhook");
}

#[test]
fn the_otlp_endpoint_is_a_base_url_that_gets_v1_traces() {
    let endpoint = |url: &str| {
        let c = parse_text(&format!("[telemetry]\notlp_endpoint = \"{url}\"")).unwrap();
        c.telemetry.otlp_endpoint.map(|u| u.to_string())
    };
    let traces = Some("http://127.0.0.1:4318/v1/traces".to_string());
    assert_eq!(endpoint("http://127.0.0.1:4318"), traces);
    assert_eq!(endpoint("http://127.0.0.1:4318/"), traces);
    assert_eq!(endpoint("http://127.0.0.1:4318/v1/traces"), traces);
    assert_eq!(endpoint("http://127.0.0.1:4318/v1/traces/"), traces);
    assert_eq!(
        endpoint("https://otel.example.test/team-a/"),
        Some("https://otel.example.test/team-a/v1/traces".to_string())
    );
    assert_eq!(endpoint(""), None, "empty: off");
    let c = parse_text(
        "[telemetry]\notlp_endpoint = \"http://c:4318\"\nheaders = { \"X-Api-Key\" = \"k\" }\nsample_ratio = 0.25",
    )
    .unwrap();
    assert_eq!(c.telemetry.sample_ratio, 0.25);
    assert_eq!(c.telemetry.headers[0].0, "x-api-key");
    assert_eq!(c.telemetry.headers[0].1.expose(), b"k");
    for bad in ["\"a%2Fb\"", "\"key\\n\""] {
        let text = format!("[telemetry]\nheaders = {{ \"x-api-key\" = {bad} }}");
        let e = parse_text(&text).unwrap_err();
        assert_eq!(e.key, "telemetry.headers.x-api-key", "{bad}");
        assert!(e.message.contains("not a valid header value"), "{e}");
    }
    let e = parse_text("[telemetry]\nheaders = { \"bad name\" = \"v\" }").unwrap_err();
    assert!(e.message.contains("header name"), "{e}");
}

#[test]
fn the_sample_config_parses() {
    let text = include_str!("../../../wasmhook.toml");
    let c = parse_text(text).unwrap();
    assert_eq!(c.routes.len(), 3);
    let orders = c.routes.iter().find(|r| r.name == "orders").unwrap();
    assert_eq!(orders.plugins.len(), 2);
    assert_eq!(
        &*orders.plugins[0].config,
        &[("allow".to_string(), "order.created,order.paid".to_string())]
    );
    let warehouse = c.target("warehouse").unwrap();
    assert_eq!(warehouse.max_attempts, 4);
    assert_eq!(
        warehouse.retry_schedule,
        [1, 5, 30].map(Duration::from_secs).to_vec()
    );
    assert_eq!(warehouse.signing_keys.len(), 1);
}

#[test]
fn durations_take_a_unit_and_refuse_overflow() {
    for (text, ms) in [
        ("0s", 0),
        ("250ms", 250),
        ("5s", 5_000),
        (" 5m ", 300_000),
        ("2h", 7_200_000),
        ("30d", 2_592_000_000),
        ("213503982334d", 213_503_982_334 * 86_400_000),
    ] {
        assert_eq!(
            parse_duration(text),
            Ok(Duration::from_millis(ms)),
            "{text:?}"
        );
    }
    for (text, why) in [
        ("5", "has no unit"),
        ("s", "not a duration"),
        ("", "not a duration"),
        ("-5s", "not a duration"),
        ("1.5s", "unknown unit"),
        ("5 s", "unknown unit"),
        ("5w", "unknown unit"),
        ("213503982335d", "too long"),
        ("18446744073709551616ms", "too long"),
        ("99999999999999999999999d", "too long"),
    ] {
        let err = parse_duration(text).unwrap_err();
        assert!(err.contains(why), "{text:?}: {err}");
    }
}

#[test]
fn an_empty_admin_token_is_refused_not_an_open_door() {
    for text in [
        "[server]\nadmin_token = \"\"\n",
        "[server]\nadmin_token = \"  \"\n",
    ] {
        let err = parse_text(text).unwrap_err().to_string();
        assert!(
            err.contains("server.admin_token") && err.contains("empty"),
            "{err}"
        );
    }
    assert!(parse_text("[server]\nadmin_token = \"t0ken\"\n").is_ok());
}

#[test]
fn a_rate_limit_is_a_rate_with_an_optional_burst() {
    use super::values::parse_rate;
    let r = parse_rate("50/s", None).unwrap();
    assert_eq!((r.every, r.burst), (Duration::from_millis(20), 1));
    let r = parse_rate(" 600 / m ", Some(10)).unwrap();
    assert_eq!((r.every, r.burst), (Duration::from_millis(100), 10));
    assert_eq!(r.tolerance(), Duration::from_millis(900));
    assert_eq!(
        parse_rate("3600/h", None).unwrap().every,
        Duration::from_secs(1)
    );
    assert!(
        parse_rate("200000/s", None)
            .unwrap_err()
            .contains("100,000")
    );
}

#[test]
fn the_circuit_breaker_is_on_by_default_and_each_key_is_optional() {
    let circuit = |line: &str| {
        parse_text(&format!(
            "[[targets]]\nname = \"t\"\nurl = \"http://h/\"\n{line}\n"
        ))
        .unwrap()
        .targets[0]
            .circuit
    };
    assert_eq!(circuit(""), Some(Circuit::default()));
    assert_eq!(circuit("circuit = true"), Some(Circuit::default()));
    assert_eq!(circuit("circuit = false"), None);
    let err = parse_text("[[targets]]\nname = \"t\"\nurl = \"http://h/\"\ncircuit = \"off\"\n")
        .unwrap_err();
    assert!(
        err.to_string().contains("expected false, or a table"),
        "{err}"
    );
    assert_eq!(
        circuit("circuit = { failures = 5, cool_down = \"1h\" }"),
        Some(Circuit {
            failures: 5,
            cool_down: Duration::from_secs(3600),
            max_cool_down: Duration::from_secs(3600),
        }),
        "the cap is at least the cool-down"
    );
    assert_eq!(
        circuit("circuit = { max_cool_down = \"1h\" }"),
        Some(Circuit {
            max_cool_down: Duration::from_secs(3600),
            ..Circuit::default()
        })
    );
}

#[test]
fn an_ordering_key_comes_from_a_header_or_a_json_pointer_and_long_keys_are_hashed() {
    let target = |line: &str| {
        parse_text(&format!(
            "[[targets]]\nname = \"t\"\nurl = \"http://h/\"\n{line}\n"
        ))
        .unwrap()
        .targets
        .remove(0)
    };
    assert_eq!(target("").ordering, None);
    let by_pointer = target("ordering = { key = { json_pointer = \"/customer/id\" } }")
        .ordering
        .unwrap();
    assert!(!by_pointer.block_on_dead);
    let event = |headers: Vec<(String, String)>, body: &str| crate::event::Event {
        id: "e".into(),
        source: "s".into(),
        event_type: String::new(),
        received_at: 0,
        headers,
        body: body.as_bytes().to_vec().into(),
    };
    assert_eq!(
        by_pointer.key_of(&event(vec![], r#"{"customer":{"id":"cus_1"}}"#)),
        Some("cus_1".into())
    );
    assert_eq!(
        by_pointer.key_of(&event(vec![], r#"{"customer":{"id":42}}"#)),
        Some("42".into())
    );
    assert_eq!(
        by_pointer.key_of(&event(vec![], r#"{"customer":{}}"#)),
        None,
        "no key: unordered"
    );
    assert_eq!(by_pointer.key_of(&event(vec![], "not json")), None);
    let long = "x".repeat(500);
    let hashed = by_pointer
        .key_of(&event(
            vec![],
            &format!(r#"{{"customer":{{"id":"{long}"}}}}"#),
        ))
        .unwrap();
    assert!(
        hashed.starts_with("sha256:") && hashed.len() == 7 + 64,
        "{hashed}"
    );

    let by_header = target("ordering = { key = { header = \"X-Account\" }, on_dead = \"block\" }")
        .ordering
        .unwrap();
    assert!(by_header.block_on_dead);
    assert_eq!(
        by_header.key_of(&event(vec![("x-account".into(), " acct_9 ".into())], "{}")),
        Some("acct_9".into())
    );
}

#[test]
fn a_target_url_that_http_cannot_carry_is_refused_at_load() {
    // Longer than any URI the HTTP stack will send.
    let url = format!("http://127.0.0.1/{}", "a".repeat(70_000));
    let text = format!("{BASE}\n[[targets]]\nname = \"long\"\nurl = \"{url}\"\n");
    let err = parse_text(&text).unwrap_err().to_string();
    assert!(err.contains("targets[1].url"), "{err}");
    assert!(err.contains("cannot be sent to over HTTP"), "{err}");
    assert!(
        err.len() < 1_000,
        "the error quotes the start of the URL only"
    );
}
