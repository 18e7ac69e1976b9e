//! `GET /openapi.json`: the API as an OpenAPI 3.1 document. Its operations come
//! from the router itself (see [`super::documented_routes`]); this module adds
//! what is not an operation: the title, and how keys are sent.

use axum::http::header;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Warden",
        description = "Run untrusted AI agents as sandboxed WebAssembly components. Every error is `{\"error\":{\"code\",\"message\"}}`."
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

/// The document as served, made once.
#[derive(Clone)]
pub struct Document(bytes::Bytes);

pub fn serve(document: utoipa::openapi::OpenApi) -> Document {
    let json = document
        .to_json()
        .unwrap_or_else(|e| format!("{{\"error\":{{\"code\":\"internal\",\"message\":\"{e}\"}}}}"));
    Document(bytes::Bytes::from(json))
}

impl IntoResponse for Document {
    fn into_response(self) -> Response {
        ([(header::CONTENT_TYPE, "application/json")], self.0).into_response()
    }
}
