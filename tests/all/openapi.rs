//! `/openapi.json` describes the API the router serves: every documented
//! operation is routed, and every route of the API is documented.

use reqwest::{Method, StatusCode};
use serde_json::Value;
use warden_tests::Server;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_matches_the_routes() {
    let server = Server::start().await;
    let (status, doc) = server.get("/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    assert_eq!(doc["components"]["securitySchemes"]["api_key"]["scheme"], "bearer");
    let paths = doc["paths"].as_object().unwrap();
    let mut operations = 0;
    for (path, item) in paths {
        for (method, _) in item.as_object().unwrap() {
            operations += 1;
            let concrete = path.replace("{id}", "x").replace("{artifact_id}", "y");
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let resp = server
                .http
                .request(method.clone(), server.url(&concrete))
                .send()
                .await
                .unwrap();
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            let message = body["error"]["message"].as_str().unwrap_or("");
            assert!(
                !message.starts_with("no route for") && !message.contains("is not allowed on"),
                "{method} {path} is documented but not routed: {body}"
            );
        }
    }
    // Every route of the API is documented (health included).
    assert_eq!(operations, 63, "{:?}", paths.keys().collect::<Vec<_>>());
    assert!(paths.contains_key("/v1/agents/{id}/execute"));
    for schema in ["ExecutionView", "ExecuteBody", "ErrorBody", "Manifest", "ApiKey"] {
        assert!(doc["components"]["schemas"][schema].is_object(), "no schema {schema}");
    }
    // Sequence cursors are documented as the handlers read them: non-negative
    // int64s (a `u32` field was documented int32 while larger values were served).
    let mut cursors = 0;
    for (path, item) in paths {
        for (_, op) in item.as_object().unwrap() {
            for p in op["parameters"].as_array().into_iter().flatten() {
                // (`/v1/executions?after=` is a listing's opaque string cursor.)
                if path.starts_with("/v1/executions/{id}/") && (p["name"] == "after" || p["name"] == "Last-Event-ID") {
                    cursors += 1;
                    assert_eq!(p["schema"]["format"], "int64", "{path} {}", p["name"]);
                    assert_eq!(p["schema"]["minimum"], 0, "{path} {}", p["name"]);
                }
            }
        }
    }
    assert_eq!(cursors, 4, "?after= on logs, events, stream, and Last-Event-ID");
}
