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

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

const CHECKSUM_LEN: usize = 32;

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
                    Ok(c) => Some(c),
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
