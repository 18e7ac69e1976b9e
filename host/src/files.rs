//! Writing files so that a crash never leaves a half-written one under its final
//! name (blobs, compiled components): a temporary file beside it, written and
//! synced, then renamed into place (and the directory synced). Temporary names
//! carry the process id and a counter, so two writes of the same file never
//! share one; a failed write removes its temporary file, and temporary files
//! of processes that died are swept when a store opens.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;

/// Numbers the temporary files of this process.
static NEXT_TMP: AtomicU64 = AtomicU64::new(0);

/// The marker between a file's name and its temporary suffix.
const TMP_MARK: &str = ".tmp-";

/// Writes to a temporary file beside `path`, syncs it, then renames it into place.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(
        "{name}{TMP_MARK}{}-{}",
        std::process::id(),
        NEXT_TMP.fetch_add(1, Ordering::Relaxed)
    ));
    let written = (|| {
        let mut file = std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        file.write_all(bytes)
            .with_context(|| format!("writing {}", tmp.display()))?;
        file.sync_all().with_context(|| format!("syncing {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("renaming into {}", path.display()))
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    // The rename is durable once the directory is.
    if let Some(dir) = path.parent()
        && let Ok(dir) = std::fs::File::open(dir)
    {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// Whether a failure comes of a full disk (or quota).
pub fn disk_full(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| matches!(io.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT)))
    })
}

/// Removes the temporary files in `dir` left by processes that are gone;
/// returns how many.
pub fn sweep_temporary(dir: &Path) -> usize {
    let mut removed = 0;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some((_, suffix)) = name.split_once(TMP_MARK) else {
            continue;
        };
        let pid = suffix.split('-').next().and_then(|p| p.parse::<u32>().ok());
        let gone = match pid {
            Some(pid) => pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            // An older name without a pid of its own: nobody writes it any more.
            None => true,
        };
        if gone && std::fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_leave_no_temporary_files_and_dead_ones_are_swept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob");
        write_atomically(&path, b"one").unwrap();
        write_atomically(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        // A write that fails (here: its directory is gone) leaves nothing.
        assert!(write_atomically(&dir.path().join("no/such/dir/blob"), b"x").is_err());
        // Leftovers of a process that is gone are swept; ours are kept.
        std::fs::write(dir.path().join("a.tmp-4194303-1"), b"dead").unwrap();
        std::fs::write(dir.path().join("a.tmp-4194303"), b"old style").unwrap();
        let ours = format!("b.tmp-{}-7", std::process::id());
        std::fs::write(dir.path().join(&ours), b"in flight").unwrap();
        assert_eq!(sweep_temporary(dir.path()), 2);
        assert!(dir.path().join(ours).exists());
    }
}
