//! Warden guest SDK: write an agent as one plain Rust function over serde types.
//!
//! ```ignore
//! use serde::{Deserialize, Serialize};
//! use warden_sdk::{AgentError, log, step};
//!
//! #[derive(Deserialize)]
//! struct Input { name: String }
//!
//! #[derive(Serialize)]
//! struct Output { greeting: String }
//!
//! fn run(input: Input) -> Result<Output, AgentError> {
//!     log::info(format!("greeting {}", input.name));
//!     step("greet", &serde_json::json!({ "name": input.name }));
//!     Ok(Output { greeting: format!("Hello, {}!", input.name) })
//! }
//!
//! warden_sdk::agent!(run);
//! ```
//!
//! The SDK owns the bindings to the `warden:agent` WIT world, JSON in and out, and
//! the typed error an agent returns. It must not hide host failures: every helper
//! either does what it says or reports why not.

extern crate self as warden_sdk;

use serde::Serialize;
use serde::de::DeserializeOwned;

#[doc(hidden)]
pub use wit_bindgen as __wit_bindgen;

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "agent",
        path: "../wit",
        pub_export_macro: true,
        export_macro_name: "__export_agent",
        default_bindings_module: "warden_sdk::bindings",
        runtime_path: "warden_sdk::__wit_bindgen::rt",
    });
}

pub use serde;
pub use serde_json;

use bindings::warden::agent::{log as wit_log, step as wit_step, types};

/// A typed failure: the execution ends `failed` with this `code` and `message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentError {
    /// Machine-readable, snake_case: `invalid_input`, `not_found`, ...
    pub code: String,
    /// For a person.
    pub message: String,
}

impl AgentError {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
        }
    }

    /// The input did not fit what the agent expects (retrying will not help).
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::new("invalid_input", message)
    }
}

impl std::fmt::Display for AgentError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for AgentError {}

/// Log lines recorded on the execution, with a level and a timestamp.
pub mod log {
    use super::wit_log::{Level, write};

    pub fn trace(message: impl AsRef<str>) {
        write(Level::Trace, message.as_ref());
    }
    pub fn debug(message: impl AsRef<str>) {
        write(Level::Debug, message.as_ref());
    }
    pub fn info(message: impl AsRef<str>) {
        write(Level::Info, message.as_ref());
    }
    pub fn warn(message: impl AsRef<str>) {
        write(Level::Warn, message.as_ref());
    }
    pub fn error(message: impl AsRef<str>) {
        write(Level::Error, message.as_ref());
    }
}

/// Language models through the host (keys, network and budgets stay there).
pub mod llm {
    use super::AgentError;
    pub use crate::bindings::warden::agent::llm::{
        Completion, Error, FinishReason, Message, Options, Role, ToolCall, ToolDefinition, Usage,
    };

    impl Message {
        fn new(role: Role, content: impl Into<String>) -> Self {
            Message {
                role,
                content: content.into(),
                tool_calls: Vec::new(),
                tool_call_id: None,
            }
        }
        pub fn system(content: impl Into<String>) -> Self {
            Self::new(Role::System, content)
        }
        pub fn user(content: impl Into<String>) -> Self {
            Self::new(Role::User, content)
        }
        pub fn assistant(content: impl Into<String>) -> Self {
            Self::new(Role::Assistant, content)
        }
        /// The assistant turn that asked for tools (put it back before the results).
        pub fn assistant_calls(completion: &Completion) -> Self {
            Message {
                role: Role::Assistant,
                content: completion.content.clone(),
                tool_calls: completion.tool_calls.clone(),
                tool_call_id: None,
            }
        }
        /// A tool's result, answering the call with `call_id`.
        pub fn tool_result(call_id: impl Into<String>, content: impl Into<String>) -> Self {
            Message {
                role: Role::Tool,
                content: content.into(),
                tool_calls: Vec::new(),
                tool_call_id: Some(call_id.into()),
            }
        }
    }

