//! The API's one error type. Every error response is
//! `{"error":{"code","message"}}`; internals are logged, never shown.

use axum::Json;
use axum::extract::multipart::{MultipartError, MultipartRejection};
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::auth::{AuthError, CreateKeyError};
use crate::deploy::DeployError;
use crate::executions::{ConversationError, RetryError, SubmitError, WaitError};
use crate::manifest::InputError;
use crate::ports::MemoryError;
use crate::runtime::component::ComponentError;
use crate::schedules::ScheduleError;
use crate::store::StoreError;
use crate::webhooks::HookError;
use crate::webhooks::outgoing::SubscriptionError;

/// The body of every error response.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody<'a> {
    #[schema(inline)]
    pub error: ErrorDetail<'a>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorDetail<'a> {
    /// Machine-readable: `not_found`, `invalid_input`, `unauthorized`, ...
    pub code: &'a str,
    /// For a person.
    pub message: String,
    /// The resource's status, where that is what conflicts (`already_finished`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<&'a str>,
    /// Each failing path of an input (`invalid_input`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<&'a [InputError]>,
}

/// What `Retry-After` tells a client refused for a full queue.
const RETRY_AFTER_SECS: &str = "1";
/// What `Retry-After` tells a client refused while storage is failing.
const STORAGE_RETRY_AFTER_SECS: u64 = 5;
/// What `Retry-After` tells a client refused by a host that is shutting down
/// (its successor, or itself restarted, is usually up by then).
const SHUTDOWN_RETRY_AFTER_SECS: u64 = 5;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    NotFound(String),
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    #[error("{message}")]
    Unprocessable { code: &'static str, message: String },
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    /// The request conflicts with the resource's state; `status` is its current
    /// status where that is what conflicts.
    #[error("{message}")]
    Conflict {
        code: &'static str,
        message: String,
        status: Option<&'static str>,
    },
    /// Past the queue's bound; come back after `Retry-After` seconds.
    #[error("{0}")]
    TooManyRequests(String),
    /// The input fails the agent's `input_schema`; `errors` says where.
    #[error("{message}")]
    InvalidInput { message: String, errors: Vec<InputError> },
    /// No key, or not a valid one.
    #[error("{0}")]
    Unauthorized(String),
    /// A valid key without the role this needs.
    #[error("{0}")]
    Forbidden(String),
    /// The key is over its rate limit; come back after `retry_after_secs`.
    #[error("{message}")]
    RateLimited { message: String, retry_after_secs: u64 },
    /// The host cannot do this now (shutting down, storage failing); come back
    /// after `Retry-After`.
    #[error("{message}")]
    Unavailable {
        code: &'static str,
        message: String,
        retry_after_secs: u64,
    },
    /// The resource was here and is gone for good.
    #[error("{message}")]
    Gone { code: &'static str, message: String },
    /// Stored data failed its integrity check.
    #[error("{message}")]
    Damaged { code: &'static str, message: String },
    #[error("internal error: {0:#}")]
    Internal(anyhow::Error),
}

impl ApiError {
    /// 422 `invalid_input` naming each failing path of the input.
    pub fn invalid_input(errors: Vec<InputError>) -> Self {
        Self::InvalidInput {
            message: format!(
                "the input does not match the agent's input_schema: {}",
                crate::manifest::describe(&errors)
            ),
            errors,
        }
    }

    /// 503 `shutting_down`: the host is draining before it stops.
    pub fn shutting_down(message: impl Into<String>) -> Self {
        Self::Unavailable {
            code: "shutting_down",
            message: message.into(),
            retry_after_secs: SHUTDOWN_RETRY_AFTER_SECS,
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::BadRequest {
            code,
            message: message.into(),
        }
    }

    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        Self::Unprocessable {
            code,
            message: message.into(),
        }
    }

    /// The code and message the caller is told (an internal error's details
    /// go to the log only).
    pub fn code_and_message(&self) -> (&'static str, String) {
        (self.status_and_code().1, self.public_message())
    }

    fn public_message(&self) -> String {
        match self {
            ApiError::Internal(e) => {
                tracing::error!(error = %format!("{e:#}"), "internal error");
                "the server failed to handle this request; see its log".to_owned()
            }
            other => other.to_string(),
        }
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::BadRequest { code, .. } => (StatusCode::BAD_REQUEST, code),
            ApiError::Unprocessable { code, .. } => (StatusCode::UNPROCESSABLE_ENTITY, code),
            ApiError::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::UnsupportedMediaType(_) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
            ApiError::MethodNotAllowed(_) => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::Conflict { code, .. } => (StatusCode::CONFLICT, code),
            ApiError::TooManyRequests(_) => (StatusCode::TOO_MANY_REQUESTS, "queue_full"),
            ApiError::InvalidInput { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_input"),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            ApiError::Unavailable { code, .. } => (StatusCode::SERVICE_UNAVAILABLE, code),
            ApiError::Gone { code, .. } => (StatusCode::GONE, code),
            ApiError::Damaged { code, .. } => (StatusCode::INTERNAL_SERVER_ERROR, code),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let message = self.public_message();
        let body = ErrorBody {
            error: ErrorDetail {
                code,
                message,
                status: match &self {
                    ApiError::Conflict { status, .. } => *status,
                    _ => None,
                },
                errors: match &self {
                    ApiError::InvalidInput { errors, .. } => Some(errors),
                    _ => None,
                },
            },
        };
        let mut response = (status, Json(body)).into_response();
        let headers = response.headers_mut();
        match &self {
            ApiError::TooManyRequests(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECS));
            }
            ApiError::RateLimited { retry_after_secs, .. } | ApiError::Unavailable { retry_after_secs, .. } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            }
            ApiError::Unauthorized(_) => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            _ => {}
        }
        response
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        ApiError::Internal(e)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(_) => ApiError::Unavailable {
                code: "storage_unavailable",
                message: format!("{e}; try again shortly"),
                retry_after_secs: STORAGE_RETRY_AFTER_SECS,
            },
            other => ApiError::Internal(other.into()),
        }
    }
}

