//! `cmd-echo`: the `echo` agent's work as a WASI command: input JSON on stdin,
//! `{"echo": input, "greeting": "Hello, <name>!"}` on stdout.

use std::io::{Read, Write};

use serde_json::{Value, json};

fn main() {
    let mut input = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut input);
    let input: Value = serde_json::from_slice(&input).unwrap_or(Value::Null);
    let name = input.get("name").and_then(Value::as_str).unwrap_or("world");
    let greeting = format!("Hello, {name}!");
    let _ = std::io::stdout().write_all(json!({ "echo": input, "greeting": greeting }).to_string().as_bytes());
}