    impl ToolDefinition {
        /// A tool the model may call; `parameters` is its JSON Schema.
        pub fn new(name: impl Into<String>, description: impl Into<String>, parameters: serde_json::Value) -> Self {
            ToolDefinition {
                name: name.into(),
                description: description.into(),
                parameters: parameters.to_string(),
            }
        }
    }

    /// Options with nothing set: the manifest's default model.
    pub fn options() -> Options {
        Options {
            model: None,
            temperature: None,
            max_tokens: None,
            stop: Vec::new(),
        }
    }

    /// Sends a chat; the host's errors become typed agent errors
    /// (`model_not_allowed`, `llm_error`, `invalid_request`).
    pub fn chat(messages: &[Message], tools: &[ToolDefinition], options: &Options) -> Result<Completion, AgentError> {
        crate::bindings::warden::agent::llm::chat(messages, tools, options).map_err(|e| match e {
            Error::ModelNotAllowed(m) => AgentError::new("model_not_allowed", m),
            Error::BudgetExceeded(m) => AgentError::new("budget_exceeded", m),
            Error::Provider(m) => AgentError::new("llm_error", m),
            Error::InvalidRequest(m) => AgentError::new("invalid_request", m),
        })
    }
}

/// The host's tools (`kv`, `http_fetch`, `agent_call`), as the manifest allows.
pub mod tools {
    use super::AgentError;
    pub use crate::bindings::warden::agent::tools::{Error, ToolInfo};

    /// The tools this agent may call.
    pub fn available() -> Vec<ToolInfo> {
        crate::bindings::warden::agent::tools::available()
    }

    /// Calls a tool with JSON arguments; its errors become `tool_error`.
    pub fn call<T: serde::Serialize + ?Sized>(name: &str, arguments: &T) -> Result<serde_json::Value, AgentError> {
        let arguments =
            serde_json::to_string(arguments).map_err(|e| AgentError::new("tool_error", format!("arguments: {e}")))?;
        let result = crate::bindings::warden::agent::tools::call(name, &arguments).map_err(|e| {
            let message = match e {
                Error::UnknownTool(m) | Error::InvalidArguments(m) | Error::Failed(m) | Error::LimitExceeded(m) => m,
            };
            AgentError::new("tool_error", format!("{name}: {message}"))
        })?;
        serde_json::from_str(&result)
            .map_err(|e| AgentError::new("tool_error", format!("{name}: result is not JSON: {e}")))
    }
}

/// The agent's own HTTP requests, whole (`warden:agent/http`): sent only to the
/// manifest's `allowed_hosts` (never to private addresses, no redirects, within
/// the host's caps), recorded as `http` tool calls, journaled when durable.
pub mod http {
    use super::AgentError;
    pub use crate::bindings::warden::agent::http::{Request, Response};

    /// A request to fill in: a method and a URL, no headers, no body.
    pub fn request(method: &str, url: &str) -> Request {
        Request {
            method: method.into(),
            url: url.into(),
            headers: Vec::new(),
            body: Vec::new(),
            timeout_ms: None,
        }
    }

    /// GETs a URL.
    pub fn get(url: &str) -> Result<Response, AgentError> {
        send(&request("GET", url))
    }

    /// Sends a request and reads the whole response. A refusal or failure is
    /// an `AgentError` whose code names it (`http_request_denied`,
    /// `destination_ip_prohibited`, `connection_refused`, ...).
    pub fn send(request: &Request) -> Result<Response, AgentError> {
        crate::bindings::warden::agent::http::send(request)
            .map_err(|e| AgentError::new(e.code, format!("{}: {}", request.url, e.message)))
    }
}

/// Files the run stores (screenshots, reports), served with its record.
pub mod artifacts {
    use super::AgentError;