impl From<WaitError> for ApiError {
    fn from(e: WaitError) -> Self {
        match e {
            WaitError::Closing(_) => ApiError::shutting_down(e.to_string()),
            WaitError::Lost(_) => ApiError::Internal(anyhow::anyhow!("{e}")),
            WaitError::Store(s) => s.into(),
        }
    }
}

impl From<SubmitError> for ApiError {
    fn from(e: SubmitError) -> Self {
        match e {
            SubmitError::AgentNotFound(_) | SubmitError::VersionNotFound { .. } | SubmitError::NoVersion(_) => {
                ApiError::NotFound(e.to_string())
            }
            SubmitError::VersionGone => ApiError::Conflict {
                code: "version_unavailable",
                message: e.to_string(),
                status: None,
            },
            SubmitError::Unavailable { .. } => ApiError::Conflict {
                code: "agent_unavailable",
                message: e.to_string(),
                status: None,
            },
            SubmitError::InvalidPriority | SubmitError::InvalidMetadata | SubmitError::ModelNotAllowed { .. } => {
                ApiError::unprocessable("invalid_request", e.to_string())
            }
            SubmitError::InputTooLarge { .. } => ApiError::PayloadTooLarge(e.to_string()),
            SubmitError::InvalidInput(errors) => ApiError::invalid_input(errors),
            SubmitError::IdempotencyConflict => ApiError::Conflict {
                code: "idempotency_conflict",
                message: e.to_string(),
                status: None,
            },
            // Handlers answer a repeat with the first request's execution; one that
            // reaches here had nowhere to go.
            SubmitError::Repeated { .. } => ApiError::Conflict {
                code: "idempotency_conflict",
                message: e.to_string(),
                status: None,
            },
            SubmitError::QueueFull(_) => ApiError::TooManyRequests(e.to_string()),
            SubmitError::ShuttingDown => ApiError::shutting_down(e.to_string()),
            SubmitError::Store(s) => s.into(),
            SubmitError::Internal(_) => ApiError::Internal(anyhow::anyhow!("{e}")),
            SubmitError::ConversationNotFound(_) | SubmitError::MemoryStoreNotFound(_) => {
                ApiError::NotFound(e.to_string())
            }
            SubmitError::ConversationAgent { .. } => {
                ApiError::unprocessable("conversation_agent_mismatch", e.to_string())
            }
            SubmitError::ConversationBusy { .. } => ApiError::Conflict {
                code: "conversation_busy",
                message: format!("{e}; send it again when that turn ends, or without \"if_busy\": \"fail\" to wait"),
                status: None,
            },
            SubmitError::TooManyMemoryStores(_) => ApiError::unprocessable("invalid_request", e.to_string()),
            SubmitError::Memory(m) => m.into(),
        }
    }
}

impl From<MemoryError> for ApiError {
    fn from(e: MemoryError) -> Self {
        match e {
            MemoryError::Invalid(m) => ApiError::unprocessable("invalid_memory", m),
            MemoryError::LimitExceeded(m) => ApiError::unprocessable("memory_limit", m),
            MemoryError::Unavailable(m) => StoreError::Unavailable(m).into(),
            MemoryError::Gone(m) => ApiError::NotFound(m),
        }
    }
}

