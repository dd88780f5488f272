//! A JSON array body becomes one event per element; element `i` of event `ID`
//! gets the id `ID-i`, so re-running the split yields the same ids (and so the
//! same delivery ids). Any other body passes unchanged.

use wasmhook_sdk::prelude::*;

#[plugin]
pub fn handle(ev: Event, _cfg: &Config) -> Result<Outcome> {
    let Ok(Value::Array(items)) = ev.json::<Value>() else {
        return Ok(Outcome::keep(ev));
    };
    let mut outputs = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let mut part = Event {
            id: format!("{}-{i}", ev.id),
            body: Vec::new(),
            ..ev.clone()
        };
        part.set_json(item)?;
        outputs.push(part);
    }
    Ok(Outcome::emit(outputs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_splits_with_derived_ids() {
        let out = handle(
            Event::new("batch", r#"[{"n":1},{"n":2},3]"#),
            &Config::default(),
        )
        .unwrap();
        let events = out.events();
        let ids: Vec<_> = events.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["evt_test-0", "evt_test-1", "evt_test-2"]);
        let bodies: Vec<_> = events.iter().map(|e| e.body_str().unwrap()).collect();
        assert_eq!(bodies, [r#"{"n":1}"#, r#"{"n":2}"#, "3"]);
    }

    #[test]
    fn empty_array_emits_nothing() {
        assert_eq!(
            handle(Event::new("b", "[]"), &Config::default()).unwrap(),
            Outcome::emit([])
        );
    }

    #[test]
    fn other_bodies_pass_unchanged() {
        for body in [r#"{"a":1}"#, "text"] {
            let ev = Event::new("b", body);
            assert_eq!(
                handle(ev.clone(), &Config::default()).unwrap(),
                Outcome::keep(ev)
            );
        }
    }
}
