//! File-system events → debounced "this path changed" notices.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use notify::event::{AccessKind, AccessMode, ModifyKind};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Paths waiting for a quiet period before they are acted on.
#[derive(Debug, Default)]
pub struct Pending {
    due: HashMap<PathBuf, Instant>,
}

impl Pending {
    /// (Re)schedule `path` for `at`: a later event pushes an earlier one back.
    pub fn schedule(&mut self, path: PathBuf, at: Instant) {
        self.due.insert(path, at);
    }

    pub fn next_due(&self) -> Option<Instant> {
        self.due.values().min().copied()
    }

    /// Remove and return the paths due by `now`, in a stable order.
    pub fn take_due(&mut self, now: Instant) -> Vec<PathBuf> {
        let mut ready: Vec<PathBuf> = self
            .due
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(p, _)| p.clone())
            .collect();
        ready.sort();
        for p in &ready {
            self.due.remove(p);
        }
        ready
    }
}

/// Whether a file-system event can mean a file's content or presence
/// changed: create, write, close after writing, rename, remove.
///
/// Opens, reads and closes after reading are not changes. Passing them on
/// made the router react to its own reads: loading a plugin opens it, which
/// scheduled another load, forever (and so did anyone running `cat` on the
/// config). Metadata changes (`chmod`, `touch`) are not changes either: the
/// content is what is loaded, and it is hashed.
pub fn is_change(kind: &EventKind) -> bool {
    match kind {
        EventKind::Create(_) | EventKind::Remove(_) => true,
        EventKind::Modify(ModifyKind::Metadata(_)) => false,
        EventKind::Modify(_) => true,
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        // A backend that cannot say what happened: look at the file again.
        EventKind::Any => true,
        EventKind::Other => false,
    }
}

/// Watch `dir` (not recursively); the paths of every event that may be a
/// change ([`is_change`]) arrive on the receiver. The watcher stops when the
/// returned handle is dropped.
pub fn watch_dir(dir: &Path) -> notify::Result<(RecommendedWatcher, mpsc::Receiver<PathBuf>)> {
    // Bounded: when the router falls behind, notify's thread waits instead
    // of memory growing; events for one path coalesce in `Pending` anyway.
    let (tx, rx) = mpsc::channel(1024);
    let mut watcher =
        notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
            Ok(event) if is_change(&event.kind) => {
                for path in event.paths {
                    // The receiver is gone only at shutdown.
                    let _ = tx.blocking_send(path);
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("file watcher error: {e}"),
        })?;
    watcher.watch(dir, RecursiveMode::NonRecursive)?;
    Ok((watcher, rx))
}

/// Sleep until `at`, or forever when there is nothing pending.
pub async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{AccessMode, CreateKind, DataChange, MetadataKind, RemoveKind, RenameMode};
    use std::time::Duration;

    #[test]
    fn reads_and_metadata_are_not_changes_writes_renames_and_removes_are() {
        let changes = [
            EventKind::Create(CreateKind::File),
            EventKind::Modify(ModifyKind::Data(DataChange::Any)),
            EventKind::Modify(ModifyKind::Name(RenameMode::To)),
            EventKind::Modify(ModifyKind::Name(RenameMode::From)),
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
            EventKind::Remove(RemoveKind::File),
            EventKind::Any,
        ];
        for kind in changes {
            assert!(is_change(&kind), "{kind:?} is a change");
        }
        let not_changes = [
            EventKind::Access(AccessKind::Open(AccessMode::Any)),
            EventKind::Access(AccessKind::Read),
            EventKind::Access(AccessKind::Close(AccessMode::Read)),
            EventKind::Access(AccessKind::Any),
            EventKind::Modify(ModifyKind::Metadata(MetadataKind::Any)),
            EventKind::Other,
        ];
        for kind in not_changes {
            assert!(!is_change(&kind), "{kind:?} is not a change");
        }
    }

    #[test]
    fn later_events_push_the_deadline_back_and_due_paths_come_out_once() {
        let t0 = Instant::now();
        let mut p = Pending::default();
        p.schedule("a".into(), t0 + Duration::from_millis(10));
        p.schedule("b".into(), t0 + Duration::from_millis(20));
        p.schedule("a".into(), t0 + Duration::from_millis(30));
        assert_eq!(p.next_due(), Some(t0 + Duration::from_millis(20)));
        assert_eq!(
            p.take_due(t0 + Duration::from_millis(25)),
            [PathBuf::from("b")]
        );
        assert!(p.take_due(t0 + Duration::from_millis(25)).is_empty());
        assert_eq!(
            p.take_due(t0 + Duration::from_millis(30)),
            [PathBuf::from("a")]
        );
        assert_eq!(p.next_due(), None);
    }
}
