//! API keys as stored: `key_…` ids, a workspace, a role, and the SHA-256 digest of
//! the secret (the secret itself is shown once, at creation, inside the token
//! `wdn_<id>_<secret>`). Plain functions on a connection, so the server's writer
//! and the operator's `warden keys` commands share them.

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{ids, time};

/// Longest workspace name.
const MAX_WORKSPACE_LEN: usize = 64;
/// Longest key name.
const MAX_NAME_LEN: usize = 100;
const TOKEN_PREFIX: &str = "wdn_";
const ID_PREFIX: &str = "key_";
/// Hex digits of a secret (256 bits).
const SECRET_LEN: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything a member can, and manages the workspace's keys.
    Admin,
    /// Deploys and runs agents, reads executions.
    Member,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "admin" => Some(Role::Admin),
            "member" => Some(Role::Member),
            _ => None,
        }
    }
}

/// A key as listed (never with its secret).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ApiKey {
    pub id: String,
    pub workspace: String,
    pub name: String,
    pub role: Role,
    #[serde(serialize_with = "time::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
    #[serde(serialize_with = "time::serialize_opt")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub revoked_at: Option<i64>,
}

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
    let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
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
    Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Compares two digests in time independent of where they differ.
pub fn same_digest(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn from_row(r: &Row<'_>) -> rusqlite::Result<(ApiKey, String)> {
    let role: String = r.get(3)?;
    Ok((
        ApiKey {
            id: r.get(0)?,
            workspace: r.get(1)?,
            name: r.get(2)?,
            role: Role::parse(&role).unwrap_or(Role::Member),
            created_at: r.get(5)?,
            revoked_at: r.get(6)?,
        },
        r.get(4)?,
    ))
}

const COLUMNS: &str = "id, workspace, name, role, secret_sha256, created_at, revoked_at";

pub fn insert(conn: &Connection, k: &ApiKey, secret_sha256: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO api_keys (id, workspace, name, role, secret_sha256, created_at, revoked_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL)",
    )?
    .execute(params![
        k.id,
        k.workspace,
        k.name,
        k.role.as_str(),
        secret_sha256,
        k.created_at
    ])?;
    Ok(())
}

/// A key with its secret's digest.
pub fn find(conn: &Connection, id: &str) -> rusqlite::Result<Option<(ApiKey, String)>> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM api_keys WHERE id = ?1"))?
        .query_row([id], from_row)
        .optional()
}

/// Keys of one workspace, or of all, oldest first.
pub fn list(conn: &Connection, workspace: Option<&str>) -> rusqlite::Result<Vec<ApiKey>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM api_keys WHERE ?1 IS NULL OR workspace = ?1 ORDER BY id"
    ))?;
    stmt.query_map([workspace], |r| from_row(r).map(|(k, _)| k))?.collect()
}

/// Revokes a key (of `workspace`, when given); the key as it is now, or `None`
/// when there is no such key there. Revoking twice keeps the first time.
pub fn revoke(conn: &Connection, workspace: Option<&str>, id: &str, now: i64) -> rusqlite::Result<Option<ApiKey>> {
    conn.prepare_cached(
        "UPDATE api_keys SET revoked_at = coalesce(revoked_at, ?3) WHERE id = ?1 AND (?2 IS NULL OR workspace = ?2)",
    )?
    .execute(params![id, workspace, now])?;
    Ok(find(conn, id)?
        .map(|(k, _)| k)
        .filter(|k| workspace.is_none_or(|w| k.workspace == w)))
}

/// Whether any key is active (not revoked).
pub fn any_active(conn: &Connection) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM api_keys WHERE revoked_at IS NULL)",
        [],
        |r| r.get(0),
    )
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
