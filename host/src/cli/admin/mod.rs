//! The admin API from the command line: `events`, `deliveries`, `targets`,
//! `plugins` and `tail`. Each prints a table for people, or with `--json`
//! the API's JSON as it came, for scripts.

mod client;
mod table;
mod tail;

use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::Value;

pub use client::{AdminConnection, Connection};
use table::{cell, printable, render, time};

#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// Events, newest first.
    List {
        #[arg(long)]
        source: Option<String>,
        #[arg(long = "type")]
        event_type: Option<String>,
        /// received, processed or failed.
        #[arg(long)]
        state: Option<String>,
        /// How many (1–1000).
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Older than this: a page's `next` (printed as `more: --before …`),
        /// or ms since the epoch.
        #[arg(long)]
        before: Option<String>,
        #[command(flatten)]
        out: Output,
    },
    /// One event: its routes, deliveries and attempts.
    Show {
        id: String,
        /// The event's source, when two sources may use the same id.
        #[arg(long)]
        source: Option<String>,
        #[command(flatten)]
        out: Output,
    },
}

#[derive(Debug, Subcommand)]
pub enum DeliveriesCommand {
    /// Deliveries by state and target.
    List {
        /// pending, in_flight, retrying, delivered or dead.
        #[arg(long)]
        state: Option<String>,
        #[arg(long)]
        target: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// The page after this delivery id (the `next` a full page ends with).
        #[arg(long)]
        after: Option<String>,
        #[command(flatten)]
        out: Output,
    },
    /// Make a delivery due now, with a fresh attempt budget.
    Retry {
        id: String,
        #[command(flatten)]
        out: Output,
    },
}

#[derive(Debug, Subcommand)]
pub enum TargetsCommand {
    /// Every target, its backlog and how its attempts go.
    List {
        #[command(flatten)]
        out: Output,
    },
    /// Re-queue a target's dead deliveries.
    Replay {
        name: String,
        /// Only those that died since: a duration back from now (`1h`,
        /// `30m`) or ms since the epoch.
        #[arg(long)]
        since: Option<String>,
        #[command(flatten)]
        out: Output,
    },
}

#[derive(Debug, Subcommand)]
pub enum PluginsCommand {
    /// Every plugin file: version, status, calls.
    List {
        #[command(flatten)]
        out: Output,
    },
}

#[derive(Debug, Clone, Args)]
pub struct Output {
    /// Print the API's JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct TailArgs {
    /// Only events from this source.
    #[arg(long)]
    pub source: Option<String>,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
}

fn print(text: &str) -> anyhow::Result<()> {
    super::plugin::print_stdout(text)
}

fn print_json(v: &Value) -> anyhow::Result<()> {
    print(&serde_json::to_string_pretty(v)?)
}

/// A listing: with `--json` the API's answer as it came; else `answer[key]`
/// as a table, one `row` per item, and then, when the answer has a `next`
/// page, how to ask for it (`more` names the flag).
fn print_list(
    answer: &Value,
    key: &str,
    out: &Output,
    head: &[&str],
    row: impl Fn(&Value) -> Vec<String>,
    more: Option<&str>,
) -> anyhow::Result<()> {
    if out.json {
        return print_json(answer);
    }
    let rows: Vec<Vec<String>> = answer[key]
        .as_array()
        .into_iter()
        .flatten()
        .map(row)
        .collect();
    print(&render(head, &rows))?;
    if let (Some(flag), Some(next)) = (more, answer["next"].as_str()) {
        eprintln!("more: {flag} {next}");
    }
    Ok(())
}

/// `key=value&…` of the given values, URL-encoded.
fn query(pairs: &[(&str, Option<String>)]) -> String {
    let mut url = reqwest::Url::parse("http://q/").expect("a valid URL");
    for (k, v) in pairs {
        if let Some(v) = v {
            url.query_pairs_mut().append_pair(k, v);
        }
    }
    url.query().map(|q| format!("?{q}")).unwrap_or_default()
}

/// One URL path segment, percent-encoded.
fn segment(s: &str) -> String {
    let mut url = reqwest::Url::parse("http://q/").expect("a valid URL");
    url.path_segments_mut().expect("a base URL").push(s);
    url.path()[1..].to_string()
}

