//! Keep the events whose type is listed in `allow` (comma-separated); drop the
//! rest with a reason.
//!
//! ```toml
//! plugins = [{ name = "filter-event-type", config = { allow = "push,release" } }]
//! ```

use wasmhook_sdk::prelude::*;

#[plugin]
pub fn handle(ev: Event, cfg: &Config) -> Result<Outcome> {
    let allowed = cfg.list("allow");
    Ok(if allowed.contains(&ev.event_type) {
        Outcome::keep(ev)
    } else {
        Outcome::drop(format!(
            "event type {:?} is not in allow = {:?}",
            ev.event_type,
            cfg.get_or("allow", "")
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_listed_types_unchanged() {
        let cfg = Config::from_pairs([("allow", "push, release")]);
        let ev = Event::new("release", r#"{"x":1}"#);
        assert_eq!(handle(ev.clone(), &cfg).unwrap(), Outcome::keep(ev));
    }

    #[test]
    fn drops_other_types_with_a_reason() {
        let cfg = Config::from_pairs([("allow", "push")]);
        let Outcome::Drop(reason) = handle(Event::new("star", "{}"), &cfg).unwrap() else {
            panic!("expected a drop");
        };
        assert!(reason.contains("\"star\""), "{reason}");
    }

    #[test]
    fn no_allow_list_drops_everything() {
        assert!(
            handle(Event::new("push", "{}"), &Config::default())
                .unwrap()
                .is_drop()
        );
    }
}
