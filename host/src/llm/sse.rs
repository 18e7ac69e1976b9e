//! Reading a `text/event-stream` response: events (`event:` name and joined
//! `data:` lines) as they arrive, with a cap on how much one event may buffer.

use super::ProviderError;

/// Longest event accepted; a stream that never ends an event is malformed.
const MAX_EVENT_BYTES: usize = 4 << 20;

pub struct Event {
    pub name: Option<String>,
    pub data: String,
}

pub struct EventStream {
    response: reqwest::Response,
    buffer: Vec<u8>,
    provider: String,
    done: bool,
}

impl EventStream {
    pub fn new(provider: &str, response: reqwest::Response) -> Self {
        Self {
            response,
            buffer: Vec::new(),
            provider: provider.to_owned(),
            done: false,
        }
    }

    /// The next event, or `None` at the end of the stream.
    pub async fn next(&mut self) -> Result<Option<Event>, ProviderError> {
        loop {
            if let Some(event) = self.take_event() {
                return Ok(Some(event));
            }
            if self.done {
                return Ok(None);
            }
            match self.response.chunk().await {
                Ok(Some(chunk)) => {
                    self.buffer.extend_from_slice(&chunk);
                    if self.buffer.len() > MAX_EVENT_BYTES {
                        return Err(ProviderError::permanent(format!(
                            "{}: malformed stream: an event over {MAX_EVENT_BYTES} bytes",
                            self.provider
                        )));
                    }
                }
                Ok(None) => {
                    self.done = true;
                    // A last event without its blank line still counts.
                    if !self.buffer.iter().all(u8::is_ascii_whitespace) {
                        self.buffer.extend_from_slice(b"\n\n");
                    }
                }
                Err(e) => return Err(ProviderError::from_reqwest(&self.provider, e)),
            }
        }
    }

    fn take_event(&mut self) -> Option<Event> {
        loop {
            let (end, sep) = find_blank_line(&self.buffer)?;
            let raw: Vec<u8> = self.buffer.drain(..end + sep).collect();
            let text = String::from_utf8_lossy(&raw[..end]);
            let mut name = None;
            let mut data: Vec<&str> = Vec::new();
            for line in text.lines() {
                if let Some(v) = line.strip_prefix("data:") {
                    data.push(v.strip_prefix(' ').unwrap_or(v));
                } else if let Some(v) = line.strip_prefix("event:") {
                    name = Some(v.trim().to_owned());
                }
            }
            if !data.is_empty() || name.is_some() {
                return Some(Event {
                    name,
                    data: data.join("\n"),
                });
            }
        }
    }
}

/// Where the first blank line (`\n\n` or `\r\n\r\n`) starts, and its length.
fn find_blank_line(buf: &[u8]) -> Option<(usize, usize)> {
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2));
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| (i, 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}
