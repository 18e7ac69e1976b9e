//! Traces: W3C Trace Context and each execution's span tree. An execution has
//! a `trace_id` (32 hex digits): the one of a `traceparent` its caller sent,
//! its parent's for a child run, else a fresh one. Every model call and
//! `http_fetch` it makes sends `traceparent: 00-{trace_id}-{span}-01` with a
//! span of its own, so a provider's or a service's logs line up with the run.
//! The tree (`GET /v1/executions/{id}/trace`) is built from what the record
//! already keeps: the execution, its wait in the queue, each step (model calls,
//! tool calls, the agent's own) and each approval wait, with times.

use serde::Serialize;

use crate::record::{Approval, Execution, Step};
use crate::time;

/// A `traceparent` header's trace id, if it is a valid one: version `00` with
/// exactly `00-<32 hex>-<16 hex>-<2 hex>`; a later version (not `ff`) read by
/// those first four fields (W3C Trace Context, "versioning"). Lowercase hex;
/// neither id all zeros.
pub fn trace_id_of(traceparent: &str) -> Option<String> {
    let parts: Vec<&str> = traceparent.trim().split('-').collect();
    let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    let (&version, rest) = parts.split_first()?;
    let fields_fit = match version {
        "00" => rest.len() == 3,
        "ff" => false,
        v => hex(v, 2) && rest.len() >= 3,
    };
    let [trace, parent, flags] = rest.get(..3)? else {
        return None;
    };
    let valid = fields_fit
        && hex(trace, 32)
        && hex(parent, 16)
        && hex(flags, 2)
        && trace.bytes().any(|b| b != b'0')
        && parent.bytes().any(|b| b != b'0');
    valid.then(|| (*trace).to_owned())
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    if getrandom::fill(&mut buf).is_err() || buf.iter().all(|b| *b == 0) {
        // Ids need to be unique, not secret: a fresh ULID's digits will do.
        let ulid = crate::ids::trace();
        return ulid.get(32 - bytes * 2..).unwrap_or(&ulid).to_owned();
    }
    crate::digest::hex(&buf)
}

/// A fresh trace id (made without a system call: one per execution).
pub fn new_trace_id() -> String {
    crate::ids::trace()
}

/// The `traceparent` of one outgoing call of a run in `trace_id`: a new span.
pub fn traceparent(trace_id: &str) -> String {
    format!("00-{trace_id}-{}-01", random_hex(8))
}

/// One span of an execution's tree.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Span {
    /// Unique within the trace.
    pub span_id: String,
    /// `null` for the execution itself.
    pub parent_id: Option<String>,
    /// `execution`, `queue`, `llm`, `tool`, `approval`, or the name of one of
    /// the agent's own steps.
    pub kind: String,
    pub name: String,
    #[serde(serialize_with = "time::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub start: i64,
    /// `null` while it goes on.
    #[serde(serialize_with = "time::serialize_opt")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub end: Option<i64>,
    pub duration_ms: Option<i64>,
    /// What the step or approval recorded (model, tokens, tool, decision...).
    #[schema(value_type = Object)]
    pub attributes: serde_json::Value,
}

fn span(id: String, parent: Option<&str>, kind: &str, name: &str, start: i64, end: Option<i64>) -> Span {
    Span {
        span_id: id,
        parent_id: parent.map(str::to_owned),
        kind: kind.to_owned(),
        name: name.to_owned(),
        start,
        end,
        duration_ms: end.map(|e| (e - start).max(0)),
        attributes: serde_json::Value::Object(serde_json::Map::new()),
    }
}

/// The execution's spans: the execution first, then its children by start.
pub fn spans(execution: &Execution, steps: &[Step], approvals: &[Approval]) -> Vec<Span> {
    let root = "execution";
    let mut root_span = span(
        root.into(),
        None,
        "execution",
        &execution.agent_name,
        execution.created_at,
        execution.completed_at,
    );
    root_span.attributes = serde_json::json!({
        "execution_id": execution.id,
        "status": execution.status.as_str(),
        "trigger": execution.trigger.as_str(),
        "agent_version": execution.agent_version,
    });
    let mut children = Vec::new();
    let queue_end = execution.started_at.or(execution.completed_at);
    children.push(span(
        "queue".into(),
        Some(root),
        "queue",
        "queued",
        execution.created_at,
        queue_end,
    ));
    for step in steps {
        let detail: serde_json::Value = serde_json::from_str(step.detail.get()).unwrap_or_default();
        let (kind, name) = match step.name.as_str() {
            "llm" => ("llm", detail["model"].as_str().unwrap_or("model").to_owned()),
            "tool" => ("tool", detail["name"].as_str().unwrap_or("tool").to_owned()),
            other => ("step", other.to_owned()),
        };
        // A model or tool call's step is written when the call ends, with how
        // long it took: it began that long before.
        let took = detail["duration_ms"].as_i64().filter(|ms| *ms >= 0);
        let start = took.map_or(step.started_at, |ms| step.ended_at - ms);
        let mut s = span(
            format!("step-{}", step.seq),
            Some(root),
            kind,
            &name,
            start,
            Some(step.ended_at),
        );
        // An agent's own step may record any JSON: attributes are an object.
        s.attributes = match detail {
            serde_json::Value::Object(_) => detail,
            serde_json::Value::Null => s.attributes,
            other => serde_json::json!({ "detail": other }),
        };
        children.push(s);
    }
    for approval in approvals {
        let mut s = span(
            approval.id.clone(),
            Some(root),
            "approval",
            &approval.title,
            approval.created_at,
            approval.decided_at,
        );
        s.attributes = serde_json::json!({
            "status": approval.status.as_str(),
            "decided_by": approval.decided_by_name,
        });
        children.push(s);
    }
    children.sort_by_key(|s| s.start);
    let mut out = Vec::with_capacity(children.len() + 1);
    out.push(root_span);
    out.extend(children);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparents_are_read_as_the_standard_says() {
        let id = "4bf92f3577b34da6a3ce929d0e0e4736";
        assert_eq!(
            trace_id_of(&format!("00-{id}-00f067aa0ba902b7-01")).as_deref(),
            Some(id)
        );
        // A later version is read by its first four fields.
        assert_eq!(
            trace_id_of(&format!("01-{id}-00f067aa0ba902b7-01-more")).as_deref(),
            Some(id)
        );
        for bad in [
            format!("ff-{id}-00f067aa0ba902b7-01"),
            format!("00-{id}-00f067aa0ba902b7-01-more"),
            format!("00-{}-00f067aa0ba902b7-01", "0".repeat(32)),
            format!("00-{id}-0000000000000000-01"),
            format!("00-{}-00f067aa0ba902b7-01", id.to_uppercase()),
            format!("00-{id}-00f067aa0ba902b7"),
            "garbage".to_owned(),
        ] {
            assert_eq!(trace_id_of(&bad), None, "{bad}");
        }
        let made = traceparent(id);
        assert_eq!(trace_id_of(&made).as_deref(), Some(id));
        assert_ne!(made, traceparent(id), "each call is a span of its own");
        assert!(trace_id_of(&format!("00-{}-00f067aa0ba902b7-01", new_trace_id())).is_some());
        assert_eq!(random_hex(8).len(), 16);
    }
}
