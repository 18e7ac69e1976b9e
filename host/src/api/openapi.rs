//! `GET /openapi.json`: the API as an OpenAPI 3.1 document, generated from the
//! handlers' `#[utoipa::path]` annotations and the types they take and return.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::IntoResponse;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{agents, artifacts, executions, health, keys, stream};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Warden",
        description = "Run untrusted AI agents as sandboxed WebAssembly components. Every error is `{\"error\":{\"code\",\"message\"}}`."
    ),
    paths(
        agents::deploy,
        agents::list,
        agents::get,
        executions::execute,
        executions::list,
        executions::get,
        executions::cancel,
        executions::retry,
        executions::logs,
        executions::steps,
        stream::events,
        stream::stream,
        artifacts::list,
        artifacts::get,
        keys::create,
        keys::list,
        keys::revoke,
        health::health,
    ),
    modifiers(&BearerKeys),
    security(("api_key" = []))
)]
pub struct ApiDoc;

/// API keys travel as `Authorization: Bearer wdn_…`.
struct BearerKeys;

impl Modify for BearerKeys {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The document, made once.
pub async fn document() -> impl IntoResponse {
    static DOC: OnceLock<String> = OnceLock::new();
    let doc = DOC.get_or_init(|| {
        ApiDoc::openapi()
            .to_json()
            .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    });
    ([(header::CONTENT_TYPE, "application/json")], doc.as_str())
}