impl From<HookError> for ApiError {
    fn from(e: HookError) -> Self {
        match e {
            HookError::NotFound(_) | HookError::AgentNotFound(_) => ApiError::NotFound(e.to_string()),
            HookError::Invalid(m) => ApiError::unprocessable("invalid_request", m),
            HookError::Signature(s) => ApiError::Unauthorized(s.to_string()),
            HookError::Submit(s) => s.into(),
            HookError::Store(s) => s.into(),
            HookError::Internal(e) => ApiError::Internal(e),
        }
    }
}

impl From<SubscriptionError> for ApiError {
    fn from(e: SubscriptionError) -> Self {
        match e {
            SubscriptionError::Invalid(m) => ApiError::unprocessable("invalid_request", m),
            SubscriptionError::NotFound(_) => ApiError::NotFound(e.to_string()),
            SubscriptionError::Store(s) => s.into(),
            SubscriptionError::Internal(e) => ApiError::Internal(e),
        }
    }
}

impl From<ScheduleError> for ApiError {
    fn from(e: ScheduleError) -> Self {
        match e {
            ScheduleError::Invalid { field, message } => {
                let code = match field {
                    "cron" => "invalid_cron",
                    "timezone" => "invalid_timezone",
                    "input" => "invalid_input",
                    _ => "invalid_request",
                };
                ApiError::unprocessable(code, message)
            }
            ScheduleError::NotFound(_) | ScheduleError::AgentNotFound(_) | ScheduleError::ExecutionNotFound(_) => {
                ApiError::NotFound(e.to_string())
            }
            ScheduleError::Submit(s) => s.into(),
            ScheduleError::Store(s) => s.into(),
        }
    }
}

impl From<ConversationError> for ApiError {
    fn from(e: ConversationError) -> Self {
        match e {
            ConversationError::NotFound(_) | ConversationError::ExecutionNotFound(_) => {
                ApiError::NotFound(e.to_string())
            }
            ConversationError::NotCompleted { status, .. } => ApiError::Conflict {
                code: "not_completed",
                message: e.to_string(),
                status: Some(status),
            },
            ConversationError::Busy { .. } => ApiError::Conflict {
                code: "conversation_busy",
                message: e.to_string(),
                status: None,
            },
            ConversationError::Store(s) => s.into(),
        }
    }
}

impl From<RetryError> for ApiError {
    fn from(e: RetryError) -> Self {
        match e {
            RetryError::NotFound(_) => ApiError::NotFound(e.to_string()),
            RetryError::Submit(s) => s.into(),
            RetryError::Store(s) => s.into(),
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Unauthorized(m) => ApiError::Unauthorized(m),
            AuthError::RateLimited {
                message,
                retry_after_secs,
            } => ApiError::RateLimited {
                message,
                retry_after_secs,
            },
            AuthError::Store(s) => s.into(),
        }
    }
}

impl From<CreateKeyError> for ApiError {
    fn from(e: CreateKeyError) -> Self {
        match e {
            CreateKeyError::Invalid(m) => ApiError::unprocessable("invalid_request", m),
            CreateKeyError::Store(s) => s.into(),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        let text = r.body_text();
        match r {
            JsonRejection::JsonSyntaxError(_) => ApiError::bad_request("malformed_json", text),
            JsonRejection::JsonDataError(_) => ApiError::unprocessable("invalid_request", text),
            JsonRejection::MissingJsonContentType(_) => {
                ApiError::UnsupportedMediaType("send the body as JSON with `Content-Type: application/json`".into())
            }
            other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge(text),
            _ => ApiError::bad_request("invalid_request", text),
        }
    }
}

impl From<MultipartRejection> for ApiError {
    fn from(r: MultipartRejection) -> Self {
        ApiError::UnsupportedMediaType(format!(
            "{}; deploy with multipart/form-data parts `component` (the .wasm file) and `manifest` (JSON)",
            r.body_text()
        ))
    }
}

impl From<MultipartError> for ApiError {
    fn from(e: MultipartError) -> Self {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge(format!("the upload is over the size limit: {}", e.body_text()))
        } else {
            ApiError::bad_request("invalid_multipart", e.body_text())
        }
    }
}

impl From<DeployError> for ApiError {
    fn from(e: DeployError) -> Self {
        match e {
            DeployError::Component(ComponentError::Internal(m)) => ApiError::Internal(anyhow::anyhow!(m)),
            DeployError::Component(ComponentError::StorageFull(m)) => StoreError::Unavailable(m).into(),
            DeployError::Component(c) => ApiError::unprocessable(c.code(), c.to_string()),
            DeployError::Manifest(m) => ApiError::unprocessable("invalid_manifest", m),
            DeployError::Store(s) => s.into(),
            DeployError::Internal(e) => ApiError::Internal(e),
        }
    }
}
