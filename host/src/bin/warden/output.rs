//! What the client commands print: JSON (with `--json`, `--output json`, or
//! whenever standard output is not a terminal, so scripts and pipes get the
//! API's own answers), else tables and key-value lines made for people.

use std::io::IsTerminal;

use comfy_table::{ContentArrangement, Table, presets};
use serde_json::Value;

/// How a command's answer is shown to a person.
#[derive(Clone, Copy)]
pub enum View {
    Executions,
    Execution,
    Agents,
    Approvals,
    Conversations,
    Schedules,
    Logs,
    Steps,
    Keys,
    /// As JSON, whatever the output.
    Json,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Json,
    Table,
}

/// JSON when asked or piped; tables on a terminal.
pub fn format(asked: Option<Format>, json: bool) -> Format {
    match (json, asked) {
        (true, _) => Format::Json,
        (false, Some(f)) => f,
        (false, None) if std::io::stdout().is_terminal() => Format::Table,
        (false, None) => Format::Json,
    }
}

pub fn print(value: &Value, view: View, format: Format) -> anyhow::Result<()> {
    if format == Format::Json || matches!(view, View::Json) {
        println!("{}", serde_json::to_string_pretty(value)?);
        return Ok(());
    }
    match view {
        View::Execution => execution(value),
        View::Logs => {
            for line in value["data"].as_array().into_iter().flatten() {
                println!("{}", log_line(line));
            }
        }
        _ => list(value, view),
    }
    let cursor = value["next_cursor"]
        .as_str()
        .map(str::to_owned)
        .or_else(|| value["next_cursor"].as_u64().map(|n| n.to_string()));
    if let (true, Some(cursor)) = (value["has_more"] == true, cursor) {
        println!("(more: --after {cursor})");
    }
    Ok(())
}

/// One log line as a person reads it: time, level, message.
pub fn log_line(line: &Value) -> String {
    let ts = line["ts"].as_str().unwrap_or("");
    plain(&format!(
        "{} {:<5} {}",
        ts.get(11..23).unwrap_or(ts),
        line["level"].as_str().unwrap_or(""),
        line["message"].as_str().unwrap_or("")
    ))
}

/// A value as a person reads it: strings bare (without control characters:
/// they may be an agent's), `-` for nothing.
pub fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => plain(s),
        other => other.to_string(),
    }
}

/// `s` without control characters other than newlines and tabs: text an agent
/// wrote cannot move the cursor, set the clipboard or hide itself.
pub fn plain(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                '\u{fffd}'
            } else {
                c
            }
        })
        .collect()
}

fn short(mut s: String, max: usize) -> String {
    if s.chars().count() > max {
        s = s.chars().take(max - 1).collect::<String>() + "…";
    }
    s
}

pub fn duration(ms: &Value) -> String {
    match ms.as_i64() {
        None => "-".into(),
        Some(ms) if ms < 1000 => format!("{ms} ms"),
        Some(ms) => format!("{:.1} s", ms as f64 / 1000.0),
    }
}

pub fn cost(usd: &Value) -> String {
    usd.as_f64().map_or_else(|| "-".into(), |usd| format!("${usd:.4}"))
}

/// A table's header and how a row's cells are read from one item.
type Columns = (&'static [&'static str], fn(&Value) -> Vec<String>);

fn list(value: &Value, view: View) {
    let rows = value["data"].as_array().cloned().unwrap_or_default();
    let (header, cells): Columns = match view {
        View::Executions => (
            &[
                "ID", "AGENT", "STATUS", "TRIGGER", "CREATED", "DURATION", "TOKENS", "COST",
            ],
            |e| {
                vec![
                    text(&e["id"]),
                    text(&e["agent_name"]),
                    text(&e["status"]),
                    text(&e["trigger"]),
                    text(&e["created_at"]),
                    duration(&e["duration_ms"]),
                    text(&e["token_usage"]["total"]),
                    cost(&e["cost_usd"]),
                ]
            },
        ),
        View::Agents => (&["NAME", "VERSION", "DESCRIPTION", "UPDATED"], |a| {
            vec![
                text(&a["name"]),
                format!("v{}", text(&a["latest_version"])),
                short(text(&a["description"]), 60),
                text(&a["updated_at"]),
            ]
        }),
        View::Approvals => (&["ID", "STATUS", "TITLE", "EXECUTION", "CREATED"], |a| {
            vec![
                text(&a["id"]),
                text(&a["status"]),
                short(text(&a["title"]), 50),
                text(&a["execution_id"]),
                text(&a["created_at"]),
            ]
        }),
        View::Conversations => (&["ID", "AGENT", "TURNS", "TOKENS", "LAST ACTIVE"], |c| {
            vec![
                text(&c["id"]),
                text(&c["agent_id"]),
                text(&c["turn_count"]),
                text(&c["token_count"]),
                text(&c["last_active_at"]),
            ]
        }),
        View::Schedules => (&["ID", "AGENT", "CRON", "ZONE", "ENABLED", "NEXT RUN"], |s| {
            vec![
                text(&s["id"]),
                text(&s["agent_id"]),
                text(&s["cron"]),
                text(&s["timezone"]),
                text(&s["enabled"]),
                text(&s["next_runs"][0]),
            ]
        }),
        View::Steps => (&["SEQ", "NAME", "STARTED", "DETAIL"], |s| {
            vec![
                text(&s["seq"]),
                text(&s["name"]),
                text(&s["started_at"]),
                short(plain(&s["detail"].to_string()), 70),
            ]
        }),
        View::Keys => (&["ID", "WORKSPACE", "NAME", "ROLE", "REVOKED"], |k| {
            vec![
                text(&k["id"]),
                text(&k["workspace"]),
                text(&k["name"]),
                text(&k["role"]),
                text(&k["revoked_at"]),
            ]
        }),
        View::Execution | View::Logs | View::Json => return,
    };
    let mut table = Table::new();
    table
        .load_preset(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(header.to_vec());
    for row in &rows {
        table.add_row(cells(row));
    }
    if rows.is_empty() {
        println!("(none)");
    } else {
        println!("{table}");
    }
}

fn execution(e: &Value) {
    let usage = &e["token_usage"];
    let lines = [
        ("id", text(&e["id"])),
        (
            "agent",
            format!("{} v{}", text(&e["agent_name"]), text(&e["agent_version"])),
        ),
        ("status", text(&e["status"])),
        ("trigger", text(&e["trigger"])),
        ("created", text(&e["created_at"])),
        ("duration", duration(&e["duration_ms"])),
        (
            "tokens",
            format!(
                "{} ({} in, {} out)",
                text(&usage["total"]),
                text(&usage["prompt"]),
                text(&usage["completion"])
            ),
        ),
        ("cost", cost(&e["cost_usd"])),
        ("model", text(&e["model_used"])),
        ("trace", text(&e["trace_id"])),
    ];
    for (key, value) in lines {
        println!("{key:<9} {value}");
    }
    if e["error"].is_object() {
        println!(
            "error     {}: {}",
            text(&e["error"]["code"]),
            text(&e["error"]["message"])
        );
    }
    if !e["output"].is_null() {
        let output = serde_json::to_string_pretty(&e["output"]).unwrap_or_default();
        println!("output\n{}", plain(&output));
    }
}
