//! Turn a GitHub `push` event into a Slack incoming-webhook message:
//! `{"text": "<pusher> pushed <n> commit(s) to <owner/repo>@<branch>"}`.
//! Every other GitHub event type is dropped with a reason.

use wasmhook_sdk::prelude::*;

#[plugin]
pub fn handle(ev: Event, _cfg: &Config) -> Result<Outcome> {
    let event_type = ev
        .header("x-github-event")
        .unwrap_or(&ev.event_type)
        .to_string();
    if event_type != "push" {
        return Ok(Outcome::drop(format!(
            "github-to-slack only handles push events, not {event_type:?}"
        )));
    }
    let push: Value = ev.json()?;
    let text = slack_text(&push)?;
    let mut out = ev.with_json(&json!({ "text": text }))?;
    out.remove_header("x-hub-signature-256");
    out.remove_header("x-hub-signature");
    Ok(Outcome::keep(out))
}

fn slack_text(push: &Value) -> Result<String> {
    let pusher = str_at(push, "/pusher/name")
        .or_else(|| str_at(push, "/sender/login"))
        .ok_or_else(|| Error::msg("push event has no /pusher/name"))?;
    let repo = str_at(push, "/repository/full_name")
        .ok_or_else(|| Error::msg("push event has no /repository/full_name"))?;
    let git_ref = str_at(push, "/ref").ok_or_else(|| Error::msg("push event has no /ref"))?;
    let branch = git_ref
        .strip_prefix("refs/heads/")
        .or_else(|| git_ref.strip_prefix("refs/tags/"))
        .unwrap_or(git_ref);
    let commits = push
        .pointer("/commits")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    Ok(format!(
        "{pusher} pushed {commits} commit(s) to {repo}@{branch}"
    ))
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push_event() -> Event {
        let mut ev = Event::new(
            "push",
            r#"{"ref":"refs/heads/main","pusher":{"name":"octocat"},
                "repository":{"full_name":"octo-org/hello"},
                "commits":[{"id":"a"},{"id":"b"}]}"#,
        );
        ev.set_header("x-github-event", "push");
        ev
    }

    #[test]
    fn push_becomes_slack_text() {
        let out = handle(push_event(), &Config::default()).unwrap();
        let ev = out.events()[0];
        let body: Value = ev.json().unwrap();
        assert_eq!(
            body,
            json!({"text": "octocat pushed 2 commit(s) to octo-org/hello@main"})
        );
        assert_eq!(ev.header("content-type"), Some("application/json"));
    }

    #[test]
    fn other_events_are_dropped() {
        let mut ev = Event::new("issues", "{}");
        ev.set_header("x-github-event", "issues");
        let Outcome::Drop(reason) = handle(ev, &Config::default()).unwrap() else {
            panic!("expected a drop");
        };
        assert!(reason.contains("issues"), "{reason}");
    }

    #[test]
    fn malformed_push_is_an_error() {
        let err = handle(Event::new("push", r#"{"ref":"x"}"#), &Config::default()).unwrap_err();
        assert!(err.to_string().contains("pusher"), "{err}");
    }
}