pub async fn events(conn: &AdminConnection, command: EventsCommand) -> anyhow::Result<ExitCode> {
    let client = conn.client()?;
    match command {
        EventsCommand::List {
            source,
            event_type,
            state,
            limit,
            before,
            out,
        } => {
            let page = client
                .get(&format!(
                    "/api/events{}",
                    query(&[
                        ("source", source),
                        ("type", event_type),
                        ("state", state),
                        ("before", before),
                        ("limit", Some(limit.to_string())),
                    ])
                ))
                .await?;
            print_list(
                &page,
                "events",
                &out,
                &[
                    "RECEIVED (UTC)",
                    "ID",
                    "SOURCE",
                    "TYPE",
                    "STATE",
                    "DELIVERED",
                    "DEAD",
                    "FAILED ROUTES",
                ],
                |e| {
                    vec![
                        time(&e["received_at"]),
                        cell(&e["id"]),
                        cell(&e["source"]),
                        cell(&e["event_type"]),
                        cell(&e["state"]),
                        format!("{}/{}", cell(&e["delivered"]), cell(&e["deliveries"])),
                        cell(&e["dead"]),
                        cell(&e["failed_routes"]),
                    ]
                },
                Some("--before"),
            )?;
        }
        EventsCommand::Show { id, source, out } => {
            let e = client
                .get(&format!(
                    "/api/events/{}{}",
                    segment(&id),
                    query(&[("source", source)])
                ))
                .await?;
            if out.json {
                print_json(&e)?;
            } else {
                print(&show_event(&e))?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn show_event(e: &Value) -> String {
    let mut out = vec![
        format!("event     {}", cell(&e["id"])),
        format!("source    {}", cell(&e["source"])),
        format!("type      {}", cell(&e["event_type"])),
        format!("received  {} UTC", time(&e["received_at"])),
        format!("state     {}", cell(&e["state"])),
        String::new(),
        "routes:".into(),
    ];
    for r in e["routes"].as_array().into_iter().flatten() {
        let detail = match r["outcome"].as_str() {
            Some("dropped") => format!("dropped by {}: {}", cell(&r["plugin"]), cell(&r["reason"])),
            Some("failed") => format!("failed in {}: {}", cell(&r["plugin"]), cell(&r["error"])),
            _ => format!(
                "{} output(s) to {}",
                cell(&r["outputs"]),
                cell(&r["targets"])
            ),
        };
        out.push(format!("  {:<20} {detail}", cell(&r["route"])));
    }
    out.push(String::new());
    out.push("deliveries:".into());
    for d in e["deliveries"].as_array().into_iter().flatten() {
        out.push(format!(
            "  {}  -> {}  {}  {} attempt(s)",
            cell(&d["id"]),
            cell(&d["target"]),
            cell(&d["state"]),
            cell(&d["attempts"])
        ));
        for a in d["attempt_log"].as_array().into_iter().flatten() {
            out.push(format!(
                "      {}  {}  {} ms  {}",
                time(&a["started_at"]),
                a["status"]
                    .as_u64()
                    .map_or("-".to_string(), |s| s.to_string()),
                cell(&a["duration_ms"]),
                cell(&a["error"])
            ));
        }
    }
    out.push(String::new());
    out.push("body:".into());
    out.push(match e["body"].as_str() {
        Some(text) => printable(
            &serde_json::from_str::<Value>(text)
                .ok()
                .and_then(|v| serde_json::to_string_pretty(&v).ok())
                .unwrap_or_else(|| text.to_string()),
        ),
        None => format!("(binary, base64) {}", cell(&e["body_base64"])),
    });
    out.join("\n")
}

pub async fn deliveries(
    conn: &AdminConnection,
    command: DeliveriesCommand,
) -> anyhow::Result<ExitCode> {
    let client = conn.client()?;
    match command {
        DeliveriesCommand::List {
            state,
            target,
            limit,
            after,
            out,
        } => {
            let page = client
                .get(&format!(
                    "/api/deliveries{}",
                    query(&[
                        ("state", state),
                        ("target", target),
                        ("after", after),
                        ("limit", Some(limit.to_string())),
                    ])
                ))
                .await?;
            print_list(
                &page,
                "deliveries",
                &out,
                &["ID", "EVENT", "TARGET", "STATE", "ATTEMPTS", "LAST ERROR"],
                |d| {
                    vec![
                        cell(&d["id"]),
                        cell(&d["event_id"]),
                        cell(&d["target"]),
                        cell(&d["state"]),
                        cell(&d["attempts"]),
                        cell(&d["last_error"]),
                    ]
                },
                Some("--after"),
            )?;
        }
        DeliveriesCommand::Retry { id, out } => {
            let answer = client
                .post(&format!("/api/deliveries/{}/retry", segment(&id)))
                .await?;
            if out.json {
                print_json(&answer)?;
            } else {
                print(&format!("delivery {id} is due again"))?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `--since`: `1h`, `30m`, `2d` back from now, or ms since the epoch.
fn since_ms(since: &str, now_ms: u64) -> anyhow::Result<u64> {
    if let Ok(ms) = since.parse::<u64>() {
        return Ok(ms);
    }
    let back = crate::config::parse_duration(since).map_err(|e| {
        anyhow::anyhow!(
            "--since {since:?}: give a duration back from now (1h, 30m) or ms since the epoch ({e})"
        )
    })?;
    Ok(now_ms.saturating_sub(back.as_millis() as u64))
}

pub async fn targets(conn: &AdminConnection, command: TargetsCommand) -> anyhow::Result<ExitCode> {
    let client = conn.client()?;
    match command {
        TargetsCommand::List { out } => {
            let answer = client.get("/api/targets").await?;
            let pct = |v: &Value| {
                v.as_f64()
                    .map_or(String::new(), |r| format!("{:.1}%", r * 100.0))
            };
            let ms = |v: &Value| v.as_f64().map_or(String::new(), |m| format!("{m:.1} ms"));
            print_list(
                &answer,
                "targets",
                &out,
                &[
                    "NAME",
                    "STATE",
                    "BACKLOG",
                    "IN FLIGHT",
                    "DEAD",
                    "SUCCESS",
                    "P99",
                    "URL",
                ],
                |t| {
                    vec![
                        cell(&t["name"]),
                        cell(&t["state"]),
                        cell(&t["backlog"]),
                        cell(&t["in_flight"]),
                        cell(&t["dead"]),
                        pct(&t["success_rate"]),
                        ms(&t["p99_ms"]),
                        cell(&t["url"]),
                    ]
                },
                None,
            )?;
        }
        TargetsCommand::Replay { name, since, out } => {
            let since = since
                .map(|s| since_ms(&s, crate::event::now_ms()))
                .transpose()?
                .map(|ms| ms.to_string());
            let answer = client
                .post(&format!(
                    "/api/targets/{}/replay{}",
                    segment(&name),
                    query(&[("since", since)])
                ))
                .await?;
            if out.json {
                print_json(&answer)?;
            } else {
                print(&format!(
                    "re-queued {} dead deliveries of {name}",
                    cell(&answer["requeued"])
                ))?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn plugins(conn: &AdminConnection, command: PluginsCommand) -> anyhow::Result<ExitCode> {
    let client = conn.client()?;
    let PluginsCommand::List { out } = command;
    let answer = client.get("/api/plugins").await?;
    print_list(
        &answer,
        "plugins",
        &out,
        &[
            "NAME",
            "VERSION",
            "LANGUAGE",
            "LOADED (UTC)",
            "CALLS",
            "ERRORS",
            "LAST ERROR",
        ],
        |p| {
            vec![
                cell(&p["name"]),
                cell(&p["version"]).chars().take(12).collect(),
                cell(&p["language"]),
                time(&p["loaded_at"]),
                cell(&p["calls"]),
                cell(&p["errors"]),
                cell(&p["last_error"]),
            ]
        },
        None,
    )?;
    Ok(ExitCode::SUCCESS)
}

pub async fn tail(conn: &AdminConnection, args: TailArgs) -> anyhow::Result<ExitCode> {
    tail::tail(&conn.client()?, args).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_and_path_parts_are_encoded() {
        assert_eq!(
            query(&[
                ("source", Some("a b".into())),
                ("type", None),
                ("limit", Some("5".into()))
            ]),
            "?source=a+b&limit=5"
        );
        assert_eq!(query(&[("x", None)]), "");
        assert_eq!(segment("evt/1?x"), "evt%2F1%3Fx");
        assert_eq!(since_ms("1h", 10_000_000).unwrap(), 10_000_000 - 3_600_000);
        assert_eq!(since_ms("1700000000000", 0).unwrap(), 1_700_000_000_000);
        assert!(since_ms("yesterday", 0).is_err());
    }
}
