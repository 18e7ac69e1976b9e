//! The dashboard at size, in a real headless Chromium: the executions list with
//! 100,000 executions stored, and the page of a run with 20,000 events. The
//! times are measured in the browser (navigation start to the page's own
//! "rendered" mark) and reported, not asserted: BENCHMARKS.md carries them.

use std::time::Duration;

use futures_util::future::join_all;
use serde_json::json;
use warden_host::config::Config;
use warden_host::record::{Execution, Status};
use warden_host::store::Stores;
use warden_tests::browser::Browser;
use warden_tests::{Server, create_key, test_config};

const EXECUTIONS: usize = 100_000;
const WAIT: Duration = Duration::from_secs(60);
const LOADS: usize = 5;

/// Stores `EXECUTIONS` finished runs of the data dir's `echo`, spread over the
/// last 29 days (inside the default 30-day retention, so the server's first
/// sweep keeps them all), through the store's own interface.
async fn seed(data_dir: &std::path::Path) {
    let stores = Stores::open(data_dir).expect("the store opens");
    let agents = stores.agents.agents().await.unwrap();
    let echo = agents.iter().find(|a| a.name == "echo").expect("echo is deployed");
    let versions = stores.agents.versions().await.unwrap();
    let version = versions.iter().find(|v| v.agent_id == echo.id).unwrap();
    let now = warden_host::time::now_ms();
    let statuses = [Status::Completed, Status::Completed, Status::Completed, Status::Failed];
    for chunk in 0..EXECUTIONS / 5_000 {
        let commits = (0..5_000).map(|i| {
            let n = chunk * 5_000 + i;
            let created = now - 29 * 86_400_000 + (n as i64) * 25_000;
            let execution = Execution {
                status: statuses[n % 4],
                started_at: Some(created + 3),
                completed_at: Some(created + 40),
                ..Execution::queued(warden_host::ids::execution(), echo, version, created)
            };
            stores.executions.save(execution)
        });
        for result in join_all(commits).await {
            result.expect("stored");
        }
    }
    stores.close().await;
}

/// Median milliseconds from navigation start to `mark`, over fresh loads of
/// `path` (a new query string each time, so each is a whole page load).
async fn time_to_mark(browser: &Browser, base: &str, hash: &str, mark: &str) -> (f64, f64) {
    let mut marks = Vec::new();
    let mut paints = Vec::new();
    for load in 0..LOADS {
        browser.goto(&format!("{base}/?load={load}{hash}")).await;
        let at = browser
            .wait_for(
                &format!(
                    "performance.getEntriesByName('{mark}')[0] && performance.getEntriesByName('{mark}')[0].startTime"
                ),
                WAIT,
            )
            .await;
        marks.push(at.as_f64().unwrap());
        let paint = browser
            .eval("(performance.getEntriesByName('first-contentful-paint')[0] || {}).startTime || 0")
            .await;
        paints.push(paint.as_f64().unwrap());
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    (median(&mut marks), median(&mut paints))
}

/// A run may write 20,000 log lines here (the default cap is 10,000).
fn config(dir: &std::path::Path) -> Config {
    let mut config = test_config(dir);
    config.capture.max_log_lines = 25_000;
    config.capture.max_log_bytes = 8 << 20;
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_stay_fast_with_100k_executions_and_a_20k_event_run() {
    let tmp = tempfile::tempdir().unwrap();
    let token = create_key(tmp.path(), "default", "ops", true);
    let server = Server::start_with(config(tmp.path())).await;
    let keyed = server.with_key(&token);
    keyed.deploy("echo", json!({})).await;
    keyed.deploy("rogue", json!({})).await;
    let big = keyed.run("rogue", json!("logs 20000")).await;
    let big = big["id"].as_str().unwrap().to_owned();
    let (_, events) = keyed
        .get(&format!("/v1/executions/{big}/events?after=20000&limit=10"))
        .await;
    assert!(
        events["data"].as_array().is_some_and(|d| !d.is_empty()),
        "the run has over 20,000 events: {events}"
    );
    server.stop().await;

    let seeding = std::time::Instant::now();
    seed(tmp.path()).await;
    eprintln!("seeded {EXECUTIONS} executions in {:?}", seeding.elapsed());
    let server = Server::start_with(config(tmp.path())).await;
    let (_, summary) = server
        .with_key(&token)
        .get("/v1/agents/echo/summary?since=2000-01-01T00:00:00Z")
        .await;
    assert_eq!(summary["executions"], EXECUTIONS, "{summary}");

    let browser = Browser::launch(1280, 900).await;
    browser.goto(&server.url("/")).await;
    browser.wait_for("document.querySelector('#api-key')", WAIT).await;
    browser.fill("#api-key", &token).await;
    browser.click("#sign-in").await;
    browser
        .wait_for("document.querySelectorAll('#executions tr').length === 50", WAIT)
        .await;

    let (list_ms, list_fcp) = time_to_mark(&browser, &server.base, "#/executions", "warden:executions-rendered").await;
    assert_eq!(
        browser.eval("document.querySelectorAll('#executions tr').length").await,
        50
    );
    browser.screenshot("executions-100k").await;
    // Paging goes on: the next page is other runs.
    let first = browser
        .eval("document.querySelector('#executions tr').dataset.id")
        .await;
    browser.click("#older").await;
    browser
        .wait_for(
            &format!(
                "document.querySelector('#newer') && document.querySelector('#executions tr').dataset.id !== {first}"
            ),
            WAIT,
        )
        .await;
    let (filtered_ms, _) = time_to_mark(
        &browser,
        &server.base,
        "#/executions?status=failed&agent=echo",
        "warden:executions-rendered",
    )
    .await;
    assert_eq!(
        browser
            .eval("[...document.querySelectorAll('#executions tr')].every(r => r.dataset.status === 'failed')")
            .await,
        true
    );
    let (detail_ms, _) = time_to_mark(
        &browser,
        &server.base,
        &format!("#/executions/{big}"),
        "warden:detail-rendered",
    )
    .await;
    let shown = browser.eval("document.querySelectorAll('#logs div').length").await;
    assert!(shown.as_u64().unwrap() >= 2_000, "{shown} log lines shown");
    assert!(browser.eval("!!document.querySelector('#more-events')").await == true);
    browser.screenshot("execution-20k-events").await;
    assert_eq!(browser.errors(), Vec::<String>::new());
    browser.close().await;

    let report = format!(
        "executions list, {EXECUTIONS} stored: rendered {list_ms:.0} ms (first contentful paint {list_fcp:.0} ms); \
         filtered by status and agent: {filtered_ms:.0} ms; a run with 20,000 events: {detail_ms:.0} ms \
         (median of {LOADS} loads)"
    );
    eprintln!("{report}");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target");
    std::fs::write(
        dir.join("ui-figures.json"),
        json!({
            "executions": EXECUTIONS,
            "list_rendered_ms": list_ms,
            "list_first_contentful_paint_ms": list_fcp,
            "filtered_list_rendered_ms": filtered_ms,
            "detail_20k_events_rendered_ms": detail_ms,
            "loads": LOADS,
        })
        .to_string(),
    )
    .unwrap();
}
