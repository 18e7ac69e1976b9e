//! Stream tokens: short-lived, signed grants to read one execution's live
//! stream, for callers that cannot send an `Authorization` header (a browser's
//! `EventSource`). A token names its workspace, the key it was made with, its
//! role, the execution and when it expires, under an HMAC-SHA256 of a key this
//! process draws at start; it never carries the API key itself, so the key
//! stays out of URLs, logs and browser history.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::record::Role;

/// What every stream token starts with.
pub const PREFIX: &str = "wst_";

/// How long a token opens its stream for: long enough to connect, short
/// enough that one copied out of a URL is soon worth nothing.
pub const TTL_MS: i64 = 60_000;

/// What a valid token grants.
#[derive(Debug, PartialEq, Eq)]
pub struct Grant {
    pub workspace: String,
    /// `None` when an open host made it.
    pub key_id: Option<String>,
    pub role: Role,
}

/// Makes and checks tokens with one process-wide key.
pub struct StreamTokens {
    /// A whole SHA-256 block: HMAC's own key size.
    key: [u8; 64],
}

impl StreamTokens {
    pub fn new() -> Result<Self, String> {
        let mut key = [0u8; 64];
        getrandom::fill(&mut key).map_err(|e| format!("no randomness for the stream-token key: {e}"))?;
        Ok(Self { key })
    }

    /// A token for `execution_id`, valid until `expires_ms`.
    pub fn issue(&self, grant: &Grant, execution_id: &str, expires_ms: i64) -> String {
        let payload = format!(
            "{}\n{}\n{}\n{}\n{}",
            grant.workspace,
            grant.key_id.as_deref().unwrap_or(""),
            grant.role.as_str(),
            execution_id,
            expires_ms
        );
        let signature = self.sign(payload.as_bytes());
        format!(
            "{PREFIX}{}.{}",
            URL_SAFE_NO_PAD.encode(payload),
            URL_SAFE_NO_PAD.encode(signature)
        )
    }

    /// What `token` grants on `execution_id` at `now_ms`, or why nothing.
    pub fn verify(&self, token: &str, execution_id: &str, now_ms: i64) -> Result<Grant, &'static str> {
        const BAD: &str = "that is not a valid stream token";
        let (payload, signature) = token
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split_once('.'))
            .ok_or(BAD)?;
        let payload = URL_SAFE_NO_PAD.decode(payload).map_err(|_| BAD)?;
        let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| BAD)?;
        let mut mac = self.mac();
        mac.update(&payload);
        mac.verify_slice(&signature).map_err(|_| BAD)?;
        let payload = String::from_utf8(payload).map_err(|_| BAD)?;
        let fields: Vec<&str> = payload.split('\n').collect();
        let [workspace, key_id, role, execution, expires] = fields[..] else {
            return Err(BAD);
        };
        if execution != execution_id {
            return Err("this stream token is for another execution");
        }
        let expires: i64 = expires.parse().map_err(|_| BAD)?;
        if now_ms >= expires {
            return Err("this stream token has expired; ask for another");
        }
        Ok(Grant {
            workspace: workspace.to_owned(),
            key_id: (!key_id.is_empty()).then(|| key_id.to_owned()),
            role: Role::parse(role).ok_or(BAD)?,
        })
    }

    fn mac(&self) -> Hmac<Sha256> {
        <Hmac<Sha256> as KeyInit>::new(&self.key.into())
    }

    fn sign(&self, payload: &[u8]) -> Vec<u8> {
        let mut mac = self.mac();
        mac.update(payload);
        mac.finalize().into_bytes().to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant() -> Grant {
        Grant {
            workspace: "acme".into(),
            key_id: Some("key_1".into()),
            role: Role::Member,
        }
    }

    #[test]
    fn a_token_opens_its_execution_until_it_expires() {
        let tokens = StreamTokens::new().unwrap();
        let token = tokens.issue(&grant(), "exec_1", 1_000);
        assert_eq!(tokens.verify(&token, "exec_1", 999), Ok(grant()));
        assert!(tokens.verify(&token, "exec_1", 1_000).is_err(), "expired");
        assert!(tokens.verify(&token, "exec_2", 999).is_err(), "another execution");
        let other = StreamTokens::new().unwrap();
        assert!(other.verify(&token, "exec_1", 999).is_err(), "another host's key");
    }

    #[test]
    fn a_changed_token_is_refused() {
        let tokens = StreamTokens::new().unwrap();
        let token = tokens.issue(&grant(), "exec_1", 1_000);
        let (payload, signature) = token.strip_prefix(PREFIX).unwrap().split_once('.').unwrap();
        let forged = String::from_utf8(URL_SAFE_NO_PAD.decode(payload).unwrap())
            .unwrap()
            .replace("acme", "evil");
        let forged = format!("{PREFIX}{}.{signature}", URL_SAFE_NO_PAD.encode(forged));
        assert!(tokens.verify(&forged, "exec_1", 999).is_err());
        assert!(tokens.verify("wdn_key_1_secret", "exec_1", 999).is_err());
        assert!(tokens.verify("wst_", "exec_1", 999).is_err());
    }
}
