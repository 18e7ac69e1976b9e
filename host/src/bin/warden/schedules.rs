//! `warden schedules …`: create, list, get, pause, resume, trigger and
//! delete schedules of a running server.

use crate::output::View;
use clap::Subcommand;
use serde_json::{Value, json};
use warden_host::client::Client;

#[derive(Subcommand)]
pub enum SchedulesCommand {
    /// Run an agent on a cron pattern.
    Create {
        agent: String,
        /// Five fields (minute hour day month weekday) or six (seconds first).
        #[arg(long)]
        cron: String,
        /// IANA time zone (default UTC).
        #[arg(long)]
        timezone: Option<String>,
        /// JSON input of each run.
        #[arg(long)]
        input: Option<String>,
        /// skip (default), buffer_one or allow.
        #[arg(long)]
        overlap: Option<String>,
        /// Run this version at each slot (default: the latest at each run).
        #[arg(long)]
        version: Option<u32>,
        /// A slot missed by at most this long still runs after downtime.
        #[arg(long)]
        catchup_window_secs: Option<u64>,
    },
    /// Schedules, newest first.
    List {
        #[arg(long)]
        agent: Option<String>,
        #[arg(long)]
        enabled: Option<bool>,
        #[arg(long)]
        limit: Option<u32>,
        #[arg(long)]
        after: Option<String>,
    },
    /// One schedule, with its next slots.
    Get {
        id: String,
    },
    /// No slot fires until resumed.
    Pause {
        id: String,
    },
    /// Fire again from the next slot.
    Resume {
        id: String,
    },
    /// Run it now, outside its slots.
    Trigger {
        id: String,
    },
    Delete {
        id: String,
    },
}

pub async fn run(client: &Client, command: SchedulesCommand) -> anyhow::Result<(Value, View)> {
    let view = match command {
        SchedulesCommand::List { .. } => View::Schedules,
        _ => View::Json,
    };
    Ok((
        match command {
            SchedulesCommand::Create {
                agent,
                cron,
                timezone,
                input,
                overlap,
                version,
                catchup_window_secs,
            } => {
                let input: Option<Value> = input.map(|i| crate::read_input(&i)).transpose()?;
                let mut body = json!({ "agent": agent, "cron": cron });
                for (key, value) in [
                    ("timezone", timezone.map(Value::from)),
                    ("input", input),
                    ("overlap", overlap.map(Value::from)),
                    ("version", version.map(Value::from)),
                    ("catchup_window_secs", catchup_window_secs.map(Value::from)),
                ] {
                    if let Some(value) = value {
                        body[key] = value;
                    }
                }
                client.post_json("/v1/schedules", &body).await?
            }
            SchedulesCommand::List {
                agent,
                enabled,
                limit,
                after,
            } => {
                let mut q = Vec::new();
                q.extend(agent.map(|v| ("agent_id", v)));
                q.extend(enabled.map(|v| ("enabled", v.to_string())));
                q.extend(limit.map(|v| ("limit", v.to_string())));
                q.extend(after.map(|v| ("after", v)));
                client.get("/v1/schedules", &q).await?
            }
            SchedulesCommand::Get { id } => client.get(&format!("/v1/schedules/{id}"), &[]).await?,
            SchedulesCommand::Pause { id } => client.post(&format!("/v1/schedules/{id}/pause")).await?,
            SchedulesCommand::Resume { id } => client.post(&format!("/v1/schedules/{id}/resume")).await?,
            SchedulesCommand::Trigger { id } => client.post(&format!("/v1/schedules/{id}/trigger")).await?,
            SchedulesCommand::Delete { id } => {
                client.delete(&format!("/v1/schedules/{id}")).await?;
                json!({ "deleted": id })
            }
        },
        view,
    ))
}
