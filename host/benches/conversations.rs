//! Conversations: the per-turn cost of an agent's history. A turn of the
//! `notes` fixture that reads its conversation's history through the import,
//! one at a time, in a conversation with 50 earlier turns against one with
//! none (a fresh conversation for each turn, made before its clock starts);
//! the difference is loading the history. Also the history read alone (the
//! store's newest 50 turns), as the import makes it.
//!
//! `cargo bench -p warden-host --bench conversations` (env BENCH_TURNS, default
//! 500 of each). Prints a `RESULT {json}` line.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use serde_json::value::RawValue;

use warden_host::app::App;
use warden_host::auth::DEFAULT_WORKSPACE;
use warden_host::config::Config;
use warden_host::executions::{ConversationRef, IfBusy, NewExecution, Target, TurnRequest};
use warden_host::manifest::Manifest;
use warden_host::ports::Memories;
use warden_host::record::{Conversation, Status, Trigger, Turn, TurnRole};

warden_host::use_mimalloc!();

/// Earlier turns in the conversation with history.
const HISTORY: usize = 50;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A conversation of `turns` earlier turns (user and assistant in turn, each
/// a sentence or two, as chats go), stored.
async fn conversation(app: &App, agent_id: &str, turns: usize) -> anyhow::Result<String> {
    let id = warden_host::ids::conversation();
    let now = warden_host::time::now_ms();
    let made: Vec<Turn> = (0..turns)
        .map(|i| {
            let (role, content) = if i % 2 == 0 {
                (
                    TurnRole::User,
                    format!("Question {i}: where is my order A-{i}, and when will it arrive?"),
                )
            } else {
                (
                    TurnRole::Assistant,
                    format!("Order A-{i} shipped yesterday from the Lyon warehouse; it should arrive within two days."),
                )
            };
            Turn::new(role, content, "exec_bench", now)
        })
        .collect();
    let conversation = Conversation {
        id: id.clone(),
        workspace: DEFAULT_WORKSPACE.into(),
        agent_id: agent_id.into(),
        turn_count: 0,
        token_count: 0,
        metadata: RawValue::from_string("{}".into())?.into(),
        created_at: now,
        last_active_at: now,
    };
    app.stores.conversations.create(conversation, made).await?;
    Ok(id)
}

/// One turn that reads the history (`expect` messages of it), submitted and
/// waited for; its time in ms.
async fn turn(app: &Arc<App>, conversation: String, expect: usize) -> anyhow::Result<f64> {
    let mut new = NewExecution::new(
        Target::Agent {
            workspace: DEFAULT_WORKSPACE.into(),
            agent: "notes".into(),
            version: None,
        },
        RawValue::from_string(r#"{"ops":[{"op":"history"}]}"#.into())?.into(),
        Trigger::Chat,
    );
    new.turn = Some(TurnRequest {
        conversation: ConversationRef::Continue(conversation),
        if_busy: IfBusy::Wait,
        session: Vec::new(),
    });
    let started = Instant::now();
    let mut accepted = app.executions.submit(new).await?;
    let done = accepted.done.wait_for(Option::is_some).await?.clone();
    let elapsed = started.elapsed().as_secs_f64() * 1000.0;
    let done = done.ok_or_else(|| anyhow::anyhow!("no end"))?;
    anyhow::ensure!(done.status == Status::Completed, "{:?}", done.error);
    let output: serde_json::Value = serde_json::from_str(done.output.as_ref().map_or("null", |o| o.get()))?;
    anyhow::ensure!(
        output[0]["messages"] == expect,
        "the turn read {output}, not {expect} messages"
    );
    Ok(elapsed)
}

fn p(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q) as usize]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let turns = env_usize("BENCH_TURNS", 500);
    let tmp = tempfile::tempdir()?;
    let config = Config {
        data_dir: tmp.path().to_path_buf(),
        deploy_examples: false,
        ..Config::default()
    };
    let app = App::open(config).await?;
    let path = warden_host::bundled::agent_path("notes").ok_or_else(|| anyhow::anyhow!("notes not built"))?;
    let manifest = Manifest::from_json(r#"{"name":"notes"}"#).map_err(|e| anyhow::anyhow!(e))?;
    app.deployer
        .deploy(DEFAULT_WORKSPACE, manifest, Bytes::from(std::fs::read(path)?))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let agent_id = app
        .registry
        .get(DEFAULT_WORKSPACE, "notes")
        .ok_or_else(|| anyhow::anyhow!("no notes"))?
        .agent
        .id
        .clone();
    // Warm up, then interleaved: drift on the machine falls on both alike.
    for _ in 0..20 {
        turn(&app, conversation(&app, &agent_id, HISTORY).await?, HISTORY).await?;
    }
    let (mut none, mut full) = (Vec::with_capacity(turns), Vec::with_capacity(turns));
    for _ in 0..turns {
        none.push(turn(&app, conversation(&app, &agent_id, 0).await?, 0).await?);
        full.push(turn(&app, conversation(&app, &agent_id, HISTORY).await?, HISTORY).await?);
    }
    // The read alone, as the import makes it.
    let with_history = conversation(&app, &agent_id, HISTORY).await?;
    let mut reads = Vec::with_capacity(turns);
    for _ in 0..turns {
        let started = Instant::now();
        let (got, _) = app.memory.history(&with_history, 50, 16_000).await?;
        reads.push(started.elapsed().as_secs_f64() * 1000.0);
        anyhow::ensure!(got.len() == HISTORY, "{} turns read", got.len());
    }
    for v in [&mut none, &mut full, &mut reads] {
        v.sort_by(f64::total_cmp);
    }
    let overhead = p(&full, 0.5) - p(&none, 0.5);
    println!(
        "a turn reading its history: none p50 {:.3} ms p99 {:.3} ms; {HISTORY} turns p50 {:.3} ms p99 {:.3} ms; \
         overhead p50 {overhead:.3} ms; the read alone p50 {:.3} ms p99 {:.3} ms",
        p(&none, 0.5),
        p(&none, 0.99),
        p(&full, 0.5),
        p(&full, 0.99),
        p(&reads, 0.5),
        p(&reads, 0.99),
    );
    println!(
        "RESULT {}",
        serde_json::json!({
            "part": "history",
            "turns": turns,
            "history": HISTORY,
            "none_p50_ms": p(&none, 0.5),
            "none_p99_ms": p(&none, 0.99),
            "full_p50_ms": p(&full, 0.5),
            "full_p99_ms": p(&full, 0.99),
            "overhead_p50_ms": overhead,
            "read_p50_ms": p(&reads, 0.5),
            "read_p99_ms": p(&reads, 0.99),
        })
    );
    app.close().await;
    Ok(())
}
