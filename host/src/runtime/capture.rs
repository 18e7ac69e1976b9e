//! What a run writes: log lines (from the `log` import and from guest stdout and
//! stderr) and steps, kept in memory with the run's caps and handed to the store
//! when the run ends. Past a cap, writes are dropped and counted (the guest never
//! sees an error); the log then ends with a host line saying what was dropped.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use serde_json::value::RawValue;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};

use crate::config::CaptureLimits;
use crate::events::{EventData, EventLog};
use crate::record::{LogLevel, LogLine, LogStream, Step};
use crate::time::now_ms;

/// A stdout/stderr line longer than this is cut into several lines (and a `log`
/// line cut short).
const MAX_LINE_BYTES: usize = 16 << 10;
/// What one stdout/stderr write may hand over (the WASI `check-write` permit): a
/// write past it traps the guest, as WASI specifies, so the host's work per call
/// stays bounded whatever the guest sends.
const STDIO_PERMIT: usize = 64 << 10;
/// Stderr lines kept for a trap's message.
const STDERR_TAIL_LINES: usize = 3;
/// Longest step name kept (and longest stderr line quoted in a trap message).
const MAX_STEP_NAME_BYTES: usize = 256;

/// The run's log and steps, shared by the store's host calls and its stdio streams.
#[derive(Clone)]
pub struct RunRecord(Arc<Mutex<Recorded>>);

struct Recorded {
    caps: CaptureLimits,
    /// Where log lines and steps are announced as events.
    events: Option<Arc<EventLog>>,
    logs: Vec<LogLine>,
    steps: Vec<Step>,
    log_bytes: usize,
    step_bytes: usize,
    dropped_lines: u64,
    dropped_bytes: u64,
    dropped_steps: u64,
    /// Unfinished lines of stdout and stderr.
    partial: [Vec<u8>; 2],
    /// The last few lines the guest wrote to stderr, oldest first.
    last_stderr: Vec<String>,
    /// Log lines and steps up to these numbers were announced in the run's
    /// earlier life (it is replaying its journal): not announced again.
    announced: (u32, u32),
}

/// What a finished run recorded.
pub struct Recording {
    pub logs: Vec<LogLine>,
    pub steps: Vec<Step>,
    pub logs_truncated: bool,
}

impl RunRecord {
    pub fn new(caps: CaptureLimits, events: Option<Arc<EventLog>>) -> Self {
        Self(Arc::new(Mutex::new(Recorded {
            caps,
            events,
            logs: Vec::new(),
            steps: Vec::new(),
            log_bytes: 0,
            step_bytes: 0,
            dropped_lines: 0,
            dropped_bytes: 0,
            dropped_steps: 0,
            partial: [Vec::new(), Vec::new()],
            last_stderr: Vec::new(),
            announced: (0, 0),
        })))
    }

    /// A resumed run: its earlier life announced log lines up to `logs` and
    /// steps up to `steps`; doing them again announces nothing.
    pub fn announced(&self, logs: u32, steps: u32) {
        self.lock().announced = (logs, steps);
    }

