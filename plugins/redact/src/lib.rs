//! Remove fields from a JSON body. `fields` is a comma-separated list of JSON
//! pointers (RFC 6901), e.g. `/user/email,/card`. Pointers that match nothing
//! are ignored.
//!
//! Redaction fails closed: a body it cannot parse (not JSON, trailing bytes
//! after the JSON, nesting deeper than the parser allows) fails the event
//! rather than pass the secret on. An empty body has nothing to hide.

use wasmhook_sdk::prelude::*;

#[plugin]
pub fn handle(mut ev: Event, cfg: &Config) -> Result<Outcome> {
    if ev.body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Outcome::keep(ev));
    }
    let mut body = ev.json::<Value>().map_err(|e| {
        Error::msg(format!(
            "cannot redact a body that does not parse as JSON: {e}"
        ))
    })?;
    let mut removed = 0;
    for pointer in cfg.list("fields") {
        if remove_pointer(&mut body, &pointer) {
            removed += 1;
        }
    }
    if removed > 0 {
        ev.body = wasmhook_sdk::serde_json::to_vec(&body)?;
    }
    Ok(Outcome::keep(ev))
}

/// Remove the value at `pointer`. Returns whether something was removed.
pub fn remove_pointer(root: &mut Value, pointer: &str) -> bool {
    let Some((parent, last)) = pointer.rsplit_once('/') else {
        return false;
    };
    let key = last.replace("~1", "/").replace("~0", "~");
    match root.pointer_mut(parent) {
        Some(Value::Object(map)) => map.remove(&key).is_some(),
        Some(Value::Array(items)) => match key.parse::<usize>() {
            Ok(i) if i < items.len() => {
                items.remove(i);
                true
            }
            _ => false,
        },
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(body: &str, fields: &str) -> Vec<u8> {
        let cfg = Config::from_pairs([("fields", fields)]);
        let out = handle(Event::new("t", body), &cfg).unwrap();
        out.events()[0].body.clone()
    }

    #[test]
    fn removes_nested_fields_and_array_items() {
        let body =
            r#"{"user":{"email":"a@b.c","name":"Ann"},"card":"4242","items":[1,2,3],"a/b":1}"#;
        let out: Value =
            wasmhook_sdk::serde_json::from_slice(&run(body, "/user/email, /card,/items/0,/a~1b"))
                .unwrap();
        assert_eq!(out, json!({"user": {"name": "Ann"}, "items": [2, 3]}));
    }

    #[test]
    fn missing_pointers_leave_the_body_byte_for_byte() {
        let body = r#"{ "keep" : 1 }"#;
        assert_eq!(run(body, "/nope,/keep/deeper"), body.as_bytes());
    }

    fn refused(body: &[u8]) -> String {
        let cfg = Config::from_pairs([("fields", "/card")]);
        match handle(Event::new("t", body.to_vec()), &cfg) {
            Ok(out) => panic!("passed on: {:?}", out.events()[0].body_str()),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_body_it_cannot_parse_fails_closed() {
        let deep = format!(
            "{}{{\"card\":\"4242\"}}{}",
            "[".repeat(130),
            "]".repeat(130)
        );
        for body in [
            b"a=1&card=4242".to_vec(),
            br#"{"card":"4242"} trailing"#.to_vec(),
            br#"{"card":"4242"}{"card":"4242"}"#.to_vec(),
            deep.into_bytes(),
            b"\xff\xfe{\"card\":1}".to_vec(),
        ] {
            let why = refused(&body);
            assert!(why.contains("cannot redact"), "{why}");
        }
    }

    #[test]
    fn an_empty_body_has_nothing_to_hide() {
        assert_eq!(run("", "/card"), b"");
        assert_eq!(run(" \n", "/card"), b" \n");
    }

    #[test]
    fn duplicate_keys_are_all_removed() {
        let out = run(r#"{"card":"4242","card":"4343","n":1}"#, "/card");
        assert_eq!(out, br#"{"n":1}"#);
    }
}
