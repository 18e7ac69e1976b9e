//! Schedules, with second-level cron patterns so the tests run fast: slots
//! fire on time as `schedule` executions, pause and resume, trigger, the three
//! overlap policies, "make repeatable", no slot twice across a SIGKILL and
//! only the newest missed slot inside the catch-up window after downtime, the
//! agent's own list and its summary, a run fixed before a crash made once,
//! a schedule that cannot fire set aside, and bad patterns, zones and ends
//! refused naming the field.

use std::collections::HashSet;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use warden_tests::{Server, Warden, error_code};

async fn create(server: &Server, body: Value) -> Value {
    let (status, made) = server.post_json("/v1/schedules", &body).await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    made
}

/// The runs of a schedule, oldest first.
async fn runs(server: &Server, schedule: &str) -> Vec<Value> {
    let (status, page) = server
        .get(&format!("/v1/executions?schedule_id={schedule}&limit=500"))
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let mut runs = page["data"].as_array().unwrap().clone();
    runs.reverse();
    runs
}

/// Waits until a schedule has made `n` runs (30 s at most).
async fn until_runs(server: &Server, schedule: &str, n: usize) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let made = runs(server, schedule).await;
        if made.len() >= n {
            return made;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} runs: {made:#?}",
            made.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn ms(text: &Value) -> i64 {
    warden_host::time::parse(text.as_str().unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_fires_its_slots_and_can_be_paused_resumed_and_triggered() {
    let server = Server::start().await;
    server.deploy("echo", json!({})).await;
    let made = create(
        &server,
        json!({ "agent": "echo", "cron": "* * * * * *", "input": { "n": 1 }, "metadata": { "from": "cron" } }),
    )
    .await;
    let id = made["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("sch_"));
    assert_eq!(made["timezone"], "UTC");
    assert_eq!(made["overlap"], "skip");
    assert_eq!(made["next_runs"].as_array().unwrap().len(), 5, "{made}");
    assert!(made["description"].as_str().unwrap().contains("UTC"), "{made}");
    let made_runs = until_runs(&server, &id, 3).await;
    let mut slots = HashSet::new();
    for run in &made_runs {
        assert_eq!(run["trigger"], "schedule");
        assert_eq!(run["schedule_id"], id.as_str());
        assert_eq!(run["input"], json!({ "n": 1 }));
        assert_eq!(run["metadata"]["from"], "cron");
        let slot = ms(&run["scheduled_for"]);
        assert_eq!(slot % 1000, 0, "a whole second: {run}");
        assert!(slots.insert(slot), "slot {slot} ran twice");
        let lag = ms(&run["created_at"]) - slot;
        assert!((0..1000).contains(&lag), "made {lag} ms after its slot: {run}");
    }
    // Filters: by trigger, and the agent's own list.
    let (_, by_trigger) = server.get("/v1/executions?trigger=schedule").await;
    assert!(by_trigger["data"].as_array().unwrap().len() >= 3);
    let (status, body) = server.get("/v1/executions?trigger=cron").await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::BAD_REQUEST, "invalid_query"),
        "{body}"
    );
    let (_, own) = server.get("/v1/agents/echo/executions?trigger=schedule&limit=2").await;
    assert_eq!(own["data"].as_array().unwrap().len(), 2, "{own}");
    assert_eq!(own["has_more"], true);
    let (status, _) = server.get("/v1/agents/nobody/executions").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Paused: no slot fires; resumed: they fire again.
    let (status, paused) = server.post_json(&format!("/v1/schedules/{id}/pause"), &json!({})).await;
    assert_eq!(
        (status, paused["enabled"].clone()),
        (StatusCode::OK, json!(false)),
        "{paused}"
    );
    assert!(paused["next_runs"].as_array().unwrap().is_empty());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = runs(&server, &id).await.len();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(runs(&server, &id).await.len(), before, "a paused schedule fired");
    let (status, _) = server
        .post_json(&format!("/v1/schedules/{id}/resume"), &json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    until_runs(&server, &id, before + 1).await;
    // Triggered: a run now.
    let (status, triggered) = server
        .post_json(&format!("/v1/schedules/{id}/trigger"), &json!({}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{triggered}");
    assert_eq!(triggered["schedule_id"], id.as_str());
    // Changed: a pattern that fires no more today stops it.
    let (status, changed) = server
        .send(
            server
                .http
                .patch(server.url(&format!("/v1/schedules/{id}")))
                .json(&json!({ "cron": "0 0 1 1 *" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(changed["cron"], "0 0 1 1 *");
    let (_, got) = server.get(&format!("/v1/schedules/{id}")).await;
    assert!(got["runs"].as_u64().unwrap() >= 4, "{got}");
    let (_, listed) = server.get("/v1/schedules?agent_id=echo&enabled=true").await;
    assert_eq!(listed["data"][0]["id"], id.as_str());
    // The agent's summary counts them.
    let (status, summary) = server.get("/v1/agents/echo/summary").await;
    assert_eq!(status, StatusCode::OK, "{summary}");
    assert!(summary["executions"].as_u64().unwrap() >= 4, "{summary}");
    assert!(summary["by_status"]["completed"].as_u64().unwrap() >= 3, "{summary}");
    assert!(summary["duration_ms"]["p50"].is_number(), "{summary}");
    assert!(summary["last_run"]["id"].is_string(), "{summary}");
    // Deleted: gone, its runs stay.
    let (status, _) = server.delete(&format!("/v1/schedules/{id}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = server.get(&format!("/v1/schedules/{id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(!runs(&server, &id).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_patterns_zones_and_inputs_are_refused_naming_the_field() {
    let server = Server::start().await;
    server.deploy("echo", json!({})).await;
    let schema = json!({ "type": "object", "required": ["name"], "properties": { "name": { "type": "string" } } });
    server.deploy("hello", json!({ "input_schema": schema })).await;
    for (body, code, field) in [
        (json!({ "agent": "echo", "cron": "61 * * * *" }), "invalid_cron", "cron"),
        (json!({ "agent": "echo", "cron": "* * *" }), "invalid_cron", "cron"),
        (
            json!({ "agent": "echo", "cron": "0 9 * * *", "timezone": "Mars/Olympus" }),
            "invalid_timezone",
            "timezone",
        ),
        (
            json!({ "agent": "hello", "cron": "0 9 * * *", "input": { "nobody": 1 } }),
            "invalid_input",
            "input",
        ),
        (
            json!({ "agent": "echo", "cron": "0 9 * * *", "priority": 101 }),
            "invalid_request",
            "priority",
        ),
    ] {
        let (status, error) = server.post_json("/v1/schedules", &body).await;
        assert_eq!(
            (status, error_code(&error)),
            (StatusCode::UNPROCESSABLE_ENTITY, code),
            "{body}: {error}"
        );
        assert!(error["error"]["message"].as_str().unwrap().contains(field), "{error}");
    }
    let never = json!({ "agent": "echo", "cron": "0 0 30 2 *" });
    let (status, error) = server.post_json("/v1/schedules", &never).await;
    assert_eq!(
        (status, error_code(&error)),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_cron"),
        "February 30: {error}"
    );
    // An end already past, at creation and in a change.
    let ended = json!({ "agent": "echo", "cron": "0 9 * * *", "end_at": "2020-01-01T00:00:00Z" });
    let (status, error) = server.post_json("/v1/schedules", &ended).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
    assert!(
        error["error"]["message"].as_str().unwrap().contains("end_at"),
        "{error}"
    );
    let made = create(&server, json!({ "agent": "echo", "cron": "0 9 * * *" })).await;
    let path = format!("/v1/schedules/{}", made["id"].as_str().unwrap());
    for (patch, code) in [
        (json!({ "end_at": "2020-01-01T00:00:00Z" }), "invalid_request"),
        (json!({ "cron": "99 * * * *" }), "invalid_cron"),
        (json!({ "timezone": "Nowhere/Land" }), "invalid_timezone"),
    ] {
        let (status, error) = server.send(server.http.patch(server.url(&path)).json(&patch)).await;
        assert_eq!(
            (status, error_code(&error)),
            (StatusCode::UNPROCESSABLE_ENTITY, code),
            "{patch}: {error}"
        );
    }
    // Listed by agent (`agent` or `agent_id`, a name or an id).
    let other = create(
        &server,
        json!({ "agent": "hello", "cron": "0 9 * * *", "input": { "name": "Bo" } }),
    )
    .await;
    for (query, id) in [("agent=echo", &made["id"]), ("agent_id=hello", &other["id"])] {
        let (_, listed) = server.get(&format!("/v1/schedules?{query}")).await;
        let ids: Vec<&Value> = listed["data"].as_array().unwrap().iter().map(|s| &s["id"]).collect();
        assert_eq!(ids, [id], "{query}: {listed}");
    }
    let (status, _) = server
        .post_json("/v1/schedules", &json!({ "agent": "nobody", "cron": "0 9 * * *" }))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // A zone of its own: 09:00 in Tokyo is 00:00 UTC.
    let made = create(
        &server,
        json!({ "agent": "echo", "cron": "0 9 * * *", "timezone": "Asia/Tokyo" }),
    )
    .await;
    let next = made["next_runs"][0].as_str().unwrap();
    assert!(next.ends_with("T00:00:00.000Z"), "{next}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlap_policies_skip_buffer_or_allow() {
    let server = Server::start().await;
    for name in ["sleepy-skip", "sleepy-buffer", "sleepy-allow"] {
        server
            .deploy("sleepy", json!({ "name": name, "max_concurrency": 8 }))
            .await;
    }
    let schedule = |agent: &str, overlap: &str| json!({ "agent": agent, "cron": "* * * * * *", "input": { "ms": 2200 }, "overlap": overlap });
    let skip = create(&server, schedule("sleepy-skip", "skip")).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let buffer = create(&server, schedule("sleepy-buffer", "buffer_one")).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let allow = create(&server, schedule("sleepy-allow", "allow")).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    tokio::time::sleep(Duration::from_millis(6500)).await;
    for id in [&skip, &buffer, &allow] {
        server.post_json(&format!("/v1/schedules/{id}/pause"), &json!({})).await;
    }
    let spans = |runs: &[Value]| -> Vec<(i64, i64)> {
        runs.iter()
            .filter(|r| r["started_at"].is_string())
            .map(|r| {
                let end = r["completed_at"]
                    .as_str()
                    .map_or(i64::MAX, |t| warden_host::time::parse(t).unwrap());
                (ms(&r["started_at"]), end)
            })
            .collect()
    };
    let overlapping = |spans: &[(i64, i64)]| spans.windows(2).any(|w| w[1].0 < w[0].1);
    // Skip: never two at once; slots during a run are skipped.
    let skipped = runs(&server, &skip).await;
    assert!((2..=3).contains(&skipped.len()), "{skipped:#?}");
    assert!(!overlapping(&spans(&skipped)), "{skipped:#?}");
    let (_, s) = server.get(&format!("/v1/schedules/{skip}")).await;
    assert!(s["skipped"].as_u64().unwrap() >= 3, "{s}");
    // Buffer one: never two at once; the next starts about when one ends.
    let buffered = runs(&server, &buffer).await;
    let buffered_spans = spans(&buffered);
    assert!(!overlapping(&buffered_spans), "{buffered:#?}");
    for w in buffered_spans.windows(2) {
        assert!(
            w[1].0 - w[0].1 < 1500,
            "the buffered run waited too long: {buffered:#?}"
        );
    }
    // ...and it is a slot that came while the one before ran (skip drops those).
    // (A slot is "during" a run when it came well before the run's end, not
    // in the few ms a slot takes to be handled.)
    let during =
        |w: &[Value]| w[0]["completed_at"].is_string() && ms(&w[1]["scheduled_for"]) < ms(&w[0]["completed_at"]) - 200;
    let ran_buffered = buffered.windows(2).any(during);
    assert!(ran_buffered, "no buffered slot ran: {buffered:#?}");
    let ran_late = skipped.windows(2).any(during);
    assert!(!ran_late, "skip ran a slot that came during a run: {skipped:#?}");
    // Allow: runs overlap.
    let allowed = runs(&server, &allow).await;
    assert!(allowed.len() >= 5, "{allowed:#?}");
    assert!(overlapping(&spans(&allowed)), "{allowed:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn make_repeatable_runs_the_same_version_input_and_metadata() {
    let server = Server::start().await;
    server.deploy("echo", json!({})).await;
    let (_, first) = server
        .post_json(
            "/v1/agents/echo/execute",
            &json!({ "input": { "say": "again" }, "metadata": { "k": "v" }, "priority": 70 }),
        )
        .await;
    server.deploy("echo", json!({ "description": "version 2" })).await;
    let (status, made) = server
        .post_json(
            &format!("/v1/executions/{}/schedule", first["id"].as_str().unwrap()),
            &json!({ "cron": "* * * * * *" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    assert_eq!(made["version"], 1);
    let id = made["id"].as_str().unwrap().to_owned();
    let run = until_runs(&server, &id, 1).await.remove(0);
    assert_eq!(run["input"], json!({ "say": "again" }));
    assert_eq!(run["metadata"]["k"], "v");
    assert_eq!(run["priority"], 70);
    assert_eq!(run["agent_version"], 1, "the version it ran, not the latest");
    let (status, _) = server
        .post_json("/v1/executions/exec_nope/schedule", &json!({ "cron": "* * * * * *" }))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_fires_no_slot_twice_and_catches_up_once_within_the_window() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let warden = Warden::start(&data);
    let server = warden.client();
    server.deploy("echo", json!({})).await;
    let every_5s = |window: u64| json!({ "agent": "echo", "cron": "*/5 * * * * *", "catchup_window_secs": window });
    let caught = create(&server, every_5s(30)).await["id"].as_str().unwrap().to_owned();
    let dropped = create(&server, every_5s(0)).await["id"].as_str().unwrap().to_owned();
    let first = ms(&until_runs(&server, &caught, 1).await[0]["scheduled_for"]);
    // Killed just after a slot; down over the next two; back before the one after.
    let sleep_until = |at: i64| {
        let wait = (at - warden_host::time::now_ms()).max(0) as u64;
        tokio::time::sleep(Duration::from_millis(wait))
    };
    sleep_until(first + 1500).await;
    warden.sigkill();
    let down_from = warden_host::time::now_ms();
    sleep_until(first + 11_500).await;
    let restart_at = warden_host::time::now_ms();
    let warden = Warden::start(&data);
    let server = warden.client();
    sleep_until(first + 16_000).await;
    for id in [&caught, &dropped] {
        // The slot after the restart (listed within 30 s at most).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !runs(&server, id)
            .await
            .iter()
            .any(|r| ms(&r["scheduled_for"]) == first + 15_000)
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the slot after the restart never ran"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let made = runs(&server, id).await;
        let slots: Vec<i64> = made.iter().map(|r| ms(&r["scheduled_for"])).collect();
        let unique: HashSet<i64> = slots.iter().copied().collect();
        assert_eq!(unique.len(), slots.len(), "a slot ran twice: {slots:?}");
        let missed: Vec<i64> = slots
            .iter()
            .copied()
            .filter(|s| *s > down_from && *s < restart_at)
            .collect();
        if id == &caught {
            assert_eq!(
                missed,
                [first + 10_000],
                "of the two slots missed while down, the newest ran, once: {slots:?}"
            );
        } else {
            assert!(missed.is_empty(), "no catch-up outside a 0 s window: {slots:?}");
        }
        assert!(slots.contains(&(first + 15_000)), "then on time again: {slots:?}");
    }
    drop(warden);
}

/// A run fixed in the same commit as its schedule's advance, and the host
/// killed before it made it: the next start makes it, once; a fixed run that
/// was made is not made again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_fixed_before_a_crash_is_made_once_after_it() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let warden = Warden::start(&data);
    let server = warden.client();
    server.deploy("echo", json!({})).await;
    let paused = json!({ "agent": "echo", "cron": "0 0 * * * *", "enabled": false, "input": { "n": 1 } });
    let lost = create(&server, paused.clone()).await["id"].as_str().unwrap().to_owned();
    let made = create(&server, paused).await["id"].as_str().unwrap().to_owned();
    let existing = server.run("echo", json!({ "n": 2 })).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    warden.sigkill();
    // As a crash leaves them: the run's id fixed with the slot, the run not
    // made (or made, for the second).
    let fixed = warden_host::ids::execution();
    let slot = warden_host::time::now_ms() - 2000;
    let stores = warden_host::store::Stores::open(&data).unwrap();
    for (id, run) in [(&lost, &fixed), (&made, &existing)] {
        let mut s = stores.schedules.get(id).await.unwrap().unwrap();
        s.pending_execution_id = Some(run.clone());
        s.last_execution_id = Some(run.clone());
        s.last_slot = Some(slot);
        s.runs = 1;
        stores.schedules.save(s).await.unwrap();
    }
    stores.close().await;
    let warden = Warden::start(&data);
    let server = warden.client();
    let run = until_runs(&server, &lost, 1).await;
    assert_eq!(run.len(), 1, "{run:#?}");
    assert_eq!(run[0]["id"], fixed.as_str());
    assert_eq!(run[0]["trigger"], "schedule");
    assert_eq!(ms(&run[0]["scheduled_for"]), slot);
    assert_eq!(run[0]["input"], json!({ "n": 1 }));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(runs(&server, &lost).await.len(), 1, "made once");
    assert!(
        runs(&server, &made).await.is_empty(),
        "the run that existed is not made again"
    );
    let (_, listed) = server.get("/v1/executions?agent_id=echo&limit=10").await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 2, "{listed}");
    for id in [&lost, &made] {
        let (_, s) = server.get(&format!("/v1/schedules/{id}")).await;
        assert_eq!(s["runs"], 1, "{s}");
        assert!(s["last_error"].is_null(), "{s}");
    }
    drop(warden);
}

/// A schedule that cannot fire (its stored pattern no longer parses) is set
/// aside with its error; the others fire on time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_that_cannot_fire_does_not_hold_up_the_others() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let warden = Warden::start(&data);
    let server = warden.client();
    server.deploy("echo", json!({})).await;
    let every_second = json!({ "agent": "echo", "cron": "* * * * * *" });
    let broken = create(&server, every_second.clone()).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let good = create(&server, every_second).await["id"].as_str().unwrap().to_owned();
    warden.sigkill();
    let stores = warden_host::store::Stores::open(&data).unwrap();
    let mut s = stores.schedules.get(&broken).await.unwrap().unwrap();
    s.cron = "every tuesday-ish".into();
    stores.schedules.save(s).await.unwrap();
    stores.close().await;
    let warden = Warden::start(&data);
    // Slots from a second after the start on: the first pass may catch one up.
    let restart = warden_host::time::now_ms();
    let server = warden.client();
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let after: Vec<Value> = runs(&server, &good)
        .await
        .into_iter()
        .filter(|r| ms(&r["scheduled_for"]) > restart + 1000)
        .collect();
    assert!(after.len() >= 2, "{after:#?}");
    for r in &after {
        let lag = ms(&r["created_at"]) - ms(&r["scheduled_for"]);
        assert!(lag < 500, "made {lag} ms after its slot: {r}");
    }
    let (_, s) = server.get(&format!("/v1/schedules/{broken}")).await;
    assert!(
        s["last_error"].as_str().is_some_and(|e| e.contains("could not fire")),
        "{s}"
    );
    let next = ms(&s["next_run_at"]);
    assert!(
        next > warden_host::time::now_ms() + 30_000,
        "set aside for a while: {s}"
    );
    drop(warden);
}
