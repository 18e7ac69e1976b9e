//! What a component imports, read before compiling it: the names of its
//! top-level imports, parsed in milliseconds (nested modules and components
//! are skipped, never decoded), against what this host's linker provides
//! (WASI 0.2 as wasmtime-wasi links it, outgoing `wasi:http`, and the
//! `warden:agent` interfaces). A
//! component needing anything else is refused at once, naming each import it
//! would miss, instead of after seconds of compiling. The linker still has the
//! last word: a provided interface whose functions do not match is refused
//! after compiling, as before.

use wasmparser::{Chunk, ComponentTypeRef, Parser, Payload};

use super::component::ComponentError;

/// The interfaces of each package this host links, by package.
const PROVIDED: &[(&str, &[&str])] = &[
    (
        "wasi:cli",
        &[
            "environment",
            "exit",
            "stdin",
            "stdout",
            "stderr",
            "terminal-input",
            "terminal-output",
            "terminal-stdin",
            "terminal-stdout",
            "terminal-stderr",
        ],
    ),
    ("wasi:clocks", &["monotonic-clock", "wall-clock"]),
    ("wasi:filesystem", &["types", "preopens"]),
    ("wasi:http", &["types", "outgoing-handler"]),
    ("wasi:io", &["error", "poll", "streams"]),
    ("wasi:random", &["random", "insecure", "insecure-seed"]),
    (
        "wasi:sockets",
        &[
            "network",
            "instance-network",
            "tcp",
            "tcp-create-socket",
            "udp",
            "udp-create-socket",
            "ip-name-lookup",
        ],
    ),
    (
        "warden:agent",
        &[
            "types",
            "log",
            "step",
            "llm",
            "tools",
            "artifacts",
            "approval",
            "conversation",
            "memory",
            "http",
        ],
    ),
];

/// The top-level import names of a component (`wasi:io/streams@0.2.9`, ...)
/// that a host must provide: instances, functions and the like, not the types
/// a world names from its own interfaces (`use types.{agent-error}`), which
/// are bound to what the instances give.
pub fn imports(bytes: &[u8]) -> Result<Vec<String>, ComponentError> {
    let invalid = |e: wasmparser::BinaryReaderError| ComponentError::Invalid(e.to_string());
    let mut parser = Parser::new(0);
    let mut at = 0;
    let mut names = Vec::new();
    loop {
        let rest = bytes
            .get(at..)
            .ok_or_else(|| ComponentError::Invalid("a nested module runs past the end of the file".into()))?;
        let (consumed, payload) = match parser.parse(rest, true).map_err(invalid)? {
            Chunk::Parsed { consumed, payload } => (consumed, payload),
            Chunk::NeedMoreData(_) => return Err(ComponentError::Invalid("the file ends early".into())),
        };
        at += consumed;
        match payload {
            Payload::ComponentImportSection(reader) => {
                for import in reader {
                    let import = import.map_err(invalid)?;
                    if !matches!(import.ty, ComponentTypeRef::Type(_)) {
                        names.push(import.name.name.to_owned());
                    }
                }
            }
            // Nested modules and components: their imports are satisfied
            // inside the component; skip their bytes.
            Payload::ModuleSection { unchecked_range, .. } | Payload::ComponentSection { unchecked_range, .. } => {
                at = unchecked_range.end;
            }
            Payload::End(_) => return Ok(names),
            _ => {}
        }
    }
}

/// Whether this host provides the import `name`: an interface of a package
/// it links, at a compatible version (WASI `0.2.*`, `warden:agent` `0.1.*`).
fn provided(name: &str) -> bool {
    let (path, version) = name.split_once('@').unwrap_or((name, ""));
    let Some((package, interface)) = path.split_once('/') else {
        return false;
    };
    let track = if package == "warden:agent" { "0.1." } else { "0.2." };
    (version.is_empty() || version.starts_with(track))
        && PROVIDED
            .iter()
            .any(|(p, interfaces)| *p == package && interfaces.contains(&interface))
}

/// Refuses a component that imports what this host does not provide, naming
/// every such import.
pub fn check(bytes: &[u8]) -> Result<(), ComponentError> {
    let missing: Vec<String> = imports(bytes)?.into_iter().filter(|name| !provided(name)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(ComponentError::WrongWorld(format!(
        "it imports what this host does not provide: {} (a Warden agent imports the warden:agent \
         interfaces and WASI 0.2's cli, clocks, filesystem, http (outgoing), io, random and sockets)",
        missing.join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_the_host_links_is_provided_and_nothing_else() {
        for ok in [
            "wasi:io/streams@0.2.9",
            "wasi:cli/environment@0.2.0",
            "wasi:sockets/tcp@0.2.6",
            "warden:agent/llm@0.1.0",
            "wasi:http/types@0.2.0",
            "wasi:http/outgoing-handler@0.2.9",
        ] {
            assert!(provided(ok), "{ok}");
        }
        for missing in [
            "wasi:http/incoming-handler@0.2.0",
            "wasi:http/types@0.3.0",
            "wasi:io/streams@0.3.0",
            "wasi:keyvalue/store@0.2.0-draft",
            "warden:agent/llm@0.2.0",
            "wasi:cli/run@0.2.0",
            "env",
        ] {
            assert!(!provided(missing), "{missing}");
        }
    }

    #[test]
    fn a_built_agents_imports_are_all_provided() {
        let path = crate::bundled::agent_path("support").expect("the support agent is built");
        let bytes = std::fs::read(path).expect("its component");
        let began = std::time::Instant::now();
        let names = imports(&bytes).expect("its imports");
        eprintln!("{} imports read in {:?}", names.len(), began.elapsed());
        assert!(names.iter().any(|n| n.starts_with("warden:agent/llm@")), "{names:?}");
        assert!(names.iter().any(|n| n.starts_with("wasi:")), "{names:?}");
        assert!(check(&bytes).is_ok(), "{names:?}");
        // A Python agent (18.5 MB, when the test set-up has built one).
        let python = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/python-agents/support.wasm");
        if let Ok(bytes) = std::fs::read(python) {
            let began = std::time::Instant::now();
            let names = imports(&bytes).expect("its imports");
            eprintln!(
                "{} imports of {} bytes read in {:?}",
                names.len(),
                bytes.len(),
                began.elapsed()
            );
            assert!(check(&bytes).is_ok(), "{names:?}");
        }
    }

    #[test]
    fn truncated_or_garbled_components_are_invalid() {
        assert!(imports(b"\0asm\x0d\0\x01\0").is_ok_and(|names| names.is_empty()));
        assert!(matches!(
            imports(b"\0asm\x0d\0\x01\0\x0a\x05"),
            Err(ComponentError::Invalid(_))
        ));
    }
}
