//! The API's one error type. Every error response is
//! `{"error":{"code","message"}}`; internals are logged, never shown.

use axum::Json;
use axum::extract::multipart::{MultipartError, MultipartRejection};
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::app::DeployError;
use crate::runtime::component::ComponentError;
use crate::store::StoreError;

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
    #[error("internal error: {0:#}")]
    Internal(anyhow::Error),
}

impl ApiError {
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

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::BadRequest { code, .. } => (StatusCode::BAD_REQUEST, code),
            ApiError::Unprocessable { code, .. } => (StatusCode::UNPROCESSABLE_ENTITY, code),
            ApiError::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::UnsupportedMediaType(_) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
            ApiError::MethodNotAllowed(_) => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let message = match &self {
            ApiError::Internal(e) => {
                tracing::error!(error = %format!("{e:#}"), "internal error");
                "the server failed to handle this request; see its log".to_owned()
            }
            other => other.to_string(),
        };
        (status, Json(json!({ "error": { "code": code, "message": message } }))).into_response()
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        ApiError::Internal(e)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::Internal(e.into())
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
            DeployError::Component(c) => {
                let code = match c {
                    ComponentError::NotWasm => "not_wasm",
                    ComponentError::CoreModule => "not_a_component",
                    ComponentError::Invalid(_) => "invalid_component",
                    ComponentError::WrongWorld(_) => "wrong_world",
                    ComponentError::Internal(_) => "internal",
                };
                ApiError::unprocessable(code, c.to_string())
            }
            DeployError::Manifest(m) => ApiError::unprocessable("invalid_manifest", m),
            DeployError::Store(s) => ApiError::Internal(s.into()),
            DeployError::Internal(e) => ApiError::Internal(e),
        }
    }
}
