//! `wasmhook tail`: the router's live stream (`GET /api/stream`), one line
//! per event as it is accepted and per delivery attempt as it is made,
//! until the router closes it or Ctrl-C.

use std::process::ExitCode;

use serde_json::Value;

use super::client::AdminClient;
use super::table::{cell, printable, time};
use super::{TailArgs, print};

pub async fn tail(client: &AdminClient, args: TailArgs) -> anyhow::Result<ExitCode> {
    let path = format!(
        "/api/stream{}",
        super::query(&[("source", args.source.clone())])
    );
    let mut response = client.stream(&path).await?;
    eprintln!("watching {} for new events (Ctrl-C to stop)", client.base);
    // Bytes, decoded a whole message at a time: a chunk may end inside a
    // character.
    let mut buffer = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        buffer.extend_from_slice(&chunk);
        while let Some(end) = buffer.windows(2).position(|w| w == b"\n\n") {
            let message: Vec<u8> = buffer.drain(..end + 2).collect();
            if let Some(line) = render(&String::from_utf8_lossy(&message), args.json) {
                print(&line)?;
            }
        }
    }
    eprintln!("the router closed the stream");
    Ok(ExitCode::SUCCESS)
}

/// One server-sent message as a line; `None` for keep-alives.
fn render(message: &str, json: bool) -> Option<String> {
    let mut kind = "message";
    let mut data = String::new();
    for line in message.lines() {
        if let Some(k) = line.strip_prefix("event: ") {
            kind = k;
        } else if let Some(d) = line.strip_prefix("data: ") {
            data.push_str(d);
        }
    }
    let value: Value = serde_json::from_str(&data).ok()?;
    match (kind, json) {
        ("event" | "attempt", true) => Some(value.to_string()),
        ("event", false) => Some(format!(
            "{}  {}  {}  {}",
            time(&value["received_at"]),
            cell(&value["source"]),
            cell(&value["event_type"]),
            cell(&value["id"])
        )),
        ("attempt", false) => Some(format!(
            "{}    -> {}  attempt {}  {}  {}  {} ms{}",
            cell(&value["event_id"]),
            cell(&value["target"]),
            cell(&value["attempt"]),
            cell(&value["outcome"]),
            value["status"]
                .as_u64()
                .map_or("-".to_string(), |s| s.to_string()),
            cell(&value["duration_ms"]),
            value["error"]
                .as_str()
                .map(|e| format!("  {}", printable(e)))
                .unwrap_or_default()
        )),
        ("lagged", true) => Some(serde_json::json!({ "lagged": value }).to_string()),
        ("lagged", false) => Some(format!(
            "… {} events went by too fast to show",
            cell(&value["missed"])
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_become_lines_and_keep_alives_nothing() {
        let m = "event: event\nid: e1\ndata: {\"id\":\"e1\",\"source\":\"s\",\"event_type\":\"push\",\"received_at\":0}\n\n";
        assert_eq!(
            render(m, false).unwrap(),
            "1970-01-01 00:00:00  s  push  e1"
        );
        assert!(render(m, true).unwrap().starts_with('{'));
        let a = "event: attempt\ndata: {\"event_id\":\"e1\",\"target\":\"ci\",\"attempt\":2,\"outcome\":\"dead\",\"status\":500,\"duration_ms\":3,\"error\":\"HTTP 500\"}\n\n";
        assert_eq!(
            render(a, false).unwrap(),
            "e1    -> ci  attempt 2  dead  500  3 ms  HTTP 500"
        );
        assert_eq!(render(":\n\n", false), None);
        assert!(
            render("event: lagged\ndata: {\"missed\":3}\n\n", false)
                .unwrap()
                .contains('3')
        );
    }
}
