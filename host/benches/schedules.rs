//! Schedules at scale: (a) 10,000 enabled schedules none of which is due for
//! a while: the host's CPU while it waits (the firing loop sleeps until the
//! next slot, looking at most once a second); (b) 10,000 schedules each
//! firing once a minute, spread over the seconds (~167 runs a second of
//! `echo`): how late each run is made after its slot (p50, p99, max).
//!
//! `cargo bench -p warden-host --bench schedules` (env BENCH_SCHEDULES,
//! default 10000; BENCH_IDLE_SECS, default 20; BENCH_FIRE_SECS, default 75).
//! Prints a `RESULT {json}` line.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use warden_host::app::App;
use warden_host::auth::DEFAULT_WORKSPACE;
use warden_host::config::Config;
use warden_host::manifest::Manifest;
use warden_host::schedules::ScheduleSpec;
use warden_host::store::ExecutionFilter;

warden_host::use_mimalloc!();

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// CPU time (user and system) this process has used.
fn cpu() -> Duration {
    // SAFETY: getrusage writes into the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, (t.tv_usec * 1000) as u32);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Makes `n` schedules of echo with the pattern `cron(i)`, 32 at a time.
async fn make(app: &Arc<App>, n: u64, cron: fn(u64) -> String) -> anyhow::Result<()> {
    let tasks: Vec<_> = (0..32)
        .map(|t| {
            let app = Arc::clone(app);
            tokio::spawn(async move {
                for i in (t..n).step_by(32) {
                    let spec = ScheduleSpec {
                        agent: "echo".into(),
                        cron: cron(i),
                        ..ScheduleSpec::default()
                    };
                    app.schedules
                        .create(DEFAULT_WORKSPACE, spec)
                        .await
                        .map_err(|e| anyhow::anyhow!("{e}"))?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    Ok(())
}

async fn open() -> anyhow::Result<(Arc<App>, tempfile::TempDir)> {
    let tmp = tempfile::tempdir()?;
    let config = Config {
        data_dir: tmp.path().to_path_buf(),
        deploy_examples: false,
        ..Config::default()
    };
    let app = App::open(config).await?;
    let path = warden_host::bundled::agent_path("echo").ok_or_else(|| anyhow::anyhow!("echo not built"))?;
    let manifest = Manifest::from_json(r#"{"name":"echo","max_concurrency":256}"#).map_err(|e| anyhow::anyhow!(e))?;
    app.deployer
        .deploy(DEFAULT_WORKSPACE, manifest, Bytes::from(std::fs::read(path)?))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok((app, tmp))
}

fn p(sorted: &[i64], q: f64) -> i64 {
    sorted[((sorted.len() - 1) as f64 * q) as usize]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let n = env_u64("BENCH_SCHEDULES", 10_000);
    let idle_secs = env_u64("BENCH_IDLE_SECS", 20);
    let fire_secs = env_u64("BENCH_FIRE_SECS", 75);

    // (a) Waiting: every schedule's next slot is hours away (yearly, spread
    // over the minutes of 1 January, 03:00).
    let (app, _tmp) = open().await?;
    make(&app, n, |i| format!("{} 3 1 1 *", i % 60)).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (cpu0, wall0) = (cpu(), Instant::now());
    tokio::time::sleep(Duration::from_secs(idle_secs)).await;
    let idle_pct = (cpu() - cpu0).as_secs_f64() / wall0.elapsed().as_secs_f64() * 100.0;
    app.close().await;
    drop(app);

    // (b) Firing: each schedule once a minute at its own second.
    let (app, _tmp) = open().await?;
    let started = warden_host::time::now_ms();
    make(&app, n, |i| format!("{} * * * * *", i % 60)).await?;
    let made_in = warden_host::time::now_ms() - started;
    let measure_from = warden_host::time::now_ms() + 1000;
    tokio::time::sleep(Duration::from_secs(fire_secs)).await;
    let measure_to = warden_host::time::now_ms() - 2000;
    let mut lags = Vec::new();
    let mut after = None;
    loop {
        let (page, more) = app
            .stores
            .executions
            .list(ExecutionFilter {
                workspace: DEFAULT_WORKSPACE.into(),
                trigger: Some("schedule".into()),
                after: after.clone(),
                limit: 500,
                ..Default::default()
            })
            .await?;
        after = page.last().map(|e| e.id.clone());
        for e in &page {
            if let Some(slot) = e.scheduled_for
                && (measure_from..measure_to).contains(&slot)
            {
                lags.push(e.created_at - slot);
            }
        }
        if !more {
            break;
        }
    }
    lags.sort_unstable();
    anyhow::ensure!(!lags.is_empty(), "no run in the window");
    let span_s = (measure_to - measure_from) as f64 / 1000.0;
    println!(
        "{n} schedules waiting: {idle_pct:.2}% of a core; {n} schedules firing once a minute ({:.0} runs/s over \
         {span_s:.0} s, made in {made_in} ms): a run made {} ms after its slot p50, {} ms p99, {} ms max",
        lags.len() as f64 / span_s,
        p(&lags, 0.5),
        p(&lags, 0.99),
        lags[lags.len() - 1],
    );
    println!(
        "RESULT {}",
        serde_json::json!({
            "part": "schedules",
            "schedules": n,
            "idle_cpu_pct": idle_pct,
            "idle_secs": idle_secs,
            "fires": lags.len(),
            "fires_per_s": lags.len() as f64 / span_s,
            "lag_p50_ms": p(&lags, 0.5),
            "lag_p99_ms": p(&lags, 0.99),
            "lag_max_ms": lags[lags.len() - 1],
        })
    );
    app.close().await;
    Ok(())
}
