//! `snoop` (hostile): looks for what a sandbox must not give it: the host's
//! environment variables and arguments, files (absolute, relative, `..`), and a
//! network socket. Returns what it could see.

use serde_json::{Value, json};
use warden_sdk::AgentError;

fn run(_input: Value) -> Result<Value, AgentError> {
    let env: Vec<String> = std::env::vars().map(|(k, _)| k).collect();
    let args: Vec<String> = std::env::args().collect();
    let mut opened = Vec::new();
    for path in [
        "/etc/passwd",
        "/",
        ".",
        "..",
        "../../Cargo.toml",
        "secret.txt",
        "/proc/self/environ",
    ] {
        if std::fs::read(path).is_ok() || std::fs::read_dir(path).is_ok() {
            opened.push(path);
        }
    }
    let created = std::fs::write("/tmp/snoop", b"x").is_ok() || std::fs::write("snoop", b"x").is_ok();
    let socket = std::net::TcpStream::connect("127.0.0.1:80").is_ok()
        || std::net::UdpSocket::bind("0.0.0.0:0").is_ok()
        || std::net::TcpListener::bind("127.0.0.1:0").is_ok();
    Ok(json!({ "env": env, "args": args, "opened": opened, "created": created, "socket": socket }))
}

warden_sdk::agent!(run);
