//! Fuzz every signature-header parser and every verifier with arbitrary
//! header values and bodies: nothing may panic, and nothing random may verify.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wasmhook::config::Secret;
use wasmhook::verify::{
    Encoding, Verifier, decode_hex, parse_prefixed_hex, parse_standard, parse_stripe,
};

fuzz_target!(|data: &[u8]| {
    // Split the input: a header value, then a body.
    let split = data.iter().position(|b| *b == b'\n').unwrap_or(data.len());
    let (head, body) = data.split_at(split);
    let Ok(value) = std::str::from_utf8(head) else {
        return;
    };
    let _ = parse_stripe(value);
    let _ = parse_standard(value);
    let _ = decode_hex(value);
    let _ = parse_prefixed_hex(value, "sha256=");

    let secrets = || vec![Secret::new(b"fuzz-secret".to_vec())];
    let verifiers = [
        Verifier::GitHub { secrets: secrets() },
        Verifier::Stripe {
            secrets: secrets(),
            tolerance_secs: i64::MAX,
        },
        Verifier::Slack {
            secrets: secrets(),
            tolerance_secs: i64::MAX,
        },
        Verifier::Shopify { secrets: secrets() },
        Verifier::StandardWebhooks {
            keys: secrets(),
            tolerance_secs: i64::MAX,
        },
        Verifier::Hmac {
            secrets: secrets(),
            header: "x-sig".into(),
            encoding: Encoding::Base64,
            prefix: String::new(),
            timestamp_header: Some("x-ts".into()),
            tolerance_secs: 300,
        },
    ];
    for v in &verifiers {
        // Every header this verifier might read gets the fuzzed value.
        let verdict = v.verify(|_| Some(value), body, 1_700_000_000);
        assert!(verdict.is_err(), "random input verified: {value:?}");
    }
});
