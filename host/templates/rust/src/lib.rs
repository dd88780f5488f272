//! {{name}}: a wasmhook plugin.
//!
//! As scaffolded it keeps every event unchanged. Edit `handle` to filter,
//! transform, split or route; `cargo test` runs it natively.

use wasmhook_sdk::prelude::*;

#[plugin]
pub fn handle(ev: Event, cfg: &Config) -> Result<Outcome> {
    // Filter: drop what you do not want, with a reason the router records.
    //     if !cfg.list("allow").contains(&ev.event_type) {
    //         return Ok(Outcome::drop(format!("type {:?} is not allowed", ev.event_type)));
    //     }
    //
    // Transform: read the body as JSON, change it, emit the new event.
    //     let mut body: Value = ev.json()?;
    //     body["seen_by"] = json!("{{name}}");
    //     return Ok(Outcome::keep(ev.with_json(&body)?));
    //
    // Typed config: `cfg.parse::<u64>("min")?`, `cfg.bool("strict")?`.
    // Split: `Outcome::emit([a, b])`. Route: `Outcome::route(ev, ["audit"])`.
    let _ = cfg;
    Ok(Outcome::keep(ev))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_every_event_unchanged() {
        let ev = Event::new("push", r#"{"ref":"refs/heads/main"}"#)
            .with_source("github")
            .with_header("content-type", "application/json");
        let out = handle(ev.clone(), &Config::default()).unwrap();
        assert_eq!(out.events(), [&ev]);
        assert_eq!(out.drop_reason(), None);
    }
}
