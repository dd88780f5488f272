//! Standard Webhooks signatures: `v1,<base64 HMAC-SHA256(key, "id.timestamp.body")>`.
//!
//! Used to sign outbound deliveries, and by `wasmhook listen` and the tests to
//! verify them.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// One `v1,<base64>` signature.
pub fn sign(key: &[u8], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// The `webhook-signature` header value: one signature per key, space-separated
/// (several keys during a rotation).
pub fn signature_header<'a>(
    keys: impl IntoIterator<Item = &'a [u8]>,
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
) -> String {
    keys.into_iter()
        .map(|k| sign(k, msg_id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether any `v1,` signature in `header` matches `key`, compared in constant time.
pub fn verify(key: &[u8], msg_id: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
    header.split(' ').any(|sig| {
        let Some(b64) = sig.strip_prefix("v1,") else {
            return false;
        };
        let Ok(expected) = STANDARD.decode(b64) else {
            return false;
        };
        let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
        mac.update(msg_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.verify_slice(&expected).is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    /// The official vector, published with the Standard Webhooks libraries
    /// (host/testdata/signatures.json).
    fn vector() -> serde_json::Value {
        let all: serde_json::Value =
            serde_json::from_str(include_str!("../../testdata/signatures.json")).unwrap();
        all["standard_webhooks_v1"].clone()
    }

    fn key(v: &serde_json::Value) -> Secret {
        crate::config::decode_whsec(v["secret"].as_str().unwrap()).unwrap()
    }

    #[test]
    fn matches_the_published_standard_webhooks_vector() {
        let v = vector();
        let sig = sign(
            key(&v).expose(),
            v["msg_id"].as_str().unwrap(),
            v["timestamp"].as_i64().unwrap(),
            v["payload"].as_str().unwrap().as_bytes(),
        );
        assert_eq!(sig, v["signature"].as_str().unwrap());
    }

    #[test]
    fn verify_accepts_any_matching_signature_and_rejects_tampering() {
        let v = vector();
        let (k, id, ts) = (
            key(&v),
            v["msg_id"].as_str().unwrap(),
            v["timestamp"].as_i64().unwrap(),
        );
        let body = v["payload"].as_str().unwrap().as_bytes();
        let other = [7u8; 32];
        let header = signature_header([other.as_slice(), k.expose()], id, ts, body);
        assert_eq!(header.split(' ').count(), 2);
        assert!(verify(k.expose(), id, ts, body, &header));
        assert!(!verify(k.expose(), id, ts + 1, body, &header));
        assert!(!verify(k.expose(), id, ts, b"{}", &header));
        assert!(!verify(k.expose(), id, ts, body, "v1,not-base64!"));
        assert!(!verify(k.expose(), id, ts, body, ""));
    }

    proptest::proptest! {
        /// The spec's own library (`standardwebhooks`) accepts what we sign,
        /// with the current time, for any id, body and pair of keys.
        #[test]
        fn the_reference_library_verifies_our_signatures(
            id in "[a-zA-Z0-9_-]{1,40}",
            body in "\\PC{0,200}",
            k1 in proptest::collection::vec(proptest::prelude::any::<u8>(), 16..48),
            k2 in proptest::collection::vec(proptest::prelude::any::<u8>(), 16..48),
        ) {
            let now = (crate::event::now_ms() / 1000) as i64;
            let header = signature_header([k1.as_slice(), k2.as_slice()], &id, now, body.as_bytes());
            let mut headers = http::HeaderMap::new();
            headers.insert("webhook-id", id.parse().unwrap());
            headers.insert("webhook-timestamp", now.to_string().parse().unwrap());
            headers.insert("webhook-signature", header.parse().unwrap());
            for key in [&k1, &k2] {
                let reference = standardwebhooks::Webhook::from_bytes(key.clone()).unwrap();
                proptest::prop_assert!(reference.verify(body.as_bytes(), &headers).is_ok());
                proptest::prop_assert_eq!(
                    reference.sign(&id, now, body.as_bytes()).unwrap(),
                    sign(key, &id, now, body.as_bytes())
                );
            }
            let stranger = standardwebhooks::Webhook::from_bytes(vec![9; 32]).unwrap();
            proptest::prop_assert!(stranger.verify(body.as_bytes(), &headers).is_err());
        }
    }
}
