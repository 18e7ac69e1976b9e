//! Standard Webhooks signatures (standardwebhooks.com): HMAC-SHA256 over
//! `{webhook-id}.{webhook-timestamp}.{body}` with the secret's bytes (the
//! secret is `whsec_` and their base64), sent as `v1,{base64}` in
//! `webhook-signature` (space-separated when several). Checked in constant
//! time, within a tolerance of the sender's clock.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// How far a timestamp may be from now, either way.
pub const TOLERANCE_SECS: i64 = 5 * 60;
const PREFIX: &str = "whsec_";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the webhook-id, webhook-timestamp and webhook-signature headers are required")]
    Missing,
    #[error("webhook-timestamp is not a Unix time in seconds")]
    BadTimestamp,
    #[error("webhook-timestamp is more than 5 minutes from now (a stale or replayed message)")]
    Stale,
    #[error("no signature in webhook-signature matches the message")]
    Mismatch,
}

/// Most signatures of one header looked at.
const MAX_CANDIDATES: usize = 8;

/// A new secret: `whsec_` and the base64 of 32 random bytes.
pub fn new_secret() -> anyhow::Result<String> {
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).map_err(|e| anyhow::anyhow!("no randomness for a secret: {e}"))?;
    Ok(format!("{PREFIX}{}", STANDARD.encode(key)))
}

fn mac(secret: &str, id: &str, timestamp: &str, body: &[u8]) -> Option<Hmac<Sha256>> {
    let key = STANDARD.decode(secret.strip_prefix(PREFIX).unwrap_or(secret)).ok()?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).ok()?;
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    Some(mac)
}

/// The `webhook-signature` value for a message.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Option<String> {
    let tag = mac(secret, id, &timestamp.to_string(), body)?.finalize().into_bytes();
    Some(format!("v1,{}", STANDARD.encode(tag)))
}

/// Checks a message's headers against its body, at `now` (Unix seconds).
pub fn verify(
    secret: &str,
    id: &str,
    timestamp: &str,
    signatures: &str,
    body: &[u8],
    now: i64,
) -> Result<(), SignatureError> {
    let at: i64 = timestamp.trim().parse().map_err(|_| SignatureError::BadTimestamp)?;
    if now.abs_diff(at) > TOLERANCE_SECS as u64 {
        return Err(SignatureError::Stale);
    }
    // The body is digested once, whatever the header holds.
    let Some(mac) = mac(secret, id, timestamp.trim(), body) else {
        return Err(SignatureError::Mismatch);
    };
    let expected = mac.finalize().into_bytes();
    let matches = signatures
        .split_whitespace()
        .take(MAX_CANDIDATES)
        .filter_map(|c| c.strip_prefix("v1,").and_then(|b| STANDARD.decode(b).ok()))
        .any(|tag| bool::from(tag.as_slice().ct_eq(expected.as_slice())));
    if matches { Ok(()) } else { Err(SignatureError::Mismatch) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_and_verifies_as_the_standard_says() {
        // The example of the Standard Webhooks specification.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
        let body = br#"{"test": 2432232314}"#;
        let signature = sign(secret, id, 1614265330, body).unwrap();
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert_eq!(verify(secret, id, "1614265330", &signature, body, 1614265330), Ok(()));
        let several = format!("v1,bm90IGl0 {signature}");
        assert_eq!(verify(secret, id, "1614265330", &several, body, 1614265400), Ok(()));
        assert_eq!(
            verify(secret, id, "1614265330", &signature, b"{}", 1614265330),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(secret, id, "1614265330", &signature, body, 1614265330 + 301),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify(secret, id, "soon", &signature, body, 0),
            Err(SignatureError::BadTimestamp)
        );
        assert!(new_secret().unwrap().starts_with("whsec_"));
    }
}
