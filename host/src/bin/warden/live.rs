//! Following a run as it goes: `warden run` (on a terminal, or with
//! `--stream`) prints the answer as it streams, tool calls, logs and approval
//! requests, with a spinner while it waits; Ctrl-C asks whether to cancel the
//! run. `warden executions logs --follow` prints log lines until the end.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;
use warden_host::client::Client;

use crate::output::{cost, duration, log_line};

/// A spinner on standard error, drawn only on a terminal.
fn spinner() -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner();
    let style = ProgressStyle::with_template("{spinner} {prefix} {msg} {elapsed}");
    bar.set_style(style.unwrap_or_else(|_| ProgressStyle::default_spinner()));
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}

/// Runs `agent` and follows it live; the final record, fetched at its end.
pub async fn run(client: &Client, agent: &str, input: Value) -> anyhow::Result<Value> {
    let made = client
        .post_json(
            &format!("/v1/agents/{agent}/execute"),
            &json!({ "input": input, "mode": "async" }),
        )
        .await?;
    let id = made["id"]
        .as_str()
        .context("the server made no execution id")?
        .to_owned();
    eprintln!("{id} ({agent})");
    let bar = spinner();
    bar.set_prefix(id.clone());
    bar.set_message("queued");
    let follow = client.follow(&id, 0, |kind, event| show(&bar, kind, &event["data"]));
    tokio::pin!(follow);
    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let end = loop {
        tokio::select! {
            end = &mut follow => break end?,
            signal = tokio::signal::ctrl_c() => {
                signal.context("listening for Ctrl-C")?;
                bar.suspend(|| {
                    eprint!("\nCancel {id}? [y/N] ");
                    let _ = std::io::stderr().flush();
                });
                let answer = stdin.next_line().await.ok().flatten().unwrap_or_default();
                if answer.trim().eq_ignore_ascii_case("y") || answer.trim().eq_ignore_ascii_case("yes") {
                    client.post(&format!("/v1/executions/{id}/cancel")).await?;
                    bar.set_message("cancelling");
                } else {
                    eprintln!("(still running; Ctrl-C again to cancel)");
                }
            }
        }
    };
    bar.finish_and_clear();
    let record = client.get(&format!("/v1/executions/{id}"), &[]).await?;
    println!();
    eprintln!(
        "{} {} in {}, {} tokens, {}",
        id,
        record["status"].as_str().unwrap_or(&end.0),
        duration(&record["duration_ms"]),
        record["token_usage"]["total"],
        cost(&record["cost_usd"])
    );
    if let Some(error) = record["error"].as_object() {
        eprintln!(
            "error: {}: {}",
            error.get("code").and_then(Value::as_str).unwrap_or(""),
            error.get("message").and_then(Value::as_str).unwrap_or("")
        );
    }
    Ok(record)
}

/// One event of a run, as a person follows it: the answer on standard output,
/// everything else on standard error.
fn show(bar: &ProgressBar, kind: &str, data: &Value) {
    match kind {
        "status" => bar.set_message(data["status"].as_str().unwrap_or("").to_owned()),
        "content" => {
            // The answer has begun: the spinner would draw over it.
            if !bar.is_finished() {
                bar.finish_and_clear();
            }
            print!("{}", data["delta"].as_str().unwrap_or(""));
            let _ = std::io::stdout().flush();
        }
        "thinking" => bar.suspend(|| eprint!("{}", data["delta"].as_str().unwrap_or(""))),
        "tool_start" => bar.suspend(|| {
            eprintln!("→ {} {}", data["name"].as_str().unwrap_or(""), data["arguments"]);
        }),
        "tool_end" => bar.suspend(|| {
            let outcome = match data["error"].as_str() {
                Some(error) => format!("failed: {error}"),
                None => "ok".into(),
            };
            eprintln!(
                "← {} {} ({})",
                data["name"].as_str().unwrap_or(""),
                outcome,
                duration(&data["duration_ms"])
            );
        }),
        "log" => bar.suspend(|| eprintln!("{}", log_line(data))),
        "approval" => bar.suspend(|| {
            eprintln!(
                "approval {}: {} (warden approvals approve {})",
                data["status"].as_str().unwrap_or("requested"),
                data["title"].as_str().unwrap_or(""),
                data["id"].as_str().unwrap_or("")
            );
        }),
        _ => {}
    }
}

/// Prints an execution's log lines as they come, until it ends.
pub async fn logs(client: &Client, id: &str) -> anyhow::Result<()> {
    let (kind, end) = client
        .follow(id, 0, |kind, event| {
            if kind == "log" {
                println!("{}", log_line(&event["data"]));
            }
        })
        .await?;
    eprintln!("({} {})", kind, end["status"].as_str().unwrap_or(""));
    Ok(())
}
