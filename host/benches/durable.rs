//! Durable runs: (a) N executions waiting for an approval, unloaded: the
//! host's resident memory above idle (nothing per waiting run is meant to stay
//! in memory), then every request approved: the time until all complete;
//! (b) the cost of resuming a run whose journal holds 100 host calls: the time
//! from the decision to the completed record, against a run that journaled
//! none (the difference is the replay).
//!
//! `cargo bench -p warden-host --bench durable` (env BENCH_WAITING, default
//! 100000; BENCH_RESUMES, default 200). Prints a `RESULT {json}` line per part.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::value::RawValue;

use warden_host::app::App;
use warden_host::auth::DEFAULT_WORKSPACE;
use warden_host::config::Config;
use warden_host::executions::{Ask, Decider, NewExecution, Target};
use warden_host::manifest::Manifest;
use warden_host::record::{ApprovalStatus, Status, Trigger};
use warden_host::store::ApprovalFilter;

warden_host::use_mimalloc!();

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

/// Executions waiting in the queue at most while the bench submits.
const MAX_QUEUED: usize = 2000;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

async fn open(n: usize) -> anyhow::Result<(Arc<App>, tempfile::TempDir, String)> {
    let tmp = tempfile::tempdir()?;
    let mut config = Config {
        data_dir: tmp.path().to_path_buf(),
        deploy_examples: false,
        max_queued_executions: n + 1000,
        ..Config::default()
    };
    config.durability.approval_grace_ms = 10;
    config.tools.max_tool_calls = 128;
    config.durability.expiry_sweep_ms = 60_000;
    let app = App::open(config).await?;
    let path = warden_host::bundled::agent_path("ledger").ok_or_else(|| anyhow::anyhow!("ledger not built"))?;
    let manifest = Manifest::from_json(r#"{"name":"ledger","tools":["kv"],"max_concurrency":256}"#)
        .map_err(|e| anyhow::anyhow!(e))?;
    app.deployer
        .deploy(DEFAULT_WORKSPACE, manifest, Bytes::from(std::fs::read(path)?))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let entry = app
        .registry
        .get(DEFAULT_WORKSPACE, "ledger")
        .ok_or_else(|| anyhow::anyhow!("no ledger"))?;
    let version = entry
        .latest()
        .ok_or_else(|| anyhow::anyhow!("no version"))?
        .meta
        .id
        .clone();
    Ok((app, tmp, version))
}

async fn submit(app: &Arc<App>, version: &str, input: &str) -> anyhow::Result<String> {
    let new = NewExecution::new(
        Target::Version(version.to_owned()),
        RawValue::from_string(input.to_owned())?.into(),
        Trigger::Api,
    );
    Ok(app.executions.submit(new).await?.execution.id)
}

async fn count(app: &App, status: Status) -> anyhow::Result<u64> {
    Ok(app.stores.executions.count(status).await?)
}

/// Waits until `n` executions have `status` (10 minutes at most).
async fn until(app: &App, status: Status, n: usize) -> anyhow::Result<()> {
    let started = Instant::now();
    while count(app, status).await? < n as u64 {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "only {} of {n} executions reached {}",
            count(app, status).await?,
            status.as_str()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

fn admin() -> Decider {
    Decider {
        workspace: DEFAULT_WORKSPACE.into(),
        key_id: None,
        key_name: Some("bench".into()),
        admin: true,
    }
}

fn approve() -> Ask {
    Ask {
        approve: true,
        comment: None,
        data: None,
    }
}

/// Every pending request's id.
async fn pending(app: &App) -> anyhow::Result<Vec<String>> {
    let mut ids = Vec::new();
    let mut after = None;
    loop {
        let (page, more) = app
            .stores
            .approvals
            .list(ApprovalFilter {
                workspace: DEFAULT_WORKSPACE.into(),
                status: Some(ApprovalStatus::Pending),
                after: after.clone(),
                limit: 500,
                ..Default::default()
            })
            .await?;
        after = page.last().map(|a| a.id.clone());
        ids.extend(page.into_iter().map(|a| a.id));
        if !more {
            return Ok(ids);
        }
    }
}

async fn waiting(n: usize) -> anyhow::Result<()> {
    let (app, _tmp, version) = open(n).await?;
    // Warm up: one run through, so the idle figure includes the compiled code.
    submit(&app, &version, r#"{"approve":"warm up"}"#).await?;
    until(&app, Status::AwaitingApproval, 1).await?;
    app.executions
        .decide(&admin(), &pending(&app).await?[0], approve())
        .await?;
    until(&app, Status::Completed, 1).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = rss_mib();
    let started = Instant::now();
    // Submitted by 32 tasks, each waiting for its executions to be accepted.
    let tasks: Vec<_> = (0..32)
        .map(|t| {
            let (app, version) = (Arc::clone(&app), version.clone());
            tokio::spawn(async move {
                for i in (t..n).step_by(32) {
                    // As clients do over time: a queue of at most a few thousand.
                    while app.executions.load().1 > MAX_QUEUED {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    submit(&app, &version, &format!(r#"{{"approve":"pay invoice {i}"}}"#)).await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    until(&app, Status::AwaitingApproval, n).await?;
    while app.executions.load() != (0, 0) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let parked_in = started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let waiting_rss = rss_mib();
    let ids = pending(&app).await?;
    anyhow::ensure!(ids.len() == n, "{} requests pending, not {n}", ids.len());
    let started = Instant::now();
    let ids = Arc::new(std::sync::Mutex::new(ids));
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (app, ids) = (Arc::clone(&app), Arc::clone(&ids));
            tokio::spawn(async move {
                loop {
                    let next = ids.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.pop();
                    let Some(id) = next else { return anyhow::Ok(()) };
                    app.executions.decide(&admin(), &id, approve()).await?;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    let decided_in = started.elapsed();
    until(&app, Status::Completed, n + 1).await?;
    let completed_in = started.elapsed();
    let above = waiting_rss - idle;
    println!(
        "{n} waiting: unloaded in {parked_in:?}; resident {idle:.0} -> {waiting_rss:.0} MiB ({above:.1} MiB above \
         idle, {:.0} bytes a run); all approved in {decided_in:?}, all completed in {completed_in:?} \
         ({:.0} resumes/s)",
        above * 1048576.0 / n as f64,
        n as f64 / completed_in.as_secs_f64()
    );
    println!(
        "RESULT {}",
        serde_json::json!({
            "part": "waiting",
            "runs": n,
            "idle_mib": idle,
            "waiting_mib": waiting_rss,
            "above_idle_mib": above,
            "park_s": parked_in.as_secs_f64(),
            "decide_s": decided_in.as_secs_f64(),
            "complete_s": completed_in.as_secs_f64(),
        })
    );
    app.close().await;
    Ok(())
}

/// Decision → completed record for runs that journaled `calls` kv reads
/// before their request, one at a time; the median in ms.
async fn resume_ms(app: &Arc<App>, version: &str, calls: usize, runs: usize) -> anyhow::Result<(f64, f64)> {
    let mut lat = Vec::with_capacity(runs);
    for _ in 0..runs {
        let id = submit(app, version, &format!(r#"{{"calls":{calls},"approve":"go on?"}}"#)).await?;
        let waiting = Instant::now();
        loop {
            let e = app.stores.executions.get(&id).await?;
            let status = e.map(|e| (e.status, e.error));
            if status.as_ref().is_some_and(|s| s.0 == Status::AwaitingApproval) && app.executions.load() == (0, 0) {
                break;
            }
            anyhow::ensure!(
                waiting.elapsed() < Duration::from_secs(30),
                "{id} never waited unloaded: {status:?}, load {:?}",
                app.executions.load()
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let request = app
            .stores
            .approvals
            .of_execution(&id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("no request"))?;
        let mut done = None;
        let started = Instant::now();
        app.executions.decide(&admin(), &request.id, approve()).await?;
        // The record, once committed (the live watch announces it then).
        while done.is_none() {
            if let Some(mut watch) = app.executions.watch(&id) {
                let ended = watch.wait_for(Option::is_some).await?.clone();
                done = ended.filter(|e| e.status.is_terminal());
            } else if let Some(e) = app.stores.executions.get(&id).await?.filter(|e| e.status.is_terminal()) {
                done = Some(Arc::new(e));
            } else {
                tokio::task::yield_now().await;
            }
        }
        let elapsed = started.elapsed();
        let done = done.ok_or_else(|| anyhow::anyhow!("no end"))?;
        anyhow::ensure!(done.status == Status::Completed, "{id}: {:?}", done.error);
        lat.push(elapsed.as_secs_f64() * 1000.0);
    }
    lat.sort_by(f64::total_cmp);
    Ok((lat[lat.len() / 2], lat[(lat.len() - 1) * 99 / 100]))
}

async fn resumes(runs: usize) -> anyhow::Result<()> {
    let (app, _tmp, version) = open(runs * 2).await?;
    resume_ms(&app, &version, 0, 10).await?;
    let (none_p50, none_p99) = resume_ms(&app, &version, 0, runs).await?;
    let (full_p50, full_p99) = resume_ms(&app, &version, 100, runs).await?;
    println!(
        "resume after a decision: no journaled calls p50 {none_p50:.2} ms p99 {none_p99:.2} ms; 100 journaled calls \
         p50 {full_p50:.2} ms p99 {full_p99:.2} ms: replaying 100 calls costs {:.2} ms",
        full_p50 - none_p50
    );
    println!(
        "RESULT {}",
        serde_json::json!({
            "part": "resume",
            "runs": runs,
            "none_p50_ms": none_p50,
            "none_p99_ms": none_p99,
            "hundred_p50_ms": full_p50,
            "hundred_p99_ms": full_p99,
            "replay_ms": full_p50 - none_p50,
        })
    );
    app.close().await;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        resumes(env_usize("BENCH_RESUMES", 200)).await?;
        waiting(env_usize("BENCH_WAITING", 100_000)).await
    })
}
