//! Inbound signature verification, per source.
//!
//! Invariants:
//! - Verification runs over the raw body bytes, before anything is parsed or
//!   stored; a request that fails it is answered 401 and leaves no trace but
//!   a log line and a counter.
//! - Signatures are compared in constant time (`Mac::verify_slice`).
//! - Error messages say which check failed, never what was expected.
//! - Every scheme accepts several secrets, so a secret can be rotated
//!   without dropping requests signed with the old one.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::secret::Secret;

type HmacSha256 = Hmac<Sha256>;

/// How a source proves that a request is genuine.
#[derive(Debug, Clone)]
pub enum Verifier {
    /// `X-Hub-Signature-256: sha256=<hex HMAC(secret, body)>`.
    GitHub { secrets: Vec<Secret> },
    /// `Stripe-Signature: t=<unix>,v1=<hex>[,v1=…]` over `"<t>.<body>"`, keyed
    /// with the whole `whsec_…` string.
    Stripe {
        secrets: Vec<Secret>,
        tolerance_secs: i64,
    },
    /// `X-Slack-Signature: v0=<hex>` over `"v0:<X-Slack-Request-Timestamp>:<body>"`.
    Slack {
        secrets: Vec<Secret>,
        tolerance_secs: i64,
    },
    /// `X-Shopify-Hmac-Sha256: <base64 HMAC(secret, body)>`.
    Shopify { secrets: Vec<Secret> },
    /// `webhook-id`, `webhook-timestamp`, `webhook-signature` (space-separated
    /// `v1,<base64>`) over `"<id>.<timestamp>.<body>"`; keys decoded from `whsec_…`.
    StandardWebhooks {
        keys: Vec<Secret>,
        tolerance_secs: i64,
    },
    /// Any HMAC-SHA256 in one header: hex or base64, after an optional prefix;
    /// with a timestamp header, over `"<timestamp>.<body>"` within the tolerance.
    Hmac {
        secrets: Vec<Secret>,
        header: String,
        encoding: Encoding,
        prefix: String,
        timestamp_header: Option<String>,
        tolerance_secs: i64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Hex,
    Base64,
}

/// SHA-256 of exactly what the sender signed (the body, and the timestamp
/// and id where the scheme signs them). The same request sent again has the
/// same digest whatever unsigned headers changed, so ingest treats it as a
/// duplicate: a replayed request makes no new event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignedContent(pub [u8; 32]);

impl SignedContent {
    fn of(parts: &[&[u8]]) -> Self {
        let mut h = Sha256::new();
        for p in parts {
            h.update(p);
        }
        SignedContent(h.finalize().into())
    }
}

/// Which check failed. The message is safe to send to the client.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum VerifyError {
    #[error("missing signature header {0}")]
    Missing(&'static str),
    #[error("missing signature header {0}")]
    MissingNamed(String),
    #[error("malformed {0} header: {1}")]
    Malformed(String, &'static str),
    #[error("the timestamp in {0} is outside the {1} s tolerance")]
    Stale(String, i64),
    #[error("the signature in {0} does not match the body")]
    Mismatch(String),
}

impl Verifier {
    /// The (lower-case) headers that carry this scheme's signature. Ingest
    /// strips them before the event is stored: they are the sender's proof
    /// to us, and a target that got them could replay the request to us.
    /// Timestamps and ids are kept; alone they prove nothing.
    pub fn signature_headers(&self) -> Vec<&str> {
        match self {
            // The legacy SHA-1 header comes alongside, from the same secret.
            Verifier::GitHub { .. } => vec!["x-hub-signature-256", "x-hub-signature"],
            Verifier::Stripe { .. } => vec!["stripe-signature"],
            Verifier::Slack { .. } => vec!["x-slack-signature"],
            Verifier::Shopify { .. } => vec!["x-shopify-hmac-sha256"],
            Verifier::StandardWebhooks { .. } => vec!["webhook-signature"],
            Verifier::Hmac { header, .. } => vec![header.as_str()],
        }
    }

    /// Check a request. `header` looks a header up by lower-case name; `now`
    /// is the current Unix time in seconds. A genuine request gives the
    /// digest of what was signed.
    pub fn verify<'a>(
        &self,
        header: impl Fn(&str) -> Option<&'a str>,
        body: &[u8],
        now: i64,
    ) -> Result<SignedContent, VerifyError> {
        match self {
            Verifier::GitHub { secrets } => {
                const H: &str = "x-hub-signature-256";
                let value = header(H).ok_or(VerifyError::Missing("X-Hub-Signature-256"))?;
                let sig = parse_prefixed_hex(value, "sha256=")
                    .ok_or_else(|| malformed(H, "expected sha256=<hex>"))?;
                any_matches(secrets, &[body], &sig)
                    .then(|| SignedContent::of(&[body]))
                    .ok_or_else(|| mismatch(H))
            }
            Verifier::Stripe {
                secrets,
                tolerance_secs,
            } => {
                const H: &str = "stripe-signature";
                let value = header(H).ok_or(VerifyError::Missing("Stripe-Signature"))?;
                let parsed = parse_stripe(value)
                    .ok_or_else(|| malformed(H, "expected t=<unix>,v1=<hex>"))?;
                check_age(H, parsed.timestamp, now, *tolerance_secs)?;
                let t = parsed.timestamp.to_string();
                let parts: [&[u8]; 3] = [t.as_bytes(), b".", body];
                parsed
                    .signatures
                    .iter()
                    .any(|sig| any_matches(secrets, &parts, sig))
                    .then(|| SignedContent::of(&parts))
                    .ok_or_else(|| mismatch(H))
            }
            Verifier::Slack {
                secrets,
                tolerance_secs,
            } => {
                const H: &str = "x-slack-signature";
                const T: &str = "x-slack-request-timestamp";
                let value = header(H).ok_or(VerifyError::Missing("X-Slack-Signature"))?;
                let ts_text = header(T).ok_or(VerifyError::Missing("X-Slack-Request-Timestamp"))?;
                let ts = parse_unix(ts_text).ok_or_else(|| malformed(T, "expected a Unix time"))?;
                check_age(T, ts, now, *tolerance_secs)?;
                let sig = parse_prefixed_hex(value, "v0=")
                    .ok_or_else(|| malformed(H, "expected v0=<hex>"))?;
                let parts: [&[u8]; 4] = [b"v0:", ts_text.trim().as_bytes(), b":", body];
                any_matches(secrets, &parts, &sig)
                    .then(|| SignedContent::of(&parts))
                    .ok_or_else(|| mismatch(H))
            }
            Verifier::Shopify { secrets } => {
                const H: &str = "x-shopify-hmac-sha256";
                let value = header(H).ok_or(VerifyError::Missing("X-Shopify-Hmac-Sha256"))?;
                let sig = STANDARD
                    .decode(value.trim())
                    .map_err(|_| malformed(H, "expected base64"))?;
                any_matches(secrets, &[body], &sig)
                    .then(|| SignedContent::of(&[body]))
                    .ok_or_else(|| mismatch(H))
            }
            Verifier::StandardWebhooks {
                keys,
                tolerance_secs,
            } => {
                let id = header("webhook-id").ok_or(VerifyError::Missing("webhook-id"))?;
                let ts_text =
                    header("webhook-timestamp").ok_or(VerifyError::Missing("webhook-timestamp"))?;
                let value =
                    header("webhook-signature").ok_or(VerifyError::Missing("webhook-signature"))?;
                let ts = parse_unix(ts_text)
                    .ok_or_else(|| malformed("webhook-timestamp", "expected a Unix time"))?;
                check_age("webhook-timestamp", ts, now, *tolerance_secs)?;
                let sigs = parse_standard(value);
                if sigs.is_empty() {
                    return Err(malformed(
                        "webhook-signature",
                        "expected space-separated v1,<base64>",
                    ));
                }
                let parts: [&[u8]; 5] =
                    [id.as_bytes(), b".", ts_text.trim().as_bytes(), b".", body];
                sigs.iter()
                    .any(|sig| any_matches(keys, &parts, sig))
                    .then(|| SignedContent::of(&parts))
                    .ok_or_else(|| mismatch("webhook-signature"))
            }
            Verifier::Hmac {
                secrets,
                header: name,
                encoding,
                prefix,
                timestamp_header,
                tolerance_secs,
            } => {
                let value = header(name).ok_or_else(|| VerifyError::MissingNamed(name.clone()))?;
                let encoded = value
                    .trim()
                    .strip_prefix(prefix.as_str())
                    .ok_or_else(|| malformed(name, "missing the configured prefix"))?;
                let sig = match encoding {
                    Encoding::Hex => {
                        decode_hex(encoded).ok_or_else(|| malformed(name, "expected hex"))?
                    }
                    Encoding::Base64 => STANDARD
                        .decode(encoded)
                        .map_err(|_| malformed(name, "expected base64"))?,
                };
                let ts_text = match timestamp_header {
                    None => None,
                    Some(th) => {
                        let ts_text =
                            header(th).ok_or_else(|| VerifyError::MissingNamed(th.clone()))?;
                        let ts = parse_unix(ts_text)
                            .ok_or_else(|| malformed(th, "expected a Unix time"))?;
                        check_age(th, ts, now, *tolerance_secs)?;
                        Some(ts_text.trim())
                    }
                };
                let timestamped: [&[u8]; 3];
                let parts: &[&[u8]] = match ts_text {
                    None => &[body],
                    Some(ts) => {
                        timestamped = [ts.as_bytes(), b".", body];
                        &timestamped
                    }
                };
                any_matches(secrets, parts, &sig)
                    .then(|| SignedContent::of(parts))
                    .ok_or_else(|| mismatch(name))
            }
        }
    }
}

fn malformed(header: &str, what: &'static str) -> VerifyError {
    VerifyError::Malformed(header.to_string(), what)
}

fn mismatch(header: &str) -> VerifyError {
    VerifyError::Mismatch(header.to_string())
}

fn check_age(header: &str, ts: i64, now: i64, tolerance: i64) -> Result<(), VerifyError> {
    if now.abs_diff(ts) > tolerance.unsigned_abs() {
        return Err(VerifyError::Stale(header.to_string(), tolerance));
    }
    Ok(())
}

/// Whether HMAC-SHA256 over the concatenated `parts`, under any secret,
/// equals `signature`, compared in constant time.
fn any_matches(secrets: &[Secret], parts: &[&[u8]], signature: &[u8]) -> bool {
    secrets.iter().any(|secret| {
        let mut mac =
            HmacSha256::new_from_slice(secret.expose()).expect("HMAC takes keys of any length");
        for p in parts {
            mac.update(p);
        }
        mac.verify_slice(signature).is_ok()
    })
}

/// `PREFIX<hex>` → bytes.
pub fn parse_prefixed_hex(value: &str, prefix: &str) -> Option<Vec<u8>> {
    decode_hex(value.trim().strip_prefix(prefix)?)
}

/// Lower-case hex of `bytes` (digests: plugin versions, long keys).
pub fn encode_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || text.len() > 1024 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

fn parse_unix(text: &str) -> Option<i64> {
    let t = text.trim();
    (!t.is_empty() && t.len() <= 12 && t.bytes().all(|b| b.is_ascii_digit()))
        .then(|| t.parse().ok())?
}

/// A parsed `Stripe-Signature` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StripeSignature {
    pub timestamp: i64,
    pub signatures: Vec<Vec<u8>>,
}

