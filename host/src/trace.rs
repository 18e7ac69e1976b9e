//! Traces: W3C Trace Context and each execution's span tree. An execution has
//! a `trace_id` (32 hex digits): the one of a `traceparent` its caller sent,
//! its parent's for a child run, else a fresh one; and a `trace_parent`, the
//! caller's span it hangs under (the `traceparent`'s, or the `agent_call` that
//! made it). Every model call and tool call is a span whose id is derived from
//! the execution's id and the call's place in the run ([`span_id`]), so the
//! `traceparent` a provider or `http_fetch` is sent names the very span the
//! tree shows, and a replay derives the same. The tree (`GET
//! /v1/executions/{id}/trace`, and OTLP export) is built from what the record
//! already keeps: the execution, its wait in the queue, each step (model calls,
//! tool calls, the agent's own) and each approval wait, with times.

use serde::Serialize;

use crate::record::{Approval, Execution, Step};
use crate::time;

/// A `traceparent` header's trace id and parent span id, if it is a valid one:
/// version `00` with exactly `00-<32 hex>-<16 hex>-<2 hex>`; a later version
/// (not `ff`) read by those first four fields (W3C Trace Context,
/// "versioning"). Lowercase hex; neither id all zeros.
pub fn parse(traceparent: &str) -> Option<(String, String)> {
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
    valid.then(|| ((*trace).to_owned(), (*parent).to_owned()))
}

/// A fresh trace id (made without a system call: one per execution).
pub fn new_trace_id() -> String {
    crate::ids::trace()
}

/// The span id (16 hex digits) of the part `local` of execution
/// `execution_id`: `execution`, `queue`, `llm_3` (its third model call),
/// `call_2` (its second tool call), an approval's id, a step's `step_7`.
/// Derived, so the same part always has the same id, even across a replay.
pub fn span_id(execution_id: &str, local: &str) -> String {
    let mut id = crate::digest::sha256_hex(format!("{execution_id}/{local}").as_bytes());
    id.truncate(16);
    if id.bytes().all(|b| b == b'0') {
        // All zeros is not a valid span id; 1 in 2^64, but cheap to rule out.
        id.replace_range(15.., "1");
    }
    id
}

/// The `traceparent` an outgoing call sends: it is the span `span_id` of the
/// trace `trace_id`.
pub fn traceparent(trace_id: &str, span_id: &str) -> String {
    format!("00-{trace_id}-{span_id}-01")
}

/// One span of an execution's tree.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Span {
    /// Unique within the trace (16 hex digits): the id its outgoing calls
    /// sent in `traceparent`.
    pub span_id: String,
    /// For the execution itself, the caller's span (its `traceparent`'s, or
    /// the parent run's `agent_call`), or `null`; for the others, the
    /// execution's span.
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
    let id = |local: &str| span_id(&execution.id, local);
    let root = id("execution");
    let root = root.as_str();
    let mut root_span = span(
        root.into(),
        execution.trace_parent.as_deref(),
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
        id("queue"),
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
        // Model calls record the span they sent; tool calls are `call_N`.
        // (Only the host writes steps named `llm` and `tool`: an agent's own
        // step cannot choose its span.)
        let sent = detail["span_id"]
            .as_str()
            .filter(|s| s.len() == 16 && s.bytes().all(|b| b.is_ascii_hexdigit()));
        let local = match (kind, sent, detail["id"].as_str()) {
            ("llm", Some(sent), _) => sent.to_owned(),
            ("tool", _, Some(call)) => id(call),
            _ => id(&format!("step_{}", step.seq)),
        };
        // A model or tool call's step is written when the call ends, with how
        // long it took: it began that long before.
        let took = detail["duration_ms"].as_i64().filter(|ms| *ms >= 0);
        let start = took.map_or(step.started_at, |ms| step.ended_at - ms);
        let mut s = span(local, Some(root), kind, &name, start, Some(step.ended_at));
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
            id(&approval.id),
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
        let parent = "00f067aa0ba902b7";
        let both = Some((id.to_owned(), parent.to_owned()));
        assert_eq!(parse(&format!("00-{id}-{parent}-01")), both);
        // A later version is read by its first four fields.
        assert_eq!(parse(&format!("01-{id}-{parent}-01-more")), both);
        for bad in [
            format!("ff-{id}-00f067aa0ba902b7-01"),
            format!("00-{id}-00f067aa0ba902b7-01-more"),
            format!("00-{}-00f067aa0ba902b7-01", "0".repeat(32)),
            format!("00-{id}-0000000000000000-01"),
            format!("00-{}-00f067aa0ba902b7-01", id.to_uppercase()),
            format!("00-{id}-00f067aa0ba902b7"),
            "garbage".to_owned(),
        ] {
            assert_eq!(parse(&bad), None, "{bad}");
        }
        let span = span_id("exe_1", "llm_1");
        assert_eq!(span.len(), 16);
        assert_eq!(span, span_id("exe_1", "llm_1"), "derived: the same part, the same span");
        assert_ne!(span, span_id("exe_1", "llm_2"));
        assert_ne!(span, span_id("exe_2", "llm_1"));
        assert_eq!(parse(&traceparent(id, &span)), Some((id.to_owned(), span)));
        assert!(parse(&format!("00-{}-{parent}-01", new_trace_id())).is_some());
    }
}
