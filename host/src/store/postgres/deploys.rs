//! Deploys made in the background, on Postgres: the job row as it starts and
//! ends (a deployed one with its version, in the version's transaction, only
//! while the job is still this host's), the reads of one job and of those a
//! host takes (its own after a restart, those of hosts whose lease ran out),
//! and the retention sweep's share.

use super::hosts::lapsed;
use super::read::{VERSION_COLUMNS, agent_from_row, version_from_row};
use super::sql::{self, Reader, Row, Tx};
use crate::record::{DeployJob, Deployed, JobError, JobStatus};

const COLUMNS: &str = "id, workspace, agent_name, status, component_hash, component_bytes, manifest, created_at,
    ended_at, version_id, warnings, error_code, error_message";

/// Creates the job's row (held by `host`), or stores how it failed (only
/// while `host` still holds it).
pub fn save(tx: &mut Tx<'_>, host: &str, job: &DeployJob) -> anyhow::Result<()> {
    let warnings = job
        .deployed
        .as_ref()
        .map(|d| serde_json::to_string(&d.warnings))
        .transpose()?;
    tx.execute(
        &format!(
            "INSERT INTO deploys ({COLUMNS}, owner) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
             ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, ended_at = EXCLUDED.ended_at,
                version_id = EXCLUDED.version_id, warnings = EXCLUDED.warnings,
                error_code = EXCLUDED.error_code, error_message = EXCLUDED.error_message
             WHERE deploys.owner = EXCLUDED.owner AND deploys.status = 'compiling'"
        ),
        &[
            &job.id,
            &job.workspace,
            &job.agent_name,
            &job.status.as_str(),
            &job.component_hash,
            &sql::int(job.component_bytes),
            &job.manifest,
            &job.created_at,
            &job.ended_at,
            &job.deployed.as_ref().map(|d| &d.version.id),
            &warnings,
            &job.error.as_ref().map(|e| &e.code),
            &job.error.as_ref().map(|e| &e.message),
            &host,
        ],
    )
}

/// Ends a job `deployed`, if `host` still holds it: whether it did (else
/// another host took it over, and its version is not this host's to add).
pub fn end_deployed(tx: &mut Tx<'_>, host: &str, job: &DeployJob) -> anyhow::Result<bool> {
    let Some(deployed) = &job.deployed else {
        anyhow::bail!("deploy {} ends deployed without a version", job.id);
    };
    let warnings = serde_json::to_string(&deployed.warnings)?;
    let ended = tx.query_opt(
        "UPDATE deploys SET status = 'deployed', ended_at = $3, version_id = $4, warnings = $5
         WHERE id = $1 AND owner = $2 AND status = 'compiling' RETURNING id",
        &[&job.id, &host, &job.ended_at, &deployed.version.id, &warnings],
    )?;
    Ok(ended.is_some())
}

/// One job, with the agent and version it deployed.
pub async fn get(c: &Reader, id: &str) -> anyhow::Result<Option<DeployJob>> {
    let Some(row) = c
        .query_opt(&format!("SELECT {COLUMNS} FROM deploys WHERE id = $1"), &[&id])
        .await?
    else {
        return Ok(None);
    };
    let (mut job, deployed) = from_row(&row)?;
    if let Some((version_id, warnings)) = deployed {
        let version = c
            .query_opt(
                &format!("SELECT {VERSION_COLUMNS} FROM agent_versions WHERE id = $1"),
                &[&version_id],
            )
            .await?;
        if let Some(version) = version.as_ref().map(version_from_row).transpose()? {
            let agent = c
                .query_opt(
                    "SELECT id, name, description, latest_version, created_at, updated_at, workspace
                     FROM agents WHERE id = $1",
                    &[&version.agent_id],
                )
                .await?;
            if let Some(agent) = agent.as_ref().map(agent_from_row).transpose()? {
                job.deployed = Some(Deployed {
                    agent,
                    version,
                    warnings,
                });
            }
        }
    }
    Ok(Some(job))
}

/// Jobs still compiling that `host` takes, now its own, oldest first: with
/// `mine`, those it held itself (or nobody did); always those of hosts whose
/// lease ran out.
pub async fn take(c: &Reader, host: &str, mine: bool) -> anyhow::Result<Vec<DeployJob>> {
    let rows = c
        .query(
            &format!(
                "UPDATE deploys d SET owner = $1
                 WHERE d.status = 'compiling'
                   AND (($2 AND (d.owner IS NULL OR d.owner = $1)) OR (d.owner <> $1 AND {lapsed}))
                 RETURNING {COLUMNS}",
                lapsed = lapsed("d")
            ),
            &[&host, &mine],
        )
        .await?;
    let mut jobs = rows
        .iter()
        .map(|r| from_row(r).map(|(job, _)| job))
        .collect::<anyhow::Result<Vec<_>>>()?;
    jobs.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    Ok(jobs)
}

/// Deletes jobs that ended before `before`; the components of those that
/// failed, whose blobs may now be unused.
pub fn sweep(tx: &mut Tx<'_>, before: i64) -> anyhow::Result<Vec<String>> {
    let failed = tx
        .query(
            "DELETE FROM deploys WHERE ended_at < $1 RETURNING component_hash, status",
            &[&before],
        )?
        .iter()
        .filter(|r| r.try_get::<_, &str>(1).is_ok_and(|s| s == "failed"))
        .map(|r| r.try_get::<_, String>(0))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(failed)
}

/// A job row, and (deployed) its version's id and the warnings.
type Stored = (DeployJob, Option<(String, Vec<String>)>);

fn from_row(r: &Row) -> anyhow::Result<Stored> {
    let status: &str = r.try_get(3)?;
    let created_at: i64 = r.try_get(7)?;
    let ended_at: Option<i64> = r.try_get(8)?;
    let version_id: Option<String> = r.try_get(9)?;
    let warnings: Option<&str> = r.try_get(10)?;
    let error_code: Option<String> = r.try_get(11)?;
    let job = DeployJob {
        id: r.try_get(0)?,
        workspace: r.try_get(1)?,
        agent_name: r.try_get(2)?,
        status: JobStatus::parse(status).ok_or_else(|| anyhow::anyhow!("a deploy with status {status:?}"))?,
        component_hash: r.try_get(4)?,
        component_bytes: sql::u64_at(r, 5)?,
        manifest: r.try_get(6)?,
        created_at,
        ended_at,
        elapsed_ms: ended_at.map_or(0, |end| end - created_at),
        deployed: None,
        error: match error_code {
            Some(code) => Some(JobError {
                code,
                message: r.try_get::<_, Option<String>>(12)?.unwrap_or_default(),
            }),
            None => None,
        },
    };
    let deployed = match version_id {
        Some(id) => Some((id, serde_json::from_str(warnings.unwrap_or("[]"))?)),
        None => None,
    };
    Ok((job, deployed))
}
