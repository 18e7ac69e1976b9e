//! Agents built from `agents/` by the build script: the examples `serve` deploys
//! on a first start (embedded in the binary), and the paths of every agent built
//! (test fixtures).

/// An example agent embedded in the binary.
pub struct Example {
    pub name: &'static str,
    pub manifest: &'static str,
    pub wasm: &'static [u8],
}

include!(concat!(env!("OUT_DIR"), "/agents.rs"));

/// Path of a built agent's component, by crate name (`echo`, `spin`, ...).
pub fn agent_path(name: &str) -> Option<&'static str> {
    AGENT_PATHS.iter().find(|(n, _)| *n == name).map(|(_, p)| *p)
}
