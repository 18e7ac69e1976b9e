//! OTLP export (cargo feature `otlp`): each ended execution's span tree (see
//! [`crate::trace`]) sent to an OpenTelemetry collector over OTLP/HTTP
//! (protobuf), by the official `opentelemetry-otlp` exporter. Ends are queued
//! (bounded; past it they are dropped and counted, never waited for) and sent
//! by one task in batches: what ends within `linger_ms` of an end goes in one
//! request (at most `batch_executions` ends), so a busy host sends a few
//! requests a second, not one per run. Model calls carry the GenAI semantic
//! conventions' attributes (`gen_ai.*`); the rest keep the names the trace API
//! shows, under `warden.`.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState};
use opentelemetry::{InstrumentationScope, KeyValue, Value};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanExporter as _, SpanLinks};
use tokio::sync::{mpsc, oneshot};

use crate::config::OtlpConfig;
use crate::ports::TraceSink;
use crate::record::{Approval, Execution, Status as RunStatus, Step};
use crate::store::ApprovalStore;
use crate::trace::Span;

/// Approval waits exported per execution, at most.
const MAX_APPROVALS: usize = 100;
/// How long closing waits for what is queued to be sent.
const FLUSH_WAIT: Duration = Duration::from_secs(5);

/// Most bytes of ends (their steps, input and output) one request carries:
/// well under the exporter's and collectors' body limits.
const MAX_BATCH_BYTES: usize = 8 << 20;

enum Msg {
    /// An end, and the bytes it holds while queued.
    Ended(Box<Execution>, Vec<Step>, usize),
    Flush(oneshot::Sender<()>),
}

/// The queue in front of the exporting task, bounded in ends and in bytes.
pub struct Exporter {
    queue: mpsc::Sender<Msg>,
    queued_bytes: Arc<AtomicUsize>,
    max_bytes: usize,
}

/// About how many bytes an end holds while it waits to be sent.
fn size_of(execution: &Execution, steps: &[Step]) -> usize {
    let steps: usize = steps.iter().map(|s| s.detail.get().len() + s.name.len() + 64).sum();
    let output = execution.output.as_ref().map_or(0, |o| o.get().len());
    steps + output + execution.input.get().len() + 1024
}

impl Exporter {
    /// Starts exporting, if `config` names an endpoint.
    pub fn start(config: &OtlpConfig, approvals: Arc<dyn ApprovalStore>) -> anyhow::Result<Option<Arc<Exporter>>> {
        let Some(url) = config.traces_url() else {
            return Ok(None);
        };
        let mut exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(url.clone())
            .with_headers(config.headers.clone())
            .with_timeout(Duration::from_millis(config.timeout_ms))
            .build()
            .map_err(|e| anyhow::anyhow!("otlp: {e}"))?;
        exporter.set_resource(
            &Resource::builder()
                .with_service_name(config.service_name.clone())
                .build(),
        );
        let (queue, rx) = mpsc::channel(config.max_queued_executions);
        let queued_bytes = Arc::new(AtomicUsize::new(0));
        let task = Task {
            exporter,
            approvals,
            batch: config.batch_executions,
            linger: Duration::from_millis(config.linger_ms),
            queued_bytes: Arc::clone(&queued_bytes),
        };
        tokio::spawn(task.send(rx));
        tracing::info!(endpoint = %url, "exporting traces over OTLP");
        Ok(Some(Arc::new(Exporter {
            queue,
            queued_bytes,
            max_bytes: config.max_queued_bytes,
        })))
    }
}

#[async_trait]
impl TraceSink for Exporter {
    fn ended(&self, execution: Execution, steps: Vec<Step>) {
        let size = size_of(&execution, &steps);
        let queued = self.queued_bytes.fetch_add(size, Ordering::Relaxed);
        if queued + size > self.max_bytes
            || self
                .queue
                .try_send(Msg::Ended(Box::new(execution), steps, size))
                .is_err()
        {
            self.queued_bytes.fetch_sub(size, Ordering::Relaxed);
            crate::metrics::otlp_spans("dropped", 1);
        }
    }

