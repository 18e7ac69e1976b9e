//! Components: checked, compiled once, cached on disk by content hash.
//!
//! Deploy checks the bytes (WebAssembly? a component, not a core module?),
//! compiles them, checks they implement the `warden:agent` world, and only then
//! writes the compiled artifact to `<data>/compiled/<engine>/<hash>.cwasm`,
//! answering its SHA-256 for the caller to keep where a file swap cannot reach
//! it (the database). A restart reads the artifact, checks it against that
//! digest, and deserialises exactly the bytes it checked: machine code is never
//! loaded unverified. An artifact that is missing, damaged, or has no recorded
//! digest is compiled again from the component's bytes.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use anyhow::Context;
use wasmtime::Engine;
use wasmtime::component::Component;

use super::compiler::Compiler;
use crate::digest::sha256_hex;
use crate::files::write_atomically;

/// Why a component was refused.
#[derive(Debug, thiserror::Error)]
pub enum ComponentError {
    #[error("the file is not WebAssembly (it does not start with the `\\0asm` header)")]
    NotWasm,
    #[error(
        "the file is a core WebAssembly module, not a component; build it for wasm32-wasip2 \
         (or wrap it with `wasm-tools component new`)"
    )]
    CoreModule,
    #[error("the component is not valid: {0}")]
    Invalid(String),
    #[error("the component does not implement the warden:agent world: {0}")]
    WrongWorld(String),
    /// Compiling it went past the host's time or memory limit.
    #[error("the component is too costly to compile: {0}")]
    TooCostly(String),
    /// A deployed component that cannot be loaded again (its blob is missing or
    /// damaged and no usable compiled copy exists).
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error preparing the component: {0}")]
    Internal(String),
    /// The disk is full: nothing could be written.
    #[error("the host's storage is full: {0}")]
    StorageFull(String),
}

impl ComponentError {
    /// The code the API answers this failure with.
    pub fn code(&self) -> &'static str {
        match self {
            ComponentError::NotWasm => "not_wasm",
            ComponentError::CoreModule => "not_a_component",
            ComponentError::Invalid(_) => "invalid_component",
            ComponentError::WrongWorld(_) => "wrong_world",
            ComponentError::TooCostly(_) => "component_too_costly",
            ComponentError::Unavailable(_) => "agent_unavailable",
            ComponentError::StorageFull(_) => "storage_unavailable",
            ComponentError::Internal(_) => "internal",
        }
    }
}

/// Checks the 8-byte header: `\0asm`, then the component layer (1) rather than a
/// core module's version 1.
pub fn check_header(bytes: &[u8]) -> Result<(), ComponentError> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(ComponentError::NotWasm);
    }
    match [bytes[6], bytes[7]] {
        [1, 0] => Ok(()),
        [0, 0] => Err(ComponentError::CoreModule),
        _ => Err(ComponentError::Invalid(format!(
            "unknown WebAssembly layer {} (version {})",
            bytes[6],
            u16::from_le_bytes([bytes[4], bytes[5]])
        ))),
    }
}

/// Where a prepared component came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Already in memory (same bytes deployed before in this process).
    Memory,
    /// Deserialised from the on-disk cache.
    Disk,
    /// Compiled now.
    Compiled,
}

/// A component ready to instantiate, where it came from, and the digest of the
/// compiled artifact written for it now (to be recorded), if one was.
pub struct Loaded {
    pub component: Component,
    pub origin: Origin,
    pub written: Option<String>,
}

/// Compiled components by content hash, in memory and on disk.
pub struct ComponentCache {
    engine: Engine,
    compiler: Compiler,
    dir: PathBuf,
    loaded: Mutex<HashMap<String, Component>>,
    pub compiled: AtomicU64,
    pub deserialized: AtomicU64,
}

impl ComponentCache {
    pub fn open(engine: &Engine, data_dir: &Path, compiler: Compiler) -> anyhow::Result<Self> {
        let dir = data_dir.join("compiled").join(engine_key(engine));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let swept = crate::files::sweep_temporary(&dir);
        if swept > 0 {
            tracing::info!(files = swept, dir = %dir.display(), "removed temporary files of writes that never finished");
        }
        Ok(Self {
            engine: engine.clone(),
            compiler,
            dir,
            loaded: Mutex::new(HashMap::new()),
            compiled: AtomicU64::new(0),
            deserialized: AtomicU64::new(0),
        })
    }