    fn lock(&self) -> MutexGuard<'_, Recorded> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn log(&self, level: LogLevel, message: String) {
        self.lock()
            .push_line(LogStream::Log, level, truncate(message, MAX_LINE_BYTES));
    }

    /// A line of the host's own about the run (stream `host`).
    pub fn note(&self, level: LogLevel, message: String) {
        self.lock().push_line(LogStream::Host, level, message);
    }

    /// Records a step; returns its sequence number (the next one, even when dropped).
    pub fn step(&self, name: String, detail: String) -> u32 {
        let mut r = self.lock();
        let seq = (r.steps.len() as u64 + r.dropped_steps + 1).min(u64::from(u32::MAX)) as u32;
        if r.steps.len() >= r.caps.max_steps {
            r.dropped_steps += 1;
            return seq;
        }
        let room = r.caps.max_step_detail_bytes.min(r.caps.max_steps_bytes - r.step_bytes);
        let detail = step_detail(detail, room);
        r.step_bytes = (r.step_bytes + detail.get().len()).min(r.caps.max_steps_bytes);
        let now = now_ms();
        let step = Step {
            seq,
            name: truncate(name, MAX_STEP_NAME_BYTES),
            detail,
            started_at: now,
            ended_at: now,
        };
        if let Some(events) = &r.events
            && seq > r.announced.1
        {
            events.emit(EventData::Step(&step));
        }
        r.steps.push(step);
        seq
    }

    fn write_stdio(&self, stream: LogStream, bytes: &[u8]) {
        self.lock().write_stdio(stream, bytes);
    }

    /// The guest's last few stderr lines, joined (a panic message, usually),
    /// without Rust's hint about backtraces.
    pub fn last_stderr(&self) -> Option<String> {
        let r = self.lock();
        let partial = &r.partial[stdio_index(LogStream::Stderr)];
        let mut lines: Vec<String> = r.last_stderr.clone();
        if !partial.is_empty() {
            lines.push(String::from_utf8_lossy(partial).into_owned());
        }
        lines.retain(|l| !l.trim().is_empty() && !l.starts_with("note: run with `RUST_BACKTRACE"));
        let keep = lines.len().saturating_sub(STDERR_TAIL_LINES);
        (!lines.is_empty()).then(|| lines[keep..].join(" / "))
    }

    /// Ends the recording: flushes unfinished lines and notes what was dropped.
    pub fn finish(&self) -> Recording {
        let mut r = self.lock();
        for stream in [LogStream::Stdout, LogStream::Stderr] {
            let idx = stdio_index(stream);
            if !r.partial[idx].is_empty() {
                let line = std::mem::take(&mut r.partial[idx]);
                r.push_stdio_line(stream, &line);
            }
        }
        let truncated = r.dropped_lines > 0 || r.dropped_steps > 0;
        if truncated {
            let message = format!(
                "run record truncated: {} log lines ({} bytes) and {} steps dropped over the run's caps \
                 ({} lines, {} bytes, {} steps)",
                r.dropped_lines,
                r.dropped_bytes,
                r.dropped_steps,
                r.caps.max_log_lines,
                r.caps.max_log_bytes,
                r.caps.max_steps
            );
            let seq = r.logs.len() as u32 + 1;
            r.logs.push(LogLine {
                seq,
                ts: now_ms(),
                level: LogLevel::Warn,
                stream: LogStream::Host,
                message,
            });
        }
        Recording {
            logs: std::mem::take(&mut r.logs),
            steps: std::mem::take(&mut r.steps),
            logs_truncated: truncated,
        }
    }

    /// A stdout or stderr stream for the guest's WASI context.
    pub fn stdio(&self, stream: LogStream) -> CaptureStream {
        CaptureStream {
            stream,
            record: self.clone(),
        }
    }
}

impl Recorded {
    fn push_line(&mut self, stream: LogStream, level: LogLevel, message: String) {
        if self.logs.len() >= self.caps.max_log_lines || self.log_bytes + message.len() > self.caps.max_log_bytes {
            self.dropped_lines += 1;
            self.dropped_bytes += message.len() as u64;
            return;
        }
        self.log_bytes += message.len();
        let seq = self.logs.len() as u32 + 1;
        let line = LogLine {
            seq,
            ts: now_ms(),
            level,
            stream,
            message,
        };
        if let Some(events) = &self.events
            && seq > self.announced.0
        {
            events.emit(EventData::Log(&line));
        }
        self.logs.push(line);
    }

    fn push_stdio_line(&mut self, stream: LogStream, bytes: &[u8]) {
        let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
        let text = String::from_utf8_lossy(bytes).into_owned();
        let level = if stream == LogStream::Stderr {
            self.remember_stderr(bytes);
            LogLevel::Error
        } else {
            LogLevel::Info
        };
        self.push_line(stream, level, text);
    }

    /// No more lines fit: whatever comes is only counted.
    fn full(&self) -> bool {
        self.logs.len() >= self.caps.max_log_lines || self.log_bytes >= self.caps.max_log_bytes
    }

