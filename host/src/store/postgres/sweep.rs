//! The retention sweep on Postgres: finished executions past retention with
//! everything of theirs, ended deploys, and the blobs nothing refers to any
//! more (in the same transaction: blobs live in the database too).

use super::deploys;
use super::durable;
use super::sql::Tx;

/// Most executions one sweep deletes (the next sweep takes the rest).
const SWEEP_BATCH: i64 = 5000;

/// Deletes finished executions that completed before `before`, with
/// everything of theirs, and the blobs nothing refers to any more (in the
/// same transaction: blobs live in the database too).
pub fn sweep(tx: &mut Tx<'_>, before: i64) -> anyhow::Result<()> {
    let ids = tx
        .query(
            "SELECT id FROM executions WHERE completed_at < $1
             AND status IN ('completed', 'failed', 'cancelled', 'rejected') LIMIT $2",
            &[&before, &SWEEP_BATCH],
        )?
        .iter()
        .map(|r| r.try_get::<_, String>(0))
        .collect::<Result<Vec<_>, _>>()?;
    let failed = deploys::sweep(tx, before)?;
    if !failed.is_empty() {
        drop_unused_blobs(tx, &failed)?;
    }
    if ids.is_empty() {
        return Ok(());
    }
    let hashes = tx
        .query(
            "SELECT DISTINCT sha256 FROM artifacts WHERE execution_id = ANY($1) ORDER BY sha256",
            &[&ids],
        )?
        .iter()
        .map(|r| r.try_get::<_, String>(0))
        .collect::<Result<Vec<_>, _>>()?;
    for statement in [
        "DELETE FROM logs WHERE execution_id = ANY($1)",
        "DELETE FROM steps WHERE execution_id = ANY($1)",
        "DELETE FROM event_chunks WHERE execution_id = ANY($1)",
        "DELETE FROM artifacts WHERE execution_id = ANY($1)",
        "DELETE FROM executions WHERE id = ANY($1)",
    ]
    .into_iter()
    .chain(durable::SWEEP)
    {
        tx.execute(statement, &[&ids])?;
    }
    if !hashes.is_empty() {
        drop_unused_blobs(tx, &hashes)?;
    }
    tracing::info!(executions = ids.len(), "retention sweep deleted finished executions");
    Ok(())
}

/// Deletes those of `hashes`' blobs that nothing refers to any more: no
/// artifact, no version, no deploy still compiling.
fn drop_unused_blobs(tx: &mut Tx<'_>, hashes: &[String]) -> anyhow::Result<()> {
    tx.execute(
        "DELETE FROM blobs WHERE hash = ANY($1)
           AND NOT EXISTS (SELECT 1 FROM artifacts WHERE sha256 = blobs.hash)
           AND NOT EXISTS (SELECT 1 FROM agent_versions WHERE component_hash = blobs.hash)
           AND NOT EXISTS (SELECT 1 FROM deploys WHERE component_hash = blobs.hash AND status <> 'failed')",
        &[&hashes],
    )
}