    /// Compiles running and waiting for their turn now.
    pub fn compiles(&self) -> super::compiler::Counts {
        self.compiler.counts()
    }

    fn artifact(&self, hash: &str) -> PathBuf {
        self.dir.join(format!("{hash}.cwasm"))
    }

    /// The compiled component for `hash`: from memory, from disk (when the
    /// artifact there has the `verified` digest), or compiled from the bytes
    /// `load` gives. `check` runs before anything is cached, so a component that
    /// fails it leaves nothing behind. Blocking.
    pub fn get(
        &self,
        hash: &str,
        verified: Option<&str>,
        load: impl FnOnce() -> Result<Vec<u8>, ComponentError>,
        check: impl FnOnce(&Component) -> Result<(), ComponentError>,
    ) -> Result<Loaded, ComponentError> {
        let cached = self
            .loaded
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(hash)
            .cloned();
        let (component, origin, serialized) = match cached {
            Some(c) => (c, Origin::Memory, None),
            None => self.load_or_compile(hash, verified, load)?,
        };
        check(&component)?;
        let mut written = None;
        match origin {
            Origin::Compiled => {
                let serialized = match serialized {
                    Some(bytes) => bytes,
                    None => component
                        .serialize()
                        .map_err(|e| ComponentError::Internal(format!("serialising: {e:#}")))?,
                };
                write_atomically(&self.artifact(hash), &serialized).map_err(|e| {
                    if crate::files::disk_full(&e) {
                        ComponentError::StorageFull(format!("{e:#}"))
                    } else {
                        ComponentError::Internal(format!("{e:#}"))
                    }
                })?;
                written = Some(sha256_hex(&serialized));
                self.compiled.fetch_add(1, Ordering::Relaxed);
            }
            Origin::Disk => {
                self.deserialized.fetch_add(1, Ordering::Relaxed);
            }
            Origin::Memory => {
                return Ok(Loaded {
                    component,
                    origin,
                    written,
                });
            }
        }
        self.loaded
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(hash.to_owned(), component.clone());
        Ok(Loaded {
            component,
            origin,
            written,
        })
    }

    fn load_or_compile(
        &self,
        hash: &str,
        verified: Option<&str>,
        load: impl FnOnce() -> Result<Vec<u8>, ComponentError>,
    ) -> Result<(Component, Origin, Option<Vec<u8>>), ComponentError> {
        let path = self.artifact(hash);
        match (verified, std::fs::read(&path)) {
            (Some(digest), Ok(bytes)) if sha256_hex(&bytes) == digest => {
                // SAFETY: these bytes are, to the bit, an artifact this host's
                // `Component::serialize` wrote with an engine of the same
                // compatibility hash (the directory says so, and their SHA-256 is
                // the one recorded in the database when they were written); they
                // were checked in memory and are deserialised from there, so
                // nothing can swap them in between. wasmtime re-checks the
                // header and engine settings as well.
                match unsafe { Component::deserialize(&self.engine, &bytes) } {
                    Ok(c) => return Ok((c, Origin::Disk, None)),
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e, "cached artifact unusable; recompiling")
                    }
                }
            }
            (Some(_), Ok(_)) => tracing::warn!(path = %path.display(),
                "cached artifact does not match its recorded digest (damaged or replaced); recompiling"),
            (None, Ok(_)) => tracing::warn!(path = %path.display(),
                "cached artifact has no recorded digest; recompiling rather than trusting it"),
            (_, Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {}
            (_, Err(e)) => {
                tracing::warn!(path = %path.display(), error = %e, "cached artifact unreadable; recompiling")
            }
        }
        // Its turn first: one waiting for it holds no copy of the component.
        let turn = self.compiler.turn();
        let bytes = load()?;
        check_header(&bytes)?;
        let compiled = self.compiler.compile(&turn, &self.engine, &bytes)?;
        Ok((compiled.component, Origin::Compiled, compiled.serialized))
    }
}

/// The name of an engine's compatibility class: artifacts serialised by one
/// engine load only into an engine of the same class.
pub fn engine_key(engine: &Engine) -> String {
    let mut hasher = std::hash::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_told_apart() {
        assert!(matches!(check_header(b"hello world"), Err(ComponentError::NotWasm)));
        assert!(matches!(
            check_header(b"\0asm\x01\0\0\0"),
            Err(ComponentError::CoreModule)
        ));
        assert!(check_header(b"\0asm\x0d\0\x01\0").is_ok());
    }
}
