//! An agent's activity summary on SQLite: a few aggregate reads over its
//! executions of a period (by the `executions_by_agent` index).

use rusqlite::{Connection, OptionalExtension, params};

use crate::record::{AgentSummary, ErrorCount, LastRun, Status, Usage};

/// Most error codes listed.
const TOP_ERRORS: i64 = 5;

pub fn summary(conn: &Connection, agent_id: &str, since: i64) -> anyhow::Result<AgentSummary> {
    let mut s = AgentSummary {
        agent_id: agent_id.to_owned(),
        since,
        ..AgentSummary::default()
    };
    let mut stmt = conn.prepare_cached(
        "SELECT status, count(*) FROM executions WHERE agent_id = ?1 AND created_at >= ?2 GROUP BY status",
    )?;
    for row in stmt.query_map(params![agent_id, since], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
    })? {
        let (status, n) = row?;
        s.executions += n as u64;
        s.by_status.insert(status, n as u64);
    }
    let (prompt, completion, total, cache_read, cache_write, cost): (i64, i64, i64, i64, i64, f64) = conn
        .prepare_cached(
            "SELECT coalesce(sum(prompt_tokens), 0), coalesce(sum(completion_tokens), 0),
                coalesce(sum(total_tokens), 0), coalesce(sum(cache_read_tokens), 0),
                coalesce(sum(cache_write_tokens), 0), coalesce(sum(cost_usd), 0.0)
             FROM executions WHERE agent_id = ?1 AND created_at >= ?2",
        )?
        .query_row(params![agent_id, since], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
        })?;
    s.token_usage = Usage {
        prompt: prompt.max(0) as u64,
        completion: completion.max(0) as u64,
        total: total.max(0) as u64,
        cache_read: cache_read.max(0) as u64,
        cache_write: cache_write.max(0) as u64,
    };
    s.cost_usd = cost;
    let ended: i64 = conn
        .prepare_cached(
            "SELECT count(*) FROM executions WHERE agent_id = ?1 AND created_at >= ?2
               AND started_at IS NOT NULL AND completed_at IS NOT NULL",
        )?
        .query_row(params![agent_id, since], |r| r.get(0))?;
    let nth = |q: f64| -> anyhow::Result<Option<i64>> {
        if ended == 0 {
            return Ok(None);
        }
        // Nearest rank: the smallest duration with at least q of them at or below it.
        let offset = ((ended as f64 * q).ceil() as i64 - 1).clamp(0, ended - 1);
        Ok(conn
            .prepare_cached(
                "SELECT completed_at - started_at AS d FROM executions WHERE agent_id = ?1 AND created_at >= ?2
                   AND started_at IS NOT NULL AND completed_at IS NOT NULL ORDER BY d LIMIT 1 OFFSET ?3",
            )?
            .query_row(params![agent_id, since, offset], |r| r.get(0))
            .optional()?)
    };
    s.duration_ms.p50 = nth(0.5)?;
    s.duration_ms.p95 = nth(0.95)?;
    let mut stmt = conn.prepare_cached(
        "SELECT error_code, count(*) AS n FROM executions WHERE agent_id = ?1 AND created_at >= ?2
           AND error_code IS NOT NULL GROUP BY error_code ORDER BY n DESC, error_code LIMIT ?3",
    )?;
    for row in stmt.query_map(params![agent_id, since, TOP_ERRORS], |r| {
        Ok(ErrorCount {
            code: r.get(0)?,
            count: r.get::<_, i64>(1)?.max(0) as u64,
        })
    })? {
        s.top_errors.push(row?);
    }
    s.last_run = conn
        .prepare_cached("SELECT id, status, created_at FROM executions WHERE agent_id = ?1 ORDER BY id DESC LIMIT 1")?
        .query_row([agent_id], |r| {
            Ok(LastRun {
                id: r.get(0)?,
                status: Status::parse(&r.get::<_, String>(1)?).unwrap_or(Status::Failed),
                created_at: r.get(2)?,
            })
        })
        .optional()?;
    Ok(s)
}
