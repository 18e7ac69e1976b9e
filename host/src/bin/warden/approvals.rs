//! `warden approvals …`: list, read, approve and reject approval requests of a
//! running server (by a request's id, or an execution's open request).

use anyhow::Context;
use clap::Subcommand;
use serde_json::Value;
use warden_host::client::Client;

use crate::output::View;
use crate::{query, read_input};

#[derive(Subcommand)]
pub enum ApprovalsCommand {
    /// Requests, newest first.
    List {
        /// pending, approved, rejected, expired or cancelled.
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        agent: Option<String>,
        #[arg(long)]
        execution: Option<String>,
        #[arg(long)]
        limit: Option<u32>,
        #[arg(long)]
        after: Option<String>,
    },
    Get {
        id: String,
    },
    /// Approve a request (`apr_…`), or an execution's open one (`exec_…`).
    Approve {
        id: String,
        #[arg(long)]
        comment: Option<String>,
        /// JSON handed to the agent.
        #[arg(long)]
        data: Option<String>,
    },
    /// Reject a request (`apr_…`), or an execution's open one (`exec_…`).
    Reject {
        id: String,
        #[arg(long)]
        reason: Option<String>,
    },
}

/// Where a decision on `id` goes: a request, or an execution's open request.
fn decision_path(id: &str, decision: &str) -> String {
    if id.starts_with("exec_") {
        format!("/v1/executions/{id}/{decision}")
    } else {
        format!("/v1/approvals/{id}/{decision}")
    }
}

/// Runs one `warden approvals` command: what to print, and how.
pub async fn run(client: &Client, command: ApprovalsCommand) -> anyhow::Result<(Value, View)> {
    Ok(match command {
        ApprovalsCommand::List {
            status,
            agent,
            execution,
            limit,
            after,
        } => {
            let q = query([
                ("status", status),
                ("agent_id", agent),
                ("execution_id", execution),
                ("limit", limit.map(|v| v.to_string())),
                ("after", after),
            ]);
            (client.get("/v1/approvals", &q).await?, View::Approvals)
        }
        ApprovalsCommand::Get { id } => (client.get(&format!("/v1/approvals/{id}"), &[]).await?, View::Json),
        ApprovalsCommand::Approve { id, comment, data } => {
            let data: Option<Value> = data.map(|d| read_input(&d)).transpose().context("--data")?;
            let body = serde_json::json!({ "comment": comment, "data": data });
            (
                client.post_json(&decision_path(&id, "approve"), &body).await?,
                View::Json,
            )
        }
        ApprovalsCommand::Reject { id, reason } => {
            let body = serde_json::json!({ "reason": reason });
            (
                client.post_json(&decision_path(&id, "reject"), &body).await?,
                View::Json,
            )
        }
    })
}