    /// Stores bytes under a file name with a media type; returns the artifact's id.
    /// Bad names and the run's caps become `artifact_error`.
    pub fn put(name: &str, media_type: &str, data: &[u8]) -> Result<String, AgentError> {
        use crate::bindings::warden::agent::artifacts::{Error, put};
        put(name, media_type, data).map_err(|e| {
            let message = match e {
                Error::InvalidName(m) | Error::LimitExceeded(m) => m,
            };
            AgentError::new("artifact_error", message)
        })
    }
}

/// Approvals: ask a person, wait for the decision (minutes or days; the host
/// unloads the run meanwhile and resumes it when someone decides).
pub mod approval {
    use super::AgentError;
    pub use crate::bindings::warden::agent::approval::{ApprovalRequest, Decision, Error};

    /// A request with a title and a JSON detail: any admin or approver key of
    /// the workspace decides, and it waits until someone does.
    pub fn request<T: serde::Serialize + ?Sized>(title: &str, detail: &T) -> ApprovalRequest {
        ApprovalRequest {
            title: title.to_owned(),
            detail: serde_json::to_string(detail).unwrap_or_else(|_| "null".to_owned()),
            approvers: Vec::new(),
            timeout_secs: None,
        }
    }

    /// Asks and waits for the decision, as it is.
    pub fn ask(request: &ApprovalRequest) -> Result<Decision, AgentError> {
        crate::bindings::warden::agent::approval::request(request)
            .map_err(|Error::InvalidRequest(m)| AgentError::new("invalid_approval_request", m))
    }

    /// Asks and waits; approved: the data the approver attached (JSON), if
    /// any. A rejection is the error `rejected` (with the reason), an expiry
    /// `approval_expired`: returned from the agent as they are, the execution
    /// ends `rejected`.
    pub fn require(request: &ApprovalRequest) -> Result<Option<serde_json::Value>, AgentError> {
        match ask(request)? {
            Decision::Approved(data) => Ok(data.and_then(|d| serde_json::from_str(&d).ok())),
            Decision::Rejected(reason) => Err(AgentError::new(
                "rejected",
                if reason.is_empty() {
                    "the request was rejected".to_owned()
                } else {
                    reason
                },
            )),
            Decision::Expired => Err(AgentError::new(
                "approval_expired",
                "nobody decided the request before its timeout",
            )),
        }
    }
}

/// Conversations: a run that is a turn of one sees the turns before it.
pub mod conversation {
    use crate::bindings::warden::agent::conversation as wit;
    pub use crate::bindings::warden::agent::conversation::{Budget, Transcript};
    use crate::llm::Message;

    /// The conversation this run is a turn of, if it is one.
    pub fn id() -> Option<String> {
        wit::id()
    }

    /// The previous turns (the host's default budget), oldest first, newest
    /// last; `truncated` says older ones were left out.
    pub fn history() -> Transcript {
        history_within(None, None)
    }

    /// The previous turns within at most `max_turns` turns and `max_tokens`
    /// tokens (the host's estimate).
    pub fn history_within(max_turns: Option<u32>, max_tokens: Option<u32>) -> Transcript {
        wit::history(Budget { max_turns, max_tokens })
    }

    /// The messages of a model call for this turn: `system` first (when not
    /// empty), then the conversation's history, then `user` (this turn's
    /// message) last; and whether older turns were left out.
    pub fn messages(system: &str, user: &str) -> (Vec<Message>, bool) {
        let Transcript { messages, truncated } = history();
        let mut all = Vec::with_capacity(messages.len() + 2);
        if !system.is_empty() {
            all.push(Message::system(system));
        }
        all.extend(messages);
        all.push(Message::user(user));
        (all, truncated)
    }
}

/// Memory that outlives a run: the conversation's session memory (persists
/// across its turns) and the memory stores attached to the run, each a set of
/// JSON values by key. Host errors become `memory_error` (or
/// `memory_unavailable` when there is no such memory for this run).
pub mod memory {
    use super::AgentError;
    use crate::bindings::warden::agent::memory::{self as wit, Error};
    use serde::Serialize;
    use serde::de::DeserializeOwned;