    /// Counts what a write past the caps would have logged, without making its
    /// lines (one pass over the bytes); stderr's last lines are still kept for
    /// a trap's message.
    fn drop_stdio(&mut self, stream: LogStream, bytes: &[u8]) {
        let idx = stdio_index(stream);
        let mut lines = bytes.split(|&b| b == b'\n');
        let rest = lines.next_back().unwrap_or_default();
        let ended = bytes.iter().filter(|&&b| b == b'\n').count();
        if ended > 0 {
            self.dropped_lines += ended as u64;
            self.dropped_bytes += (bytes.len() - rest.len()) as u64 + self.partial[idx].len() as u64;
            if stream == LogStream::Stderr {
                let tail: Vec<&[u8]> = lines.rev().take(STDERR_TAIL_LINES).collect();
                for line in tail.into_iter().rev() {
                    self.remember_stderr(line);
                }
            }
            self.partial[idx].clear();
        }
        let keep = rest.len().min(MAX_LINE_BYTES.saturating_sub(self.partial[idx].len()));
        self.dropped_bytes += (rest.len() - keep) as u64;
        self.partial[idx].extend_from_slice(&rest[..keep]);
    }

    fn remember_stderr(&mut self, line: &[u8]) {
        if self.last_stderr.len() == STDERR_TAIL_LINES {
            self.last_stderr.remove(0);
        }
        let line = &line[..line.len().min(MAX_STEP_NAME_BYTES)];
        let text = String::from_utf8_lossy(line).into_owned();
        self.last_stderr.push(truncate(text, MAX_STEP_NAME_BYTES));
    }

    fn write_stdio(&mut self, stream: LogStream, mut bytes: &[u8]) {
        let idx = stdio_index(stream);
        while !bytes.is_empty() {
            if self.full() {
                self.drop_stdio(stream, bytes);
                return;
            }
            match bytes.iter().position(|&b| b == b'\n') {
                Some(end) => {
                    let mut line = std::mem::take(&mut self.partial[idx]);
                    line.extend_from_slice(&bytes[..end]);
                    self.push_stdio_line(stream, &line);
                    bytes = &bytes[end + 1..];
                }
                None => {
                    let room = MAX_LINE_BYTES - self.partial[idx].len();
                    let take = bytes.len().min(room);
                    self.partial[idx].extend_from_slice(&bytes[..take]);
                    bytes = &bytes[take..];
                    if self.partial[idx].len() >= MAX_LINE_BYTES {
                        let line = std::mem::take(&mut self.partial[idx]);
                        self.push_stdio_line(stream, &line);
                    }
                }
            }
        }
    }
}

fn stdio_index(stream: LogStream) -> usize {
    usize::from(stream == LogStream::Stderr)
}

fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// Step details are JSON (as [`crate::json_text`] accepts it); other text is
/// kept as a JSON string; oversized details
/// are replaced by a note of their size.
fn step_detail(detail: String, max_bytes: usize) -> Box<RawValue> {
    let json = if detail.len() > max_bytes {
        serde_json::json!({ "truncated": true, "bytes": detail.len() }).to_string()
    } else if crate::json_text::check(&detail).is_ok() {
        detail
    } else {
        serde_json::Value::String(detail).to_string()
    };
    RawValue::from_string(json).unwrap_or_else(|_| RawValue::NULL.to_owned())
}

/// Guest stdout or stderr: bytes become log lines of the run.
#[derive(Clone)]
pub struct CaptureStream {
    stream: LogStream,
    record: RunRecord,
}

impl IsTerminal for CaptureStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CaptureStream {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for CaptureStream {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        if bytes.len() > STDIO_PERMIT {
            return Err(StreamError::trap(&format!(
                "the guest wrote {} bytes to {} at once, more than the {STDIO_PERMIT} its check-write permitted",
                bytes.len(),
                self.stream.as_str()
            )));
        }
        self.record.write_stdio(self.stream, &bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(STDIO_PERMIT)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CaptureStream {
    async fn ready(&mut self) {}
}

impl AsyncWrite for CaptureStream {
    fn poll_write(self: std::pin::Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let buf = &buf[..buf.len().min(STDIO_PERMIT)];
        self.record.write_stdio(self.stream, buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: std::pin::Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: std::pin::Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
