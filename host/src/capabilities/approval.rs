//! `warden:agent/approval`: a run asks a person to decide. The request is
//! stored and the execution is `awaiting_approval`; the run waits for the
//! decision a short grace in memory, then (durable runs) is unloaded: its
//! journal holds the request's start, and the decision resumes it by replay,
//! which finds the request again and answers from its decision. The time spent
//! waiting is not counted against the run's timeout.

use std::time::Duration;

use serde_json::{Value, json};

use crate::ports::Reach;
use crate::record::{Approval, ApprovalStatus, JournalKind};
use crate::runtime::bindings::warden::agent::approval::{ApprovalRequest as Request, Decision, Error, Host};
use crate::runtime::journal::{self, Replayed};
use crate::runtime::{RunState, Stop};
use crate::{ids, time};

/// Longest title.
const MAX_TITLE_BYTES: usize = 256;
/// Longest detail.
const MAX_DETAIL_BYTES: usize = 64 << 10;
/// Most approvers named.
const MAX_APPROVERS: usize = 32;
/// Longest timeout a request may ask for (a year).
const MAX_TIMEOUT_SECS: u64 = 366 * 24 * 3600;

/// Why a request is refused before anything is stored.
fn invalid(req: &Request) -> Option<String> {
    if req.title.trim().is_empty() || req.title.len() > MAX_TITLE_BYTES {
        return Some(format!("the title must be 1 to {MAX_TITLE_BYTES} bytes"));
    }
    if req.detail.len() > MAX_DETAIL_BYTES {
        return Some(format!(
            "the detail is {} bytes, over the limit of {MAX_DETAIL_BYTES}",
            req.detail.len()
        ));
    }
    if let Err(e) = crate::json_text::check(&req.detail) {
        return Some(format!("the detail is not JSON the host accepts: {e}"));
    }
    if req.approvers.len() > MAX_APPROVERS || req.approvers.iter().any(|a| a.is_empty() || a.len() > 128) {
        return Some(format!(
            "at most {MAX_APPROVERS} approvers, each a key name of 1 to 128 bytes"
        ));
    }
    if req.timeout_secs.is_some_and(|t| t == 0 || t > MAX_TIMEOUT_SECS) {
        return Some(format!("timeout_secs must be 1 to {MAX_TIMEOUT_SECS}"));
    }
    None
}

/// A decision as the journal keeps it (and the guest gets it).
fn decision_json(a: &Approval) -> String {
    json!({
        "status": a.status,
        "comment": a.comment,
        "data": a.data,
    })
    .to_string()
}

impl RunState {
    /// Answers the guest with a decision, noting a refusal: an agent that
    /// gives up on it ends `rejected`.
    fn answer(&mut self, recorded: &str) -> Decision {
        let v: Value = serde_json::from_str(recorded).unwrap_or(Value::Null);
        let comment = v["comment"].as_str().unwrap_or_default().to_owned();
        match v["status"].as_str() {
            Some("approved") => {
                self.refusal = None;
                Decision::Approved(match &v["data"] {
                    Value::Null => None,
                    data => Some(data.to_string()),
                })
            }
            Some("expired") => {
                self.refusal = Some("approval_expired");
                Decision::Expired
            }
            _ => {
                self.refusal = Some("rejected");
                Decision::Rejected(comment)
            }
        }
    }
}

impl Host for RunState {
    async fn request(&mut self, req: Request) -> wasmtime::Result<Result<Decision, Error>> {
        if let Some(why) = invalid(&req) {
            return Ok(Err(Error::InvalidRequest(why)));
        }
        let fingerprint = journal::fingerprint(&[req.title.as_bytes(), req.detail.as_bytes()]);
        let mut found = None;
        if let Some(journal) = &self.journal {
            match journal
                .take(
                    JournalKind::Approval,
                    &fingerprint,
                    &format!("approval {:?}", req.title),
                )
                .map_err(wasmtime::Error::new)?
            {
                Some(Replayed::Done(recorded)) => return Ok(Ok(self.answer(&recorded))),
                Some(Replayed::Started { data, seq }) => {
                    let start: Value = serde_json::from_str(&data).unwrap_or(Value::Null);
                    let id = start["id"].as_str().unwrap_or_default().to_owned();
                    found = Some((id, seq));
                }
                None => {}
            }
        }
        let (id, seq) = match found {
            Some(found) => found,
            None => {
                let id = ids::approval();
                let seq = match &self.journal {
                    Some(journal) => Some(
                        journal
                            .start(
                                JournalKind::Approval,
                                &fingerprint,
                                json!({ "id": id }).to_string(),
                                true,
                            )
                            .await
                            .map_err(wasmtime::Error::new)?,
                    ),
                    None => None,
                };
                (id, seq.unwrap_or(0))
            }
        };
        let desk = std::sync::Arc::clone(&self.grants.desk);
        let mut approval = desk.get(&id).await.map_err(Stop::unrecorded)?;
        // The execution's start is stored before it can be `awaiting_approval`.
        self.grants
            .effects
            .before_effect(Reach::Store)
            .await
            .map_err(Stop::unrecorded)?;
        if let Some(pending) = approval.as_ref().filter(|a| a.status == ApprovalStatus::Pending) {
            // Resumed before a decision: waiting again (announced in its earlier life).
            desk.open(pending.clone(), false).await.map_err(Stop::unrecorded)?;
        }
        if approval.is_none() {
            let now = time::now_ms();
            let ctx = &self.grants.ctx;
            let request = Approval {
                id: id.clone(),
                workspace: String::new(),
                agent_id: ctx.agent_id.clone(),
                execution_id: ctx.execution_id.clone(),
                title: req.title,
                detail: crate::json_text::raw(req.detail)
                    .map(Into::into)
                    .unwrap_or_else(|_| serde_json::value::RawValue::NULL.to_owned().into()),
                approvers: req.approvers,
                status: ApprovalStatus::Pending,
                created_at: now,
                expires_at: req
                    .timeout_secs
                    .map(|s| now.saturating_add((s.min(MAX_TIMEOUT_SECS) * 1000) as i64)),
                decided_at: None,
                decided_by: None,
                decided_by_name: None,
                comment: None,
                data: None,
            };
            desk.open(request.clone(), true).await.map_err(Stop::unrecorded)?;
            approval = Some(request);
        }
        let mut approval = approval.ok_or_else(|| wasmtime::Error::msg("approval request vanished"))?;
        if approval.status == ApprovalStatus::Pending {
            // A durable run waits a grace, then is unloaded; another waits here.
            let grace = match &self.journal {
                Some(_) => self.grants.approval_grace,
                None => Duration::MAX,
            };
            let pauses = std::sync::Arc::clone(&self.grants.pauses);
            let waiting = pauses.begin();
            let decided = desk.wait(&id, grace).await;
            drop(waiting);
            match decided {
                Some(decided) => approval = decided,
                None => {
                    if let Some(journal) = &self.journal {
                        journal.persist().await.map_err(wasmtime::Error::new)?;
                    }
                    self.suspending = true;
                    return Err(wasmtime::Error::new(Stop::suspended()));
                }
            }
        }
        let recorded = decision_json(&approval);
        if let Some(journal) = &self.journal {
            journal
                .record(JournalKind::Approval, &fingerprint, Some(seq), recorded.clone())
                .map_err(wasmtime::Error::new)?;
        }
        desk.decided(&approval).await;
        Ok(Ok(self.answer(&recorded)))
    }
}