    fn error(e: Error) -> AgentError {
        match e {
            Error::NotAvailable(m) => AgentError::new("memory_unavailable", m),
            Error::Invalid(m) | Error::LimitExceeded(m) | Error::Unavailable(m) => AgentError::new("memory_error", m),
        }
    }

    /// A memory: the session's ([`session`]) or an attached store's ([`store`]).
    #[derive(Debug, Clone)]
    pub struct Memory(Option<String>);

    /// The conversation's session memory.
    pub fn session() -> Memory {
        Memory(None)
    }

    /// An attached memory store, by name.
    pub fn store(name: &str) -> Memory {
        Memory(Some(name.to_owned()))
    }

    impl Memory {
        /// A value, read as `T`; `None` when the key is not set.
        pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, AgentError> {
            let Some(text) = wit::get(self.0.as_deref(), key).map_err(error)? else {
                return Ok(None);
            };
            serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| AgentError::new("memory_error", format!("{key}: the stored value does not fit: {e}")))
        }

        /// Sets a key to a value (JSON).
        pub fn set<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<(), AgentError> {
            let text =
                serde_json::to_string(value).map_err(|e| AgentError::new("memory_error", format!("{key}: {e}")))?;
            wit::set(self.0.as_deref(), key, &text).map_err(error)
        }

        /// Deletes a key; whether it was set.
        pub fn delete(&self, key: &str) -> Result<bool, AgentError> {
            wit::delete(self.0.as_deref(), key).map_err(error)
        }

        /// Keys starting with `prefix`, in order.
        pub fn keys(&self, prefix: &str) -> Result<Vec<String>, AgentError> {
            wit::keys(self.0.as_deref(), prefix).map_err(error)
        }
    }
}

/// Records a named step with a detail serialised to JSON; returns its sequence
/// number in the run (1, 2, ...).
pub fn step<T: Serialize + ?Sized>(name: &str, detail: &T) -> u32 {
    // Serialising plain data cannot fail; a detail that cannot serialise (a map with
    // non-string keys, say) is recorded as its error text rather than lost.
    let detail = serde_json::to_string(detail)
        .unwrap_or_else(|e| serde_json::Value::String(format!("unserialisable detail: {e}")).to_string());
    wit_step::add(name, &detail)
}

/// Glue the [`agent!`] macro expands to: JSON in, the author's function, JSON out.
#[doc(hidden)]
pub fn __run<I, O>(input: String, f: fn(I) -> Result<O, AgentError>) -> Result<String, types::AgentError>
where
    I: DeserializeOwned,
    O: Serialize,
{
    let to_wit = |e: AgentError| types::AgentError {
        code: e.code,
        message: e.message,
    };
    let input: I = serde_json::from_str(&input)
        .map_err(|e| to_wit(AgentError::invalid_input(format!("input does not fit this agent: {e}"))))?;
    let output = f(input);
    // A component does not exit, so nothing else flushes what `print!` buffered.
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    let output = output.map_err(to_wit)?;
    serde_json::to_string(&output).map_err(|e| {
        to_wit(AgentError::new(
            "invalid_output",
            format!("output could not be serialised: {e}"),
        ))
    })
}

/// Makes `fn(Input) -> Result<Output, AgentError>` the agent's entry point.
#[macro_export]
macro_rules! agent {
    ($run:path) => {
        #[doc(hidden)]
        struct __WardenAgent;

        impl $crate::bindings::Guest for __WardenAgent {
            fn run(
                input: ::std::string::String,
            ) -> ::std::result::Result<
                ::std::string::String,
                $crate::bindings::warden::agent::types::AgentError,
            > {
                $crate::__run(input, $run)
            }
        }

        $crate::bindings::__export_agent!(__WardenAgent with_types_in $crate::bindings);
    };
}
