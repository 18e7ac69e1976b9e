//! Following a run as it goes: `warden run` (on a terminal, or with
//! `--stream`) prints the answer as it streams, tool calls, logs and approval
//! requests, with a spinner while it waits; Ctrl-C asks whether to cancel the
//! run. A stream that breaks is picked up again after its last event.
//! `warden executions logs --follow` prints log lines until the end. What the
//! agent wrote is printed without its control characters: a sandboxed agent
//! does not get to drive the person's terminal.

use std::cell::Cell;
use std::io::{IsTerminal, Write};
use std::time::Duration;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;
use tokio::io::AsyncBufReadExt;
use warden_host::client::Client;

use crate::output::{cost, duration, log_line, plain, text};

/// Exit status of a run the person cancelled (as for a SIGINT).
pub const CANCELLED: i32 = 130;
/// How often a broken stream is opened again before giving up on it.
const RECONNECTS: u32 = 3;

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

/// What has been printed so far.
struct Screen {
    bar: ProgressBar,
    /// The answer's last line is not ended yet.
    open: Cell<bool>,
    /// The answer streamed (so the output need not be printed again).
    streamed: Cell<bool>,
    /// The last event seen: a stream opened again goes on from it.
    last: Cell<u64>,
}

impl Screen {
    /// A line on standard error, after the answer's open line is ended.
    fn note(&self, line: &str) {
        self.bar.suspend(|| {
            if self.open.replace(false) {
                println!();
            }
            eprintln!("{line}");
        });
    }

    fn show(&self, kind: &str, event: &Value) {
        if let Some(seq) = event["seq"].as_u64() {
            self.last.set(seq);
        }
        let data = &event["data"];
        match kind {
            "status" => self.bar.set_message(text(&data["status"])),
            "content" | "thinking" => {
                // The answer has begun: the spinner would draw over it.
                if !self.bar.is_finished() {
                    self.bar.finish_and_clear();
                }
                let delta = plain(data["delta"].as_str().unwrap_or(""));
                if kind == "content" {
                    print!("{delta}");
                    let _ = std::io::stdout().flush();
                    self.streamed.set(true);
                } else {
                    eprint!("{delta}");
                }
                self.open.set(!delta.ends_with('\n'));
            }
            "tool_start" => self.note(&plain(&format!("→ {} {}", text(&data["name"]), data["arguments"]))),
            "tool_end" => {
                let outcome = match data["error"].as_str() {
                    Some(error) => format!("failed: {error}"),
                    None => "ok".into(),
                };
                let line = format!(
                    "← {} {} ({})",
                    text(&data["name"]),
                    outcome,
                    duration(&data["duration_ms"])
                );
                self.note(&plain(&line));
            }
            "log" => self.note(&plain(&log_line(data))),
            "approval" if data["status"] == "pending" || data["status"].is_null() => self.note(&plain(&format!(
                "approval requested: {} (warden approvals approve {})",
                text(&data["title"]),
                text(&data["id"])
            ))),
            "approval" => self.note(&plain(&format!(
                "approval {}: {}",
                text(&data["status"]),
                text(&data["title"])
            ))),
            _ => {}
        }
    }
}

/// Asks whether to cancel; `None` when nobody can answer (no input left).
async fn ask(
    screen: &Screen,
    id: &str,
    stdin: &mut tokio::io::Lines<impl tokio::io::AsyncBufRead + Unpin>,
) -> Option<bool> {
    // The spinner would draw over the question.
    if !screen.bar.is_finished() {
        screen.bar.finish_and_clear();
    }
    if screen.open.replace(false) {
        println!();
    }
    eprint!("Cancel {id}? [y/N] ");
    let _ = std::io::stderr().flush();
    tokio::select! {
        line = stdin.next_line() => {
            let answer = line.ok().flatten()?;
            let answer = answer.trim();
            Some(answer.eq_ignore_ascii_case("y") || answer.eq_ignore_ascii_case("yes"))
        }
        // Ctrl-C again: leave, the run goes on.
        _ = tokio::signal::ctrl_c() => None,
    }
}

/// Runs `agent` (`body`: the execute request's `input`, `model`...) and
/// follows it live; the final record, fetched at its end.
pub async fn run(client: &Client, agent: &str, body: Value) -> anyhow::Result<Value> {
    let made = client.run(agent, body, "async").await?;
    let id = made["id"]
        .as_str()
        .context("the server made no execution id")?
        .to_owned();
    eprintln!("{id} ({agent})");
    let screen = Screen {
        bar: spinner(),
        open: Cell::new(false),
        streamed: Cell::new(false),
        last: Cell::new(0),
    };
    screen.bar.set_prefix(id.clone());
    screen.bar.set_message("queued");
    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut breaks = 0;
    loop {
        let follow = client.follow(&id, screen.last.get(), |kind, event| screen.show(kind, event));
        tokio::pin!(follow);
        let ended = loop {
            tokio::select! {
                end = &mut follow => break end,
                signal = tokio::signal::ctrl_c() => {
                    signal.context("listening for Ctrl-C")?;
                    match ask(&screen, &id, &mut stdin).await {
                        Some(true) => {
                            // A run that ended meanwhile answers 409: it is over either way.
                            if let Err(e) = client.post(&format!("/v1/executions/{id}/cancel")).await {
                                eprintln!("{e}");
                            }
                        }
                        Some(false) => eprintln!("(still running; Ctrl-C to be asked again)"),
                        None => {
                            eprintln!("\n(left it running: warden executions cancel {id} stops it)");
                            std::process::exit(CANCELLED);
                        }
                    }
                }
            }
        };
        match ended {
            Ok(_) => break,
            Err(e) if breaks < RECONNECTS => {
                breaks += 1;
                screen.note(&format!("({e}; following again after event {})", screen.last.get()));
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => {
                screen.bar.finish_and_clear();
                eprintln!("{e}: it may still be running (warden executions get {id})");
                std::process::exit(1);
            }
        }
    }
    screen.bar.finish_and_clear();
    let record = client.get(&format!("/v1/executions/{id}"), &[]).await?;
    if screen.open.get() {
        println!();
    }
    if !screen.streamed.get() && !record["output"].is_null() {
        // Nothing streamed (an agent that only returns): its output, whole.
        match &record["output"] {
            Value::String(s) => println!("{}", plain(s)),
            other => println!("{}", serde_json::to_string_pretty(other).unwrap_or_default()),
        }
    }
    eprintln!(
        "{} {} in {}, {} tokens, {}",
        id,
        text(&record["status"]),
        duration(&record["duration_ms"]),
        text(&record["token_usage"]["total"]),
        cost(&record["cost_usd"])
    );
    if record["error"].is_object() {
        eprintln!(
            "error: {}: {}",
            text(&record["error"]["code"]),
            plain(&text(&record["error"]["message"]))
        );
    }
    Ok(record)
}

/// Prints an execution's log lines as they come, until it ends.
pub async fn logs(client: &Client, id: &str) -> anyhow::Result<()> {
    let (kind, end) = client
        .follow(id, 0, |kind, event| {
            if kind == "log" {
                println!("{}", plain(&log_line(&event["data"])));
            }
        })
        .await?;
    eprintln!("({} {})", kind, text(&end["status"]));
    Ok(())
}
