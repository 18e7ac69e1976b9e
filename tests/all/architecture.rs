//! The house rules, checked on the host's sources: no import cycles between its
//! top-level modules (a module below the API never reaches back up), SQL only
//! in the store backends (SQLite, Postgres), modules small enough to read,
//! each saying what it owns, and every API route documented.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn host_src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../host/src")
}

/// Every `.rs` file under `dir`, with its path relative to `dir`.
fn sources(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(dir).unwrap().to_string_lossy().replace('\\', "/");
                out.push((rel, std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// The top-level module a file belongs to (`None` for the crate root).
fn module_of(rel: &str) -> Option<String> {
    let first = rel.split('/').next()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(name, "lib" | "main")).then(|| name.to_owned())
}

/// The top-level modules a source names through `crate::` paths, including
/// grouped ones (`crate::{a, b::c}`).
fn crate_refs(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("crate::") {
        let preceded_by_ident = rest[..i]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$');
        rest = &rest[i + "crate::".len()..];
        if preceded_by_ident {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            // Top-level items of the group.
            let mut depth = 0;
            let mut item_start = true;
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && (c.is_alphabetic() || c == '_') => {
                        let ident: String = group[j..]
                            .chars()
                            .take_while(|c| c.is_alphanumeric() || *c == '_')
                            .collect();
                        out.insert(ident);
                        item_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            let ident: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            out.insert(ident);
        }
    }
    out
}

#[test]
fn no_module_reaches_back_up() {
    let files = sources(&host_src());
    let modules: BTreeSet<String> = files.iter().filter_map(|(rel, _)| module_of(rel)).collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (rel, text) in &files {
        let Some(from) = module_of(rel) else { continue };
        for to in crate_refs(text) {
            if to != from && modules.contains(&to) {
                graph.entry(from.clone()).or_default().insert(to);
            }
        }
    }
    let reach = |start: &str| {
        let mut seen = BTreeSet::new();
        let mut stack = vec![start.to_owned()];
        while let Some(m) = stack.pop() {
            for next in graph.get(&m).into_iter().flatten() {
                if seen.insert(next.clone()) {
                    stack.push(next.clone());
                }
            }
        }
        seen
    };
    let mut cycles = Vec::new();
    for (from, tos) in &graph {
        for to in tos {
            if reach(to).contains(from) {
                cycles.push(format!("{from} -> {to} -> ... -> {from}"));
            }
        }
    }
    assert!(
        cycles.is_empty(),
        "import cycles between host modules:\n{}",
        cycles.join("\n")
    );
    // The checker itself sees the graph: the API is at the top, records at the bottom.
    assert!(graph["api"].contains("executions"));
    assert!(!graph.get("record").is_some_and(|r| r.contains("store")));
    assert_eq!(
        crate_refs("use crate::{a, b::{c, d}, e};\nlet x = crate::f::g();\nfoo_crate::h;"),
        ["a", "b", "e", "f"].into_iter().map(String::from).collect()
    );
}

#[test]
fn sql_lives_only_in_the_store_backends() {
    for (rel, text) in sources(&host_src()) {
        if !rel.starts_with("store/sqlite/") {
            assert!(!text.contains("rusqlite"), "{rel} uses rusqlite outside store/sqlite");
        }
        if !rel.starts_with("store/postgres/") {
            for client in [
                "tokio_postgres",
                "deadpool_postgres",
                "postgres::Client",
                "postgres::Config",
            ] {
                assert!(!text.contains(client), "{rel} uses {client} outside store/postgres");
            }
        }
    }
}

#[test]
fn modules_are_small_and_say_what_they_own() {
    for (rel, text) in sources(&host_src()) {
        let lines = text.lines().count();
        assert!(lines <= 500, "{rel} has {lines} lines; split it by concept");
        assert!(
            text.starts_with("//!"),
            "{rel} does not start with a `//!` saying what it owns"
        );
    }
}

#[test]
fn every_route_is_added_documented() {
    // `routes!` adds a route with its OpenAPI operation; a plain `.route(` would
    // serve it undocumented. The exceptions: the document's own route, and the
    // MCP endpoint (a protocol of its own, described by the MCP specification).
    for (rel, text) in sources(&host_src().join("api")) {
        for (n, line) in text.lines().enumerate() {
            if line.contains(".route(") || line.contains(".route_service(") || line.contains(".nest(") {
                assert!(
                    line.contains("\"/openapi.json\"") || line.contains("crate::mcp::PATH"),
                    "api/{rel}:{}: a route added without its documentation: {line}",
                    n + 1
                );
            }
        }
    }
}
