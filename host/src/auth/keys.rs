//! API keys: `key_…` ids, a workspace, a role, and the SHA-256 digest of the
//! secret (the secret itself is shown once, at creation, inside the token
//! `wdn_<id>_<secret>`). Making tokens, reading them back, comparing digests.

use crate::record::{ApiKey, Role};
use crate::{ids, time};

/// Longest workspace name.
const MAX_WORKSPACE_LEN: usize = 64;
/// Longest key name.
const MAX_NAME_LEN: usize = 100;
const TOKEN_PREFIX: &str = "wdn_";
const ID_PREFIX: &str = "key_";
/// Hex digits of a secret (256 bits).
const SECRET_LEN: usize = 64;

/// A key just made: the record, its digest, and the token to hand out once.
pub struct NewKey {
    pub key: ApiKey,
    pub secret_sha256: String,
    pub token: String,
}

/// Checks a workspace name: 1 to 64 of `A-Z a-z 0-9 _ . -`.
pub fn check_workspace(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_WORKSPACE_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "workspace: {name:?} must be 1 to {MAX_WORKSPACE_LEN} letters, digits, `_`, `.` or `-`"
        ))
    }
}

/// Makes a key (not yet stored).
pub fn generate(workspace: &str, name: &str, role: Role) -> Result<NewKey, String> {
    check_workspace(workspace)?;
    if name.is_empty() || name.chars().count() > MAX_NAME_LEN || name.chars().any(char::is_control) {
        return Err(format!(
            "name: must be 1 to {MAX_NAME_LEN} characters without control characters"
        ));
    }
    let mut bytes = [0u8; SECRET_LEN / 2];
    getrandom::fill(&mut bytes).map_err(|e| format!("no randomness for a key secret: {e}"))?;
    let secret = crate::digest::hex(&bytes);
    let id = ids::api_key();
    let suffix = id.strip_prefix(ID_PREFIX).unwrap_or(&id);
    Ok(NewKey {
        token: format!("{TOKEN_PREFIX}{suffix}_{secret}"),
        secret_sha256: digest(&secret),
        key: ApiKey {
            id,
            workspace: workspace.to_owned(),
            name: name.to_owned(),
            role,
            created_at: time::now_ms(),
            revoked_at: None,
        },
    })
}

/// Splits a token into its key id and secret; `None` when it is not shaped like one.
pub fn parse_token(token: &str) -> Option<(String, &str)> {
    let rest = token.strip_prefix(TOKEN_PREFIX)?;
    let (suffix, secret) = rest.split_once('_')?;
    let shaped = suffix.len() == 26
        && suffix.bytes().all(|b| b.is_ascii_alphanumeric())
        && secret.len() == SECRET_LEN
        && secret.bytes().all(|b| b.is_ascii_hexdigit());
    shaped.then(|| (format!("{ID_PREFIX}{suffix}"), secret))
}

/// The stored form of a secret.
pub fn digest(secret: &str) -> String {
    crate::digest::sha256_hex(secret.as_bytes())
}

/// Compares two digests in time independent of where they differ.
pub fn same_digest(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_are_checked() {
        let new = generate("acme", "ci", Role::Member).unwrap();
        let (id, secret) = parse_token(&new.token).unwrap();
        assert_eq!(id, new.key.id);
        assert!(same_digest(&digest(secret), &new.secret_sha256));
        assert!(!same_digest(&digest("nope"), &new.secret_sha256));
        assert!(parse_token("wdn_short_abc").is_none());
        assert!(parse_token(&new.token.replace("wdn_", "xyz_")).is_none());
        assert!(generate("bad/ws", "x", Role::Admin).is_err());
        assert!(generate("ok", "", Role::Admin).is_err());
    }
}
