//! MCP tasks (the `io.modelcontextprotocol/tasks` extension) over executions:
//! a task's id is its execution's, so a task outlives the connection and the
//! host's restarts as the execution does. `tasks/get` reads the execution (its
//! last attempt), `tasks/cancel` cancels it, and a run waiting for an approval
//! is `input_required`, its request an elicitation that `tasks/update` answers
//! (approve or reject, with an admin or approver key).

use std::sync::Arc;

use rmcp::ErrorData;
use rmcp::model::{
    DetailedTask, GetTaskResult, InputRequest, InputRequests, InputResponses, Task, TaskPayload, TaskStatus,
};
use serde_json::{Value, json};

use crate::app::App;
use crate::auth::Caller;
use crate::executions::{Ask, Decider};
use crate::manifest::MAX_ATTEMPTS;
use crate::record::{Execution, Role, Status};
use crate::time;

/// How often a client should look again at a task.
const POLL_INTERVAL_MS: u64 = 1_000;
/// Longest comment taken from an elicitation answer.
const MAX_COMMENT_CHARS: usize = 4_000;

fn internal(e: impl std::fmt::Display) -> ErrorData {
    ErrorData::internal_error(e.to_string(), None)
}

fn no_task(id: &str) -> ErrorData {
    ErrorData::invalid_params(format!("no task {id:?}"), None)
}

/// Where task `id` is: its last attempt as stored, or an attempt that is live
/// and not stored yet.
enum Current {
    Stored(Box<Execution>),
    Live(String),
}

/// The execution behind task `id`, if it is the caller's: its last attempt
/// (a failed attempt's retry carries the task on).
async fn execution(app: &Arc<App>, caller: &Caller, id: &str) -> Result<Current, ErrorData> {
    match app.executions.workspace_of(id).await.map_err(internal)? {
        Some(w) if w == caller.workspace => {}
        _ => return Err(no_task(id)),
    }
    let mut attempt = id.to_owned();
    let mut last = None;
    for _ in 0..=MAX_ATTEMPTS {
        let Some(stored) = app.stores.executions.get(&attempt).await.map_err(internal)? else {
            return Ok(Current::Live(attempt));
        };
        match (&stored.status, &stored.retried_by) {
            (Status::Failed, Some(next)) => attempt = next.clone(),
            // Failed, and its retry not linked yet: still live until it is.
            (Status::Failed, None) if app.executions.live_agent(&attempt).is_some() => {
                return Ok(Current::Live(attempt));
            }
            _ => return Ok(Current::Stored(Box::new(stored))),
        }
        last = Some(stored);
    }
    // A longer chain of retries asked for by hand: the last one reached.
    last.map(|e| Current::Stored(Box::new(e)))
        .ok_or_else(|| internal("the task's retries could not be read"))
}

fn task(id: &str, execution: Option<&Execution>, ttl_ms: u64) -> Task {
    let now = time::now_ms();
    let created = execution.map_or(now, |e| e.created_at);
    let updated = execution.map_or(now, |e| e.completed_at.or(e.started_at).unwrap_or(e.created_at));
    Task::new(
        id,
        TaskStatus::Working,
        time::to_rfc3339(created),
        time::to_rfc3339(updated),
    )
    .with_ttl_ms(ttl_ms)
    .with_poll_interval_ms(POLL_INTERVAL_MS)
}

/// The task a call becomes: the execution as it is now.
pub async fn seed(app: &Arc<App>, id: &str) -> Result<Task, ErrorData> {
    let execution = app.stores.executions.get(id).await.map_err(internal)?;
    let mut seed = task(id, execution.as_ref(), app.config.mcp.task_ttl_ms);
    if execution.is_some_and(|e| e.status == Status::AwaitingApproval) {
        seed.status = TaskStatus::InputRequired;
    }
    Ok(seed)
}

