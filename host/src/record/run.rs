//! What a run leaves behind besides its record: log lines, steps, artifacts,
//! tool calls, and model token usage. Pure data.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::time;

/// Model tokens, per call or summed over a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Usage {
    pub prompt: u64,
    pub completion: u64,
    pub total: u64,
    pub cache_read: u64,
    pub cache_write: u64,
}

impl Usage {
    pub fn add(&mut self, other: &Usage) {
        self.prompt += other.prompt;
        self.completion += other.completion;
        self.total += other.total;
        self.cache_read += other.cache_read;
        self.cache_write += other.cache_write;
    }
}

/// One tool call, as the execution record shows it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ToolCallRecord {
    pub id: String,
    pub name: String,
    pub arguments: serde_json::Value,
    pub result: serde_json::Value,
    pub error: Option<String>,
    pub duration_ms: u64,
}

/// A file a run stored (a screenshot, a report), content-addressed on disk.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Artifact {
    pub id: String,
    pub execution_id: String,
    pub name: String,
    pub media_type: String,
    pub size: u64,
    pub sha256: String,
    #[serde(serialize_with = "time::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
}

impl Artifact {
    pub fn is_image(&self) -> bool {
        self.media_type.starts_with("image/")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }

    pub fn parse(text: &str) -> Self {
        match text {
            "trace" => LogLevel::Trace,
            "debug" => LogLevel::Debug,
            "warn" => LogLevel::Warn,
            "error" => LogLevel::Error,
            _ => LogLevel::Info,
        }
    }
}

/// Where a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LogStream {
    /// The `log` import.
    Log,
    Stdout,
    Stderr,
    /// The host, about the run (truncation markers and the like).
    Host,
}

impl LogStream {
    pub fn as_str(self) -> &'static str {
        match self {
            LogStream::Log => "log",
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
            LogStream::Host => "host",
        }
    }

    pub fn parse(text: &str) -> Self {
        match text {
            "stdout" => LogStream::Stdout,
            "stderr" => LogStream::Stderr,
            "host" => LogStream::Host,
            _ => LogStream::Log,
        }
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LogLine {
    pub seq: u32,
    #[serde(serialize_with = "time::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub ts: i64,
    pub level: LogLevel,
    pub stream: LogStream,
    pub message: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Step {
    pub seq: u32,
    pub name: String,
    #[schema(value_type = serde_json::Value)]
    pub detail: Box<RawValue>,
    #[serde(serialize_with = "time::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub started_at: i64,
    #[serde(serialize_with = "time::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub ended_at: i64,
}
