//! An agent's activity summary on Postgres: a few aggregate reads over its
//! executions of a period (by the `executions_by_agent` index).

use super::sql::{self, Reader};
use crate::record::{AgentSummary, ErrorCount, LastRun, Status, Usage};

/// Most error codes listed.
const TOP_ERRORS: i64 = 5;

pub async fn summary(c: &Reader, agent_id: &str, since: i64) -> anyhow::Result<AgentSummary> {
    let mut s = AgentSummary {
        agent_id: agent_id.to_owned(),
        since,
        ..AgentSummary::default()
    };
    let rows = c
        .query(
            "SELECT status, count(*) FROM executions WHERE agent_id = $1 AND created_at >= $2 GROUP BY status",
            &[&agent_id, &since],
        )
        .await?;
    for row in &rows {
        let status: String = row.try_get(0)?;
        let n = sql::u64_at(row, 1)?;
        s.executions += n;
        s.by_status.insert(status, n);
    }
    // Durations by nearest rank: the smallest with at least that share of
    // them at or below it (`percentile_disc`; a run that has not both started
    // and ended has none, and is left out).
    let row = c
        .query_one(
            "SELECT coalesce(sum(prompt_tokens), 0)::BIGINT, coalesce(sum(completion_tokens), 0)::BIGINT,
                coalesce(sum(total_tokens), 0)::BIGINT, coalesce(sum(cache_read_tokens), 0)::BIGINT,
                coalesce(sum(cache_write_tokens), 0)::BIGINT, coalesce(sum(cost_usd), 0)::DOUBLE PRECISION,
                percentile_disc(0.5) WITHIN GROUP (ORDER BY completed_at - started_at)
                    FILTER (WHERE started_at IS NOT NULL AND completed_at IS NOT NULL),
                percentile_disc(0.95) WITHIN GROUP (ORDER BY completed_at - started_at)
                    FILTER (WHERE started_at IS NOT NULL AND completed_at IS NOT NULL)
             FROM executions WHERE agent_id = $1 AND created_at >= $2",
            &[&agent_id, &since],
        )
        .await?;
    s.token_usage = Usage {
        prompt: sql::u64_at(&row, 0)?,
        completion: sql::u64_at(&row, 1)?,
        total: sql::u64_at(&row, 2)?,
        cache_read: sql::u64_at(&row, 3)?,
        cache_write: sql::u64_at(&row, 4)?,
    };
    s.cost_usd = row.try_get(5)?;
    s.duration_ms.p50 = row.try_get(6)?;
    s.duration_ms.p95 = row.try_get(7)?;
    let rows = c
        .query(
            "SELECT error_code, count(*) AS n FROM executions WHERE agent_id = $1 AND created_at >= $2
               AND error_code IS NOT NULL GROUP BY error_code ORDER BY n DESC, error_code LIMIT $3",
            &[&agent_id, &since, &TOP_ERRORS],
        )
        .await?;
    for row in &rows {
        s.top_errors.push(ErrorCount {
            code: row.try_get(0)?,
            count: sql::u64_at(row, 1)?,
        });
    }
    let row = c
        .query_opt(
            "SELECT id, status, created_at FROM executions WHERE agent_id = $1 ORDER BY id DESC LIMIT 1",
            &[&agent_id],
        )
        .await?;
    s.last_run = match row {
        Some(row) => Some(LastRun {
            id: row.try_get(0)?,
            status: Status::parse(row.try_get::<_, &str>(1)?).unwrap_or(Status::Failed),
            created_at: row.try_get(2)?,
        }),
        None => None,
    };
    Ok(s)
}