/// `tasks/get`.
pub async fn get(app: &Arc<App>, caller: &Caller, id: &str) -> Result<GetTaskResult, ErrorData> {
    let execution = match execution(app, caller, id).await? {
        Current::Stored(e) => Some(*e),
        Current::Live(_) => None,
    };
    let base = task(id, execution.as_ref(), app.config.mcp.task_ttl_ms);
    let payload = match execution.as_ref().map(|e| e.status) {
        None | Some(Status::Pending | Status::Queued | Status::Running | Status::CancelRequested) => {
            TaskPayload::Working
        }
        Some(Status::Cancelled) => TaskPayload::Cancelled,
        Some(Status::AwaitingApproval) => {
            match approval_request(app, execution.as_ref().map_or(id, |e| &e.id)).await? {
                Some(input_requests) => TaskPayload::InputRequired { input_requests },
                // Decided a moment ago: it runs again.
                None => TaskPayload::Working,
            }
        }
        // Completed, failed and rejected runs are completed calls (a failure is
        // a tool error, not a protocol one).
        Some(_) => {
            let result = execution.as_ref().map(super::agents::result).map(serde_json::to_value);
            match result {
                Some(Ok(Value::Object(result))) => TaskPayload::Completed { result },
                _ => return Err(internal("the execution's result could not be encoded")),
            }
        }
    };
    Ok(GetTaskResult::new(DetailedTask::new(base, payload)))
}

/// The open approval request of an execution, as an elicitation keyed by the
/// approval's id.
async fn approval_request(app: &Arc<App>, execution_id: &str) -> Result<Option<InputRequests>, ErrorData> {
    let open = match app
        .stores
        .approvals
        .of_execution(execution_id)
        .await
        .map_err(internal)?
    {
        Some(a) if a.status == crate::record::ApprovalStatus::Pending => a,
        _ => return Ok(None),
    };
    let request = json!({
        "method": "elicitation/create",
        "params": {
            "mode": "form",
            "message": format!("{}\n\n{}", open.title, open.detail.get()),
            "requestedSchema": {
                "type": "object",
                "properties": {
                    "approve": { "type": "boolean", "title": "Approve", "description": "true approves, false rejects" },
                    "comment": { "type": "string", "title": "Comment" },
                },
                "required": ["approve"],
            },
        },
    });
    let request: InputRequest = serde_json::from_value(request).map_err(internal)?;
    Ok(Some(InputRequests::from([(open.id, request)])))
}

/// `tasks/update`: each answer decides the approval request it is keyed by
/// (`accept` with `approve: true` approves; `decline`, or `approve: false`,
/// rejects; `cancel` leaves it open).
pub async fn update(app: &Arc<App>, caller: &Caller, id: &str, answers: InputResponses) -> Result<(), ErrorData> {
    let attempt = match execution(app, caller, id).await? {
        Current::Stored(e) => e.id,
        Current::Live(attempt) => attempt,
    };
    let who = Decider::of_key(
        &caller.workspace,
        caller.key_id.as_deref(),
        caller.key_name.as_deref(),
        caller.role,
    )
    .ok_or_else(|| ErrorData::invalid_request("deciding approval requests needs an admin or approver key", None))?;
    for (approval_id, answer) in answers {
        let asked = app.stores.approvals.get(&approval_id).await.map_err(internal)?;
        if asked.is_none_or(|a| a.execution_id != attempt) {
            return Err(ErrorData::invalid_params(
                format!("task {id} has no approval request {approval_id:?}"),
                None,
            ));
        }
        let approve = match answer["action"].as_str() {
            Some("accept") => answer["content"]["approve"].as_bool().unwrap_or(false),
            Some("decline") => false,
            _ => continue,
        };
        let comment = answer["content"]["comment"]
            .as_str()
            .map(|c| c.chars().take(MAX_COMMENT_CHARS).collect());
        let ask = Ask {
            approve,
            comment,
            data: None,
        };
        app.executions
            .decide(&who, &approval_id, ask)
            .await
            .map_err(|e| ErrorData::invalid_request(e.to_string(), None))?;
    }
    Ok(())
}

/// `tasks/cancel`: cancels the execution's current attempt (a finished one
/// stays as it is). Not with an approver key, as over the API.
pub async fn cancel(app: &Arc<App>, caller: &Caller, id: &str) -> Result<(), ErrorData> {
    if caller.role == Role::Approver {
        return Err(ErrorData::invalid_request(
            "an approver key does not cancel executions",
            None,
        ));
    }
    let current = match execution(app, caller, id).await? {
        Current::Stored(e) if e.status.is_terminal() => return Ok(()),
        Current::Stored(e) => e.id,
        Current::Live(attempt) => attempt,
    };
    app.executions.cancel(&current).await.map_err(internal)?;
    Ok(())
}
