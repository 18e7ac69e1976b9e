//! Content-addressed blob files (component binaries) under `<data>/blobs/sha256/`.
//! Rows keep the hash; the bytes live here, written once, atomically.

use std::path::{Path, PathBuf};

use anyhow::Context;
use sha2::{Digest, Sha256};

#[derive(Debug, Clone)]
pub struct Blobs {
    dir: PathBuf,
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Lowercase hex of some bytes.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

impl Blobs {
    pub fn open(data_dir: &Path) -> anyhow::Result<Self> {
        let dir = data_dir.join("blobs").join("sha256");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Self { dir })
    }

    pub fn path(&self, hash: &str) -> PathBuf {
        self.dir.join(hash)
    }

    /// Stores bytes under their hash (a no-op when already there). Blocking.
    pub fn put(&self, hash: &str, bytes: &[u8]) -> anyhow::Result<()> {
        let path = self.path(hash);
        if path.exists() {
            return Ok(());
        }
        write_atomically(&path, bytes)
    }

    /// Deletes a blob (nothing refers to it any more). Blocking.
    pub fn remove(&self, hash: &str) {
        if let Err(e) = std::fs::remove_file(self.path(hash))
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(hash, error = %e, "could not delete an unreferenced blob");
        }
    }

    /// Reads a blob. Blocking.
    pub fn get(&self, hash: &str) -> anyhow::Result<Vec<u8>> {
        let path = self.path(hash);
        std::fs::read(&path).with_context(|| format!("reading blob {}", path.display()))
    }
}

/// Writes to a temporary file beside `path`, then renames it into place, so a crash
/// never leaves a half-written file under the final name.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming into {}", path.display()))?;
    Ok(())
}
