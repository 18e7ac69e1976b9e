//! This host among the others on one database: its id (kept in the data dir,
//! so that a restart is the same host), its lease (renewed by a heartbeat),
//! and the unfinished executions it may take: its own, and those of hosts
//! whose lease ran out. Every execution row names the host that last wrote
//! it (`owner`). One host at a time leads (its own lease on the row of
//! `lead`).

use std::path::Path;

use anyhow::Context;

use super::read::{EXECUTION_COLUMNS, executions_from_rows};
use super::sql::Reader;
use crate::record::Execution;

/// This host's id: the one in `<data_dir>/host-id`, made on the first start.
pub fn identity(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join("host-id");
    match std::fs::read_to_string(&path) {
        Ok(id) if id.trim().starts_with("host_") => return Ok(id.trim().to_owned()),
        Ok(_) => anyhow::bail!("{} does not hold a host id", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    }
    std::fs::create_dir_all(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    let id = crate::ids::host();
    crate::files::write_atomically(&path, id.as_bytes())?;
    Ok(id)
}

/// Now, in Unix ms, by the database's clock: every host compares leases
/// against the same clock, whatever its own says.
const NOW: &str = "(extract(epoch from clock_timestamp()) * 1000)::BIGINT";

/// Whether the executions row `e` is free for host `$1` to take: its own,
/// nobody's, or a host's whose lease ran out.
pub fn free(e: &str) -> String {
    format!("({e}.owner IS NULL OR {e}.owner = $1 OR {})", lapsed(e))
}

/// Whether the host that holds the executions row `e` let its lease run out.
pub(super) fn lapsed(e: &str) -> String {
    format!("NOT EXISTS (SELECT 1 FROM hosts h WHERE h.id = {e}.owner AND h.expires_at >= {NOW})")
}

/// Renews (or takes) this host's lease for `lease_ms`; whether it had run
/// out meanwhile (other hosts may have taken this host's executions).
pub async fn heartbeat(c: &Reader, host: &str, lease_ms: i64) -> anyhow::Result<bool> {
    let row = c
        .query_one(
            &format!(
                "WITH before AS (SELECT expires_at FROM hosts WHERE id = $1)
                 INSERT INTO hosts (id, started_at, heartbeat_at, expires_at) VALUES ($1, {NOW}, {NOW}, {NOW} + $2)
                 ON CONFLICT (id) DO UPDATE SET heartbeat_at = EXCLUDED.heartbeat_at, expires_at = EXCLUDED.expires_at
                 RETURNING coalesce((SELECT expires_at FROM before) < heartbeat_at, false)"
            ),
            &[&host, &lease_ms],
        )
        .await?;
    Ok(row.try_get(0)?)
}

/// Renews this host's lead, or takes it when nobody holds one: whether it
/// leads now (for `lease_ms`).
pub async fn lead(c: &Reader, host: &str, lease_ms: i64) -> anyhow::Result<bool> {
    let held = c
        .query_opt(
            &format!(
                "INSERT INTO lead (duty, host, expires_at) VALUES ('lead', $1, {NOW} + $2)
                 ON CONFLICT (duty) DO UPDATE SET host = EXCLUDED.host, expires_at = EXCLUDED.expires_at
                 WHERE lead.host = EXCLUDED.host OR lead.expires_at < {NOW}
                 RETURNING host"
            ),
            &[&host, &lease_ms],
        )
        .await?;
    Ok(held.is_some())
}

/// Gives the lead up (a host shutting down): another host leads at its next
/// heartbeat.
pub async fn resign(c: &Reader, host: &str) -> anyhow::Result<()> {
    c.query("DELETE FROM lead WHERE host = $1", &[&host]).await?;
    Ok(())
}

/// Whether another host whose lease runs holds the execution.
pub async fn held_elsewhere(c: &Reader, host: &str, id: &str) -> anyhow::Result<bool> {
    let sql = format!(
        "SELECT EXISTS (SELECT 1 FROM executions e WHERE e.id = $2 AND NOT {})",
        free("e")
    );
    Ok(c.query_one(&sql, &[&host, &id]).await?.try_get(0)?)
}

/// This host's executions marked `cancel_requested` (by any host).
pub async fn cancels_asked(c: &Reader, host: &str) -> anyhow::Result<Vec<String>> {
    let rows = c
        .query(
            "SELECT id FROM executions WHERE owner = $1 AND status = 'cancel_requested' ORDER BY id",
            &[&host],
        )
        .await?;
    rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
}

/// Statuses of executions not finished that a host holds in memory (a run
/// awaiting approval is its host's while that host keeps it in memory, then
/// nobody's until a host takes it to resume it: see `take_waiting`).
const UNFINISHED: &str = "('pending', 'queued', 'running', 'cancel_requested')";

/// Unfinished executions this host may take, now its own: `mine` includes
/// those it held itself (what a restart recovers); always those whose host's
/// lease ran out. Those merely waiting go back to the shared queue instead,
/// for whichever host has room (a conversation's turn is taken: it waits for
/// the turns before it). Oldest first.
pub async fn take(c: &Reader, host: &str, mine: bool) -> anyhow::Result<Vec<Execution>> {
    // (A row nobody holds that should be held, from before hosts were
    // recorded, or marked for a cancel as it went back to the queue, is
    // taken too.)
    let whose = format!(
        "((e.owner IS NOT NULL AND (($2 AND e.owner = $1) OR ({lapsed} AND e.owner <> $1)))
          OR (e.owner IS NULL AND (e.status IN ('running', 'cancel_requested') OR e.conversation_id IS NOT NULL)))",
        lapsed = lapsed("e")
    );
    c.query(
        &format!(
            "UPDATE executions e SET owner = NULL
             WHERE e.status IN ('pending', 'queued') AND e.conversation_id IS NULL AND {whose}"
        ),
        &[&host, &mine],
    )
    .await?;
    // A turn still waiting is placed again, and claimed again once ready.
    let sql = format!(
        "UPDATE executions e SET owner = $1, turn_claimed = e.turn_claimed AND e.status NOT IN ('pending', 'queued')
         WHERE e.status IN {UNFINISHED} AND {whose}
         RETURNING {EXECUTION_COLUMNS}"
    );
    let rows = c.query(&sql, &[&host, &mine]).await?;
    let mut taken = executions_from_rows(&rows)?;
    taken.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(taken)
}