    async fn flush(&self) {
        // Bounded as a whole: a collector that is down must not hold up a
        // host that is stopping (what is still queued then is lost).
        let flushed = async {
            let (done, sent) = oneshot::channel();
            if self.queue.send(Msg::Flush(done)).await.is_ok() {
                let _ = sent.await;
            }
        };
        if tokio::time::timeout(FLUSH_WAIT, flushed).await.is_err() {
            tracing::warn!("OTLP export: the last spans were not sent before the host stopped");
        }
    }
}

/// The exporting task's parts.
struct Task {
    exporter: opentelemetry_otlp::SpanExporter,
    approvals: Arc<dyn ApprovalStore>,
    batch: usize,
    linger: Duration,
    queued_bytes: Arc<AtomicUsize>,
}

impl Task {
    /// Takes what is queued (up to `batch` ends and [`MAX_BATCH_BYTES`]),
    /// reads their approval waits in one go, makes their spans (off the
    /// async threads), sends them, and again.
    async fn send(self, mut rx: mpsc::Receiver<Msg>) {
        let scope = InstrumentationScope::builder("warden")
            .with_version(env!("CARGO_PKG_VERSION"))
            .build();
        let mut warned = false;
        while let Some(first) = rx.recv().await {
            let mut flushes = Vec::new();
            let mut ended = Vec::new();
            let mut bytes = 0;
            // What comes within `linger` of the first end goes with it (unless
            // the batch fills first, or the host is closing).
            let deadline = tokio::time::Instant::now().checked_add(self.linger);
            let mut next = Some(first);
            while let Some(msg) = next.take() {
                match msg {
                    Msg::Flush(done) => flushes.push(done),
                    Msg::Ended(execution, steps, size) => {
                        bytes += size;
                        ended.push((execution, steps));
                    }
                }
                if ended.len() < self.batch && bytes < MAX_BATCH_BYTES && flushes.is_empty() {
                    next = match deadline {
                        Some(deadline) => tokio::time::timeout_at(deadline, rx.recv()).await.ok().flatten(),
                        None => rx.try_recv().ok(),
                    };
                }
            }
            if !ended.is_empty() {
                let count = ended.len();
                let ids = ended.iter().map(|(e, _)| e.id.clone()).collect();
                let waits = self.approvals.of_executions(ids).await.unwrap_or_default();
                let scope = scope.clone();
                let made = tokio::task::spawn_blocking(move || {
                    ended
                        .iter()
                        .flat_map(|(execution, steps)| {
                            let mine: Vec<Approval> = waits
                                .iter()
                                .filter(|a| a.execution_id == execution.id)
                                .take(MAX_APPROVALS)
                                .cloned()
                                .collect();
                            span_data(execution, steps, &mine, &scope)
                        })
                        .collect::<Vec<_>>()
                })
                .await;
                self.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
                let result = match made {
                    Ok(spans) => self.exporter.export(spans).await.map_err(|e| e.to_string()),
                    Err(e) => Err(format!("making the spans failed: {e}")),
                };
                match result {
                    Ok(()) => {
                        crate::metrics::otlp_spans("sent", count);
                        warned = false;
                    }
                    Err(e) => {
                        crate::metrics::otlp_spans("failed", count);
                        // Once per outage, not once per batch.
                        if !warned {
                            tracing::warn!(error = %e, "OTLP export failed; spans of this batch are lost");
                            warned = true;
                        }
                    }
                }
            }
            for done in flushes {
                let _ = done.send(());
            }
        }
    }
}

