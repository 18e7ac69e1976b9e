//! Components: checked, compiled once, cached on disk by content hash.
//!
//! Deploy checks the bytes (WebAssembly? a component, not a core module?),
//! compiles them, checks they implement the `warden:agent` world, and only then
//! writes the compiled artifact to `<data>/compiled/<engine>/<hash>.cwasm`. A
//! restart deserialises that artifact instead of compiling again.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use anyhow::Context;
use wasmtime::Engine;
use wasmtime::component::Component;

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
    #[error("internal error preparing the component: {0}")]
    Internal(String),
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

/// Compiled components by content hash, in memory and on disk.
pub struct ComponentCache {
    engine: Engine,
    dir: PathBuf,
    loaded: Mutex<HashMap<String, Component>>,
    pub compiled: AtomicU64,
    pub deserialized: AtomicU64,
}

impl ComponentCache {
    pub fn open(engine: &Engine, data_dir: &Path) -> anyhow::Result<Self> {
        let mut hasher = std::hash::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let dir = data_dir.join("compiled").join(format!("{:016x}", hasher.finish()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Self {
            engine: engine.clone(),
            dir,
            loaded: Mutex::new(HashMap::new()),
            compiled: AtomicU64::new(0),
            deserialized: AtomicU64::new(0),
        })
    }

    fn artifact(&self, hash: &str) -> PathBuf {
        self.dir.join(format!("{hash}.cwasm"))
    }

    /// The compiled component for `hash`: from memory, from disk, or compiled from
    /// the bytes `load` gives. `check` runs before anything is cached, so a
    /// component that fails it leaves nothing behind. Blocking.
    pub fn get(
        &self,
        hash: &str,
        load: impl FnOnce() -> anyhow::Result<Vec<u8>>,
        check: impl FnOnce(&Component) -> Result<(), ComponentError>,
    ) -> Result<(Component, Origin), ComponentError> {
        let cached = self
            .loaded
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(hash)
            .cloned();
        let (component, origin) = match cached {
            Some(c) => (c, Origin::Memory),
            None => self.load_or_compile(hash, load)?,
        };
        check(&component)?;
        match origin {
            Origin::Compiled => {
                let serialized = component
                    .serialize()
                    .map_err(|e| ComponentError::Internal(format!("serialising: {e:#}")))?;
                write_atomically(&self.artifact(hash), &serialized)
                    .map_err(|e| ComponentError::Internal(format!("{e:#}")))?;
                self.compiled.fetch_add(1, Ordering::Relaxed);
            }
            Origin::Disk => {
                self.deserialized.fetch_add(1, Ordering::Relaxed);
            }
            Origin::Memory => return Ok((component, origin)),
        }
        self.loaded
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(hash.to_owned(), component.clone());
        Ok((component, origin))
    }

    fn load_or_compile(
        &self,
        hash: &str,
        load: impl FnOnce() -> anyhow::Result<Vec<u8>>,
    ) -> Result<(Component, Origin), ComponentError> {
        let path = self.artifact(hash);
        if path.exists() {
            // SAFETY: the file was written by `Component::serialize` of an engine with
            // the same compatibility hash (it is in that hash's directory) into this
            // host's own data dir; wasmtime also re-checks the header and engine
            // settings before using it.
            match unsafe { Component::deserialize_file(&self.engine, &path) } {
                Ok(c) => return Ok((c, Origin::Disk)),
                Err(e) => tracing::warn!(path = %path.display(), error = %e, "cached artifact unusable; recompiling"),
            }
        }
        let bytes = load().map_err(|e| ComponentError::Internal(format!("{e:#}")))?;
        check_header(&bytes)?;
        let component = Component::new(&self.engine, &bytes).map_err(|e| ComponentError::Invalid(format!("{e:#}")))?;
        Ok((component, Origin::Compiled))
    }
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
