//! Compiled plugins on disk, so a restart (or a file that comes back) does not
//! recompile.
//!
//! Format: one file per entry, `<sha256 of the .wasm>-<engine hash>.cwasm`,
//! holding wasmtime's serialized component followed by the SHA-256 of those
//! bytes (32 bytes). The engine hash is `Engine::precompile_compatibility_hash`,
//! so another wasmtime version or engine config never finds the entry.
//!
//! Invariants:
//! - An entry is never trusted blindly: its checksum must match before the
//!   bytes reach `Component::deserialize`, which would otherwise run
//!   whatever machine code it is given. A corrupt or unreadable entry is
//!   logged, deleted and rebuilt.
//! - Entries are written to a temp file and renamed into place, so a crash
//!   mid-write leaves no half entry under the real name.
//! - The cache is bounded: after each write only the 32 most recently used
//!   entries are kept (a hit marks an entry used).

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

const CHECKSUM_LEN: usize = 32;
/// Entries kept; the least recently used beyond this are deleted.
const MAX_ENTRIES: usize = 32;

#[derive(Debug, Clone)]
pub struct CompileCache {
    dir: PathBuf,
    engine_hash: String,
}

impl CompileCache {
    pub fn new(dir: PathBuf, engine: &Engine) -> Self {
        let mut hasher = std::hash::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        CompileCache {
            dir,
            engine_hash: format!("{:016x}", hasher.finish()),
        }
    }

    fn entry(&self, wasm_sha256: &str) -> PathBuf {
        self.dir
            .join(format!("{wasm_sha256}-{}.cwasm", self.engine_hash))
    }

    /// The cached component for this `.wasm`, if a sound entry exists.
    pub fn get(&self, engine: &Engine, wasm_sha256: &str) -> Option<Component> {
        let path = self.entry(wasm_sha256);
        let bytes = std::fs::read(&path).ok()?;
        match verify(&bytes) {
            Some(serialized) => {
                // SAFETY: the bytes were produced by `Component::serialize` in
                // this cache (the checksum over them matches what we wrote), and
                // the file name binds them to this engine's compatibility hash;
                // wasmtime re-checks its own header on top.
                #[allow(unsafe_code)]
                let component = unsafe { Component::deserialize(engine, serialized) };
                match component {
                    Ok(c) => {
                        // Most recently used is newest: what `prune` keeps.
                        let _ = std::fs::File::options()
                            .append(true)
                            .open(&path)
                            .and_then(|f| f.set_modified(std::time::SystemTime::now()));
                        Some(c)
                    }
                    // A sound entry this engine's pool cannot take (a
                    // memory limit below the plugin's minimum, say) is not
                    // corrupt: leave it for the runs that can use it.
                    Err(e) if format!("{e:#}").contains("does not fit") => None,
                    Err(e) => {
                        self.discard(&path, &format!("{e:#}"));
                        None
                    }
                }
            }
            None => {
                self.discard(&path, "checksum mismatch");
                None
            }
        }
    }

    /// Store a compiled component. Failures only cost a recompile later.
    pub fn put(&self, wasm_sha256: &str, component: &Component) {
        let result = (|| -> std::io::Result<()> {
            let mut bytes = component
                .serialize()
                .map_err(|e| std::io::Error::other(format!("{e:#}")))?;
            let sum = Sha256::digest(&bytes);
            bytes.extend_from_slice(&sum);
            std::fs::create_dir_all(&self.dir)?;
            let path = self.entry(wasm_sha256);
            let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
            std::fs::write(&tmp, &bytes)?;
            std::fs::rename(&tmp, &path)
        })();
        if let Err(e) = result {
            tracing::warn!(cache = %self.dir.display(), "could not write the compiled-plugin cache: {e}");
        }
        self.prune();
    }

    /// Keep the [`MAX_ENTRIES`] most recently used entries: every build and
    /// swap adds one (35 MB for a Python plugin), and versions come and go.
    fn prune(&self) {
        let Ok(dir) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut entries: Vec<(std::time::SystemTime, PathBuf)> = dir
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
            .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
            .collect();
        if entries.len() <= MAX_ENTRIES {
            return;
        }
        entries.sort_by_key(|e| std::cmp::Reverse(e.0));
        for (_, old) in entries.drain(MAX_ENTRIES..) {
            let _ = std::fs::remove_file(old);
        }
    }

    fn discard(&self, path: &Path, why: &str) {
        tracing::warn!(entry = %path.display(), "ignoring a bad compiled-plugin cache entry ({why}); recompiling");
        let _ = std::fs::remove_file(path);
    }
}

/// The serialized component, if the trailing checksum matches.
fn verify(bytes: &[u8]) -> Option<&[u8]> {
    let split = bytes.len().checked_sub(CHECKSUM_LEN)?;
    let (body, sum) = bytes.split_at(split);
    (Sha256::digest(body).as_slice() == sum).then_some(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_most_recently_used_entries_are_kept() {
        let dir = std::env::temp_dir().join(format!("wasmhook-cache-prune-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let cache = CompileCache::new(dir.clone(), &Engine::default());
        let base = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        for i in 0..MAX_ENTRIES + 5 {
            let path = dir.join(format!("{i:03}-x.cwasm"));
            std::fs::write(&path, b"x").unwrap();
            let file = std::fs::File::options().append(true).open(&path).unwrap();
            file.set_modified(base + std::time::Duration::from_secs(i as u64))
                .unwrap();
        }
        std::fs::write(dir.join("not-an-entry.txt"), b"x").unwrap();
        cache.prune();
        let mut left: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left.len(), MAX_ENTRIES + 1, "{left:?}");
        assert_eq!(left[0], "005-x.cwasm", "the 5 oldest went");
        assert!(left.contains(&"not-an-entry.txt".to_string()));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn checksum_guards_the_payload() {
        let mut bytes = b"serialized component".to_vec();
        let sum = Sha256::digest(&bytes);
        bytes.extend_from_slice(&sum);
        assert_eq!(verify(&bytes), Some(&b"serialized component"[..]));
        bytes[3] ^= 1;
        assert_eq!(verify(&bytes), None);
        assert_eq!(verify(b"short"), None);
    }
}
