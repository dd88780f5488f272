//! Remove fields from a JSON body. `fields` is a comma-separated list of JSON
//! pointers (RFC 6901), e.g. `/user/email,/card`. Pointers that match nothing
//! are ignored. The body is read as it is, not parsed into a tree and
//! written again: what is kept stays byte for byte as sent (see [`scan`]).
//!
//! Redaction fails closed: a body it cannot parse (not JSON, trailing bytes
//! after the JSON, nesting deeper than the parser allows) fails the event
//! rather than pass the secret on. An empty body has nothing to hide.

use wasmhook_sdk::prelude::*;

pub mod scan;

#[plugin]
pub fn handle(mut ev: Event, cfg: &Config) -> Result<Outcome> {
    // JSON's whitespace only: a form feed is not.
    if ev
        .body
        .iter()
        .all(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
    {
        return Ok(Outcome::keep(ev));
    }
    let paths: Vec<Vec<String>> = cfg
        .list("fields")
        .iter()
        .filter_map(|p| scan::tokens(p))
        .collect();
    let refused = |e: scan::SyntaxError| {
        Error::msg(format!(
            "cannot redact a body that does not parse as JSON: {e}"
        ))
    };
    // One pass per pointer, in order, each on what the last one left (so
    // `/items/0,/items/0` removes two items). Every pass checks the whole
    // body; with no pointer set, one pass that removes nothing checks it,
    // so a body that is not JSON still fails.
    if paths.is_empty() {
        scan::remove(&ev.body, &[]).map_err(refused)?;
    }
    for path in &paths {
        if let Some(cut) = scan::remove(&ev.body, path).map_err(refused)? {
            ev.body = cut;
        }
    }
    Ok(Outcome::keep(ev))
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
        // A form feed is not JSON's whitespace.
        let cfg = Config::from_pairs([("fields", "/card")]);
        assert!(handle(Event::new("t", "\x0c"), &cfg).is_err());
    }

    #[test]
    fn duplicate_keys_are_all_removed() {
        let out = run(r#"{"card":"4242","card":"4343","n":1}"#, "/card");
        assert_eq!(out, br#"{"n":1}"#);
    }

    #[test]
    fn pointers_apply_in_order_each_to_what_the_last_left() {
        assert_eq!(run("[1,2,3]", "/0,/0"), b"[3]");
        assert_eq!(run(r#"{"a":{"b":1},"c":2}"#, "/a,/a/b"), br#"{"c":2}"#);
    }

    #[test]
    fn what_is_kept_is_left_as_written() {
        let body = "{\n  \"z\": 1.50,\n  \"card\": \"4242\",\n  \"a\": \"\\u00e9\"\n}";
        assert_eq!(
            run(body, "/card"),
            "{\n  \"z\": 1.50,\n  \"a\": \"\\u00e9\"\n}".as_bytes()
        );
    }

    #[test]
    fn a_body_that_is_not_json_fails_even_with_no_pointer_set() {
        let cfg = Config::from_pairs([("fields", " , nope")]);
        assert!(handle(Event::new("t", "a=1"), &cfg).is_err());
        assert!(handle(Event::new("t", r#"{"a":1}"#), &cfg).is_ok());
    }

    /// The tree-based removal the scanner replaced, as the reference.
    mod tree {
        use super::*;

        pub fn redact(body: &[u8], fields: &str) -> Option<Value> {
            let mut root: Value = wasmhook_sdk::serde_json::from_slice(body).ok()?;
            for pointer in fields.split(',') {
                let Some((parent, last)) = pointer.rsplit_once('/') else {
                    continue;
                };
                let key = last.replace("~1", "/").replace("~0", "~");
                match root.pointer_mut(parent) {
                    Some(Value::Object(map)) => {
                        map.remove(&key);
                    }
                    Some(Value::Array(items)) => {
                        if let Some(i) = key.parse::<usize>().ok().filter(|&i| i < items.len()) {
                            items.remove(i);
                        }
                    }
                    _ => {}
                }
            }
            Some(root)
        }
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn json() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::from),
                any::<i32>().prop_map(Value::from),
                (-1e6f64..1e6).prop_map(Value::from),
                "[a-c\u{e9}\"\\\\/\n]{0,4}".prop_map(Value::from),
            ];
            leaf.prop_recursive(5, 48, 5, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..5).prop_map(Value::from),
                    prop::collection::btree_map("[a-c/~]{1,2}", inner, 0..5)
                        .prop_map(|m| Value::Object(m.into_iter().collect())),
                ]
            })
        }

        /// Pointers into `v` (and some that miss), escaped.
        fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
            out.push(at.clone());
            match v {
                Value::Object(m) => {
                    for (k, v) in m {
                        let k = k.replace('~', "~0").replace('/', "~1");
                        pointers(v, format!("{at}/{k}"), out);
                    }
                }
                Value::Array(items) => {
                    for (i, v) in items.iter().enumerate() {
                        pointers(v, format!("{at}/{i}"), out);
                    }
                    out.push(format!("{at}/{}", items.len()));
                    out.push(format!("{at}/00"));
                }
                _ => out.push(format!("{at}/x")),
            }
        }

        proptest! {
            #[test]
            fn removes_what_the_tree_removes(
                v in json(),
                picks in prop::collection::vec(any::<prop::sample::Index>(), 1..4),
                pretty: bool,
            ) {
                let body = if pretty {
                    wasmhook_sdk::serde_json::to_vec_pretty(&v).unwrap()
                } else {
                    wasmhook_sdk::serde_json::to_vec(&v).unwrap()
                };
                let mut all = Vec::new();
                pointers(&v, String::new(), &mut all);
                let fields: Vec<&str> = picks.iter().map(|i| i.get(&all).as_str()).collect();
                let fields = fields.join(",");
                let out = run(std::str::from_utf8(&body).unwrap(), &fields);
                let got: Value = wasmhook_sdk::serde_json::from_slice(&out).unwrap();
                prop_assert_eq!(Some(got), tree::redact(&body, &fields), "fields {}", fields);
            }

            #[test]
            fn refuses_what_the_parser_refuses(
                v in json(),
                at in any::<prop::sample::Index>(),
                byte in prop::sample::select(b"{}[],:\"\\ 0-.eE+tfnu\x01\xff".to_vec()),
            ) {
                let mut body = wasmhook_sdk::serde_json::to_vec(&v).unwrap();
                let i = at.index(body.len());
                body[i] = byte;
                let parsed = wasmhook_sdk::serde_json::from_slice::<Value>(&body);
                if let Err(e) = &parsed {
                    // The grammar has no bound on numbers; serde_json's f64 has.
                    prop_assume!(!e.to_string().contains("number out of range"));
                }
                let cfg = Config::from_pairs([("fields", "/a")]);
                let ours = handle(Event::new("t", body.clone()), &cfg);
                prop_assert_eq!(
                    ours.is_ok(),
                    parsed.is_ok(),
                    "{:?}: {:?}",
                    String::from_utf8_lossy(&body),
                    parsed.err()
                );
            }
        }
    }
}
