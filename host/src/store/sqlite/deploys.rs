//! Deploys made in the background, on SQLite: the job row as it starts and
//! ends (a deployed one with its version, in the version's transaction), the
//! reads of one job and of those a restart resumes, and the retention sweep's
//! share.

use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};

use super::read::{VERSION_COLUMNS, agent_from_row, version_from_row};
use crate::record::{DeployJob, Deployed, JobError, JobStatus};

const COLUMNS: &str = "id, workspace, agent_name, status, component_hash, component_bytes, manifest, created_at,
    ended_at, version_id, warnings, error_code, error_message";

/// Creates the job's row, or stores how it ended (once: an ended job stays
/// as it ended).
pub fn save(tx: &Transaction<'_>, job: &DeployJob) -> anyhow::Result<()> {
    let deployed = job.deployed.as_ref();
    tx.prepare_cached(&format!(
        "INSERT INTO deploys ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
         ON CONFLICT (id) DO UPDATE SET status = excluded.status, ended_at = excluded.ended_at,
            version_id = excluded.version_id, warnings = excluded.warnings,
            error_code = excluded.error_code, error_message = excluded.error_message
         WHERE deploys.status = 'compiling'"
    ))?
    .execute(params![
        job.id,
        job.workspace,
        job.agent_name,
        job.status.as_str(),
        job.component_hash,
        job.component_bytes as i64,
        job.manifest,
        job.created_at,
        job.ended_at,
        deployed.map(|d| &d.version.id),
        deployed.map(|d| serde_json::to_string(&d.warnings)).transpose()?,
        job.error.as_ref().map(|e| &e.code),
        job.error.as_ref().map(|e| &e.message),
    ])?;
    Ok(())
}

/// One job, with the agent and version it deployed.
pub fn get(conn: &Connection, id: &str) -> anyhow::Result<Option<DeployJob>> {
    let found = conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM deploys WHERE id = ?1"))?
        .query_row([id], |r| Ok(from_row(r)))
        .optional()?;
    let Some(found) = found else { return Ok(None) };
    let (mut job, deployed) = found?;
    if let Some((version_id, warnings)) = deployed {
        let version = conn
            .prepare_cached(&format!("SELECT {VERSION_COLUMNS} FROM agent_versions WHERE id = ?1"))?
            .query_row([&version_id], |r| Ok(version_from_row(r)))
            .optional()?
            .transpose()?;
        if let Some(version) = version {
            let agent = conn
                .prepare_cached(
                    "SELECT id, name, description, latest_version, created_at, updated_at, workspace
                     FROM agents WHERE id = ?1",
                )?
                .query_row([&version.agent_id], agent_from_row)
                .optional()?;
            job.deployed = agent.map(|agent| Deployed {
                agent,
                version,
                warnings,
            });
        }
    }
    Ok(Some(job))
}

/// Jobs still compiling, oldest first (one host: all of them are its own).
pub fn compiling(conn: &Connection) -> anyhow::Result<Vec<DeployJob>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM deploys WHERE status = 'compiling' ORDER BY created_at, id"
    ))?;
    let mut rows = stmt.query([])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(from_row(row)?.0);
    }
    Ok(out)
}

/// Deletes jobs that ended before `before`; the components of those that
/// failed, whose blobs may now be unused.
pub fn sweep(tx: &Transaction<'_>, before: i64) -> anyhow::Result<Vec<String>> {
    let failed = tx
        .prepare_cached("SELECT DISTINCT component_hash FROM deploys WHERE ended_at < ?1 AND status = 'failed'")?
        .query_map([before], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    tx.prepare_cached("DELETE FROM deploys WHERE ended_at < ?1")?
        .execute([before])?;
    Ok(failed)
}

/// A job row, and (deployed) its version's id and the warnings.
type Stored = (DeployJob, Option<(String, Vec<String>)>);

fn from_row(r: &Row<'_>) -> anyhow::Result<Stored> {
    let status: String = r.get(3)?;
    let created_at: i64 = r.get(7)?;
    let ended_at: Option<i64> = r.get(8)?;
    let version_id: Option<String> = r.get(9)?;
    let warnings: Option<String> = r.get(10)?;
    let error_code: Option<String> = r.get(11)?;
    let job = DeployJob {
        id: r.get(0)?,
        workspace: r.get(1)?,
        agent_name: r.get(2)?,
        status: JobStatus::parse(&status).ok_or_else(|| anyhow::anyhow!("a deploy with status {status:?}"))?,
        component_hash: r.get(4)?,
        component_bytes: r.get::<_, i64>(5)?.max(0) as u64,
        manifest: r.get(6)?,
        created_at,
        ended_at,
        elapsed_ms: ended_at.map_or(0, |end| end - created_at),
        deployed: None,
        error: match error_code {
            Some(code) => Some(JobError {
                code,
                message: r.get::<_, Option<String>>(12)?.unwrap_or_default(),
            }),
            None => None,
        },
    };
    let deployed = match version_id {
        Some(id) => Some((id, serde_json::from_str(warnings.as_deref().unwrap_or("[]"))?)),
        None => None,
    };
    Ok((job, deployed))
}