/// `t=<unix>,v1=<hex>[,v1=<hex>…]`; other schemes (`v0=`) are ignored.
pub fn parse_stripe(value: &str) -> Option<StripeSignature> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for item in value.split(',').take(64) {
        let (k, v) = item.trim().split_once('=')?;
        match k {
            "t" => timestamp = Some(parse_unix(v)?),
            "v1" => signatures.push(decode_hex(v)?),
            _ => {}
        }
    }
    let timestamp = timestamp?;
    (!signatures.is_empty()).then_some(StripeSignature {
        timestamp,
        signatures,
    })
}

/// `v1,<base64> v1,<base64>` → the decodable v1 signatures.
pub fn parse_standard(value: &str) -> Vec<Vec<u8>> {
    value
        .split(' ')
        .take(64)
        .filter_map(|s| s.strip_prefix("v1,"))
        .filter_map(|b| STANDARD.decode(b).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// Published vectors (host/testdata/signatures.json; each entry names
    /// where it was published).
    fn vectors() -> Value {
        serde_json::from_str(include_str!("../testdata/signatures.json")).unwrap()
    }

    fn lookup<'a>(pairs: &'a [(&'a str, String)]) -> impl Fn(&str) -> Option<&'a str> {
        move |name| {
            pairs
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }
    }

    fn secret(s: &str) -> Vec<Secret> {
        vec![Secret::new("not-this-one"), Secret::new(s)]
    }

    #[test]
    fn github_published_vector() {
        let v = &vectors()["github_sha256"];
        let verifier = Verifier::GitHub {
            secrets: secret(v["secret"].as_str().unwrap()),
        };
        let body = v["payload"].as_str().unwrap().as_bytes();
        let h = [(
            "x-hub-signature-256",
            v["signature"].as_str().unwrap().to_string(),
        )];
        assert!(verifier.verify(lookup(&h), body, 0).is_ok());
        assert_eq!(
            verifier.verify(lookup(&h), b"Hello, World?", 0),
            Err(mismatch("x-hub-signature-256"))
        );
        assert_eq!(
            verifier.verify(lookup(&[]), body, 0),
            Err(VerifyError::Missing("X-Hub-Signature-256"))
        );
        let bad = [("x-hub-signature-256", "sha1=abc".to_string())];
        assert!(matches!(
            verifier.verify(lookup(&bad), body, 0),
            Err(VerifyError::Malformed(..))
        ));
    }

    #[test]
    fn slack_published_vector_with_tolerance() {
        let v = &vectors()["slack_v0"];
        let ts = v["timestamp"].as_i64().unwrap();
        let verifier = Verifier::Slack {
            secrets: secret(v["secret"].as_str().unwrap()),
            tolerance_secs: 300,
        };
        let body = v["payload"].as_str().unwrap().as_bytes();
        let h = [
            (
                "x-slack-signature",
                v["signature"].as_str().unwrap().to_string(),
            ),
            ("x-slack-request-timestamp", ts.to_string()),
        ];
        assert!(verifier.verify(lookup(&h), body, ts + 10).is_ok());
        assert!(matches!(
            verifier.verify(lookup(&h), body, ts + 301),
            Err(VerifyError::Stale(..))
        ));
        assert!(matches!(
            verifier.verify(lookup(&h), &body[1..], ts),
            Err(VerifyError::Mismatch(_))
        ));
    }

    #[test]
    fn standard_webhooks_published_vector_and_rotation() {
        let v = &vectors()["standard_webhooks_v1"];
        let key = crate::config::decode_whsec(v["secret"].as_str().unwrap()).unwrap();
        let verifier = Verifier::StandardWebhooks {
            keys: vec![Secret::new([9u8; 32]), key],
            tolerance_secs: 300,
        };
        let ts = v["timestamp"].as_i64().unwrap();
        let body = v["payload"].as_str().unwrap().as_bytes();
        let h = [
            ("webhook-id", v["msg_id"].as_str().unwrap().to_string()),
            ("webhook-timestamp", ts.to_string()),
            (
                "webhook-signature",
                format!("v1,Zm9v {}", v["signature"].as_str().unwrap()),
            ),
        ];
        assert!(verifier.verify(lookup(&h), body, ts).is_ok());
        assert!(matches!(
            verifier.verify(lookup(&h), body, ts + 1000),
            Err(VerifyError::Stale(..))
        ));
        assert!(matches!(
            verifier.verify(lookup(&h), b"{}", ts),
            Err(VerifyError::Mismatch(_))
        ));
    }

    #[test]
    fn stripe_and_shopify_and_generic_hmac_round_trip() {
        // Signatures made here with the same HMAC; the end-to-end test checks
        // them against Python's independent `hmac` module.
        fn hmac_hex(key: &[u8], parts: &[&[u8]]) -> String {
            let mut m = HmacSha256::new_from_slice(key).unwrap();
            parts.iter().for_each(|p| m.update(p));
            m.finalize()
                .into_bytes()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect()
        }
        let body = br#"{"id":"evt_1"}"#;
        let whsec = "whsec_test_secret";
        let sig = hmac_hex(whsec.as_bytes(), &[b"1700000000.", body]);
        let v = Verifier::Stripe {
            secrets: secret(whsec),
            tolerance_secs: 300,
        };
        let h = [(
            "stripe-signature",
            format!("t=1700000000,v1=00ff,v0=zz,v1={sig}"),
        )];
        assert_eq!(v.verify(lookup(&h), body, 1_700_000_100).map(drop), Ok(()));
        assert!(matches!(
            v.verify(lookup(&h), body, 1_700_001_000),
            Err(VerifyError::Stale(..))
        ));

        let key = b"shpss_secret";
        let mut m = HmacSha256::new_from_slice(key).unwrap();
        m.update(body);
        let b64 = STANDARD.encode(m.finalize().into_bytes());
        let v = Verifier::Shopify {
            secrets: secret("shpss_secret"),
        };
        assert_eq!(
            v.verify(lookup(&[("x-shopify-hmac-sha256", b64)]), body, 0)
                .map(drop),
            Ok(())
        );

        let v = Verifier::Hmac {
            secrets: secret("k"),
            header: "x-sig".into(),
            encoding: Encoding::Hex,
            prefix: "sha256=".into(),
            timestamp_header: Some("x-ts".into()),
            tolerance_secs: 60,
        };
        let sig = hmac_hex(b"k", &[b"100.", body]);
        let h = [
            ("x-sig", format!("sha256={sig}")),
            ("x-ts", "100".to_string()),
        ];
        assert_eq!(v.verify(lookup(&h), body, 130).map(drop), Ok(()));
        // A replay with the same timestamp signs the same content; a new
        // timestamp is a new request.
        let again = v.verify(lookup(&h), body, 131).unwrap();
        assert_eq!(v.verify(lookup(&h), body, 130).unwrap(), again);
        let sig2 = hmac_hex(b"k", &[b"101.", body]);
        let h2 = [
            ("x-sig", format!("sha256={sig2}")),
            ("x-ts", "101".to_string()),
        ];
        assert_ne!(v.verify(lookup(&h2), body, 130).unwrap(), again);
        assert!(matches!(
            v.verify(lookup(&h), body, 200),
            Err(VerifyError::Stale(..))
        ));
    }

    #[test]
    fn parsers_reject_garbage() {
        assert_eq!(parse_stripe("t=abc,v1=00"), None);
        assert_eq!(parse_stripe("v1=00"), None);
        assert_eq!(parse_stripe("t=1"), None);
        assert_eq!(parse_stripe("t=1,v1=0g"), None);
        assert_eq!(decode_hex("abc"), None);
        assert!(parse_standard("v2,abc v1,!!!").is_empty());
        assert_eq!(parse_unix("-5"), None);
        assert_eq!(parse_unix("99999999999999999999"), None);
    }
}