/// An execution's spans as OpenTelemetry's: none for one without a trace id.
fn span_data(
    execution: &Execution,
    steps: &[Step],
    approvals: &[Approval],
    scope: &InstrumentationScope,
) -> Vec<SpanData> {
    let Some(trace_id) = execution.trace_id.as_deref().and_then(|t| TraceId::from_hex(t).ok()) else {
        return Vec::new();
    };
    let spans = crate::trace::spans(execution, steps, approvals);
    let ended_at = execution.completed_at.unwrap_or(execution.created_at);
    spans
        .into_iter()
        .filter_map(|span| {
            let span_id = SpanId::from_hex(&span.span_id).ok()?;
            let is_root = span.kind == "execution";
            let parent = span.parent_id.as_deref().and_then(|p| SpanId::from_hex(p).ok());
            let status = status_of(&span, execution);
            Some(SpanData {
                span_context: SpanContext::new(trace_id, span_id, TraceFlags::SAMPLED, false, TraceState::NONE),
                parent_span_id: parent.unwrap_or(SpanId::INVALID),
                // The root's parent is its caller's span, in another process.
                parent_span_is_remote: is_root && parent.is_some(),
                span_kind: match span.kind.as_str() {
                    "execution" => SpanKind::Server,
                    "llm" | "tool" => SpanKind::Client,
                    _ => SpanKind::Internal,
                },
                name: Cow::Owned(match span.kind.as_str() {
                    "execution" => format!("execution {}", span.name),
                    "llm" => format!("chat {}", span.name),
                    "tool" => format!("tool {}", span.name),
                    "step" | "queue" => span.name.clone(),
                    other => format!("{other} {}", span.name),
                }),
                start_time: at(span.start),
                end_time: at(span.end.unwrap_or(ended_at)),
                attributes: attributes(&span),
                dropped_attributes_count: 0,
                events: SpanEvents::default(),
                links: SpanLinks::default(),
                status,
                instrumentation_scope: scope.clone(),
            })
        })
        .collect()
}

fn at(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// Failed: the execution that did not complete, a call that recorded an error.
fn status_of(span: &Span, execution: &Execution) -> Status {
    if span.kind == "execution" {
        return match (&execution.status, &execution.error) {
            (RunStatus::Completed, _) => Status::Ok,
            (_, Some(error)) => Status::error(format!("{}: {}", error.code, error.message)),
            _ => Status::Unset,
        };
    }
    match span.attributes.get("error").and_then(|e| e.as_str()) {
        Some(message) => Status::error(message.to_owned()),
        None => Status::Unset,
    }
}

/// The span's recorded attributes, `warden.`-prefixed, with a model call's
/// also under the GenAI semantic conventions' names.
fn attributes(span: &Span) -> Vec<KeyValue> {
    let mut out = vec![KeyValue::new("warden.kind", span.kind.clone())];
    let Some(fields) = span.attributes.as_object() else {
        return out;
    };
    for (key, value) in fields {
        if let Some(value) = value_of(value) {
            out.push(KeyValue::new(format!("warden.{key}"), value));
        }
    }
    if span.kind == "llm" {
        out.push(KeyValue::new("gen_ai.operation.name", "chat"));
        out.push(KeyValue::new("gen_ai.request.model", span.name.clone()));
        if let Some(provider) = fields.get("provider").and_then(|p| p.as_str()) {
            out.push(KeyValue::new("gen_ai.provider.name", provider.to_owned()));
        }
        let usage = &span.attributes["usage"];
        for (from, to) in [
            ("prompt", "gen_ai.usage.input_tokens"),
            ("completion", "gen_ai.usage.output_tokens"),
        ] {
            if let Some(n) = usage[from].as_i64() {
                out.push(KeyValue::new(to, n));
            }
        }
    }
    out
}

fn value_of(value: &serde_json::Value) -> Option<Value> {
    Some(match value {
        serde_json::Value::Null => return None,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Value::I64(i),
            None => Value::F64(n.as_f64()?),
        },
        serde_json::Value::String(s) => Value::String(s.clone().into()),
        other => Value::String(other.to_string().into()),
    })
}
