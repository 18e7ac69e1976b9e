//! `http-echo`: the `echo` agent's work as a wasi:http handler. The request body
//! is the input JSON; the response is `{"echo": input, "greeting": "Hello, <name>!"}`.

use std::io::{Read as _, Write as _};

use serde_json::{Value, json};
use wasip2::http::types::{Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam};

wasip2::http::proxy::export!(Echo);

struct Echo;

fn echo(input: &[u8]) -> Vec<u8> {
    let input: Value = serde_json::from_slice(input).unwrap_or(Value::Null);
    let name = input.get("name").and_then(Value::as_str).unwrap_or("world");
    let greeting = format!("Hello, {name}!");
    json!({ "echo": input, "greeting": greeting }).to_string().into_bytes()
}

impl wasip2::exports::http::incoming_handler::Guest for Echo {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let mut input = Vec::new();
        if let Ok(body) = request.consume() {
            if let Ok(mut stream) = body.stream() {
                let _ = stream.read_to_end(&mut input);
            }
        }
        let output = echo(&input);
        let headers = Fields::new();
        let _ = headers.set("content-type", &[b"application/json".to_vec()]);
        let resp = OutgoingResponse::new(headers);
        let Ok(body) = resp.body() else { return };
        ResponseOutparam::set(response_out, Ok(resp));
        if let Ok(mut out) = body.write() {
            let _ = out.write_all(&output);
            let _ = out.flush();
        }
        let _ = OutgoingBody::finish(body, None);
    }
}
