//! File-system events → debounced "this path changed" notices.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
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

/// Watch `dir` (not recursively); every event's paths arrive on the receiver.
/// The watcher stops when the returned handle is dropped.
pub fn watch_dir(dir: &Path) -> notify::Result<(RecommendedWatcher, mpsc::Receiver<PathBuf>)> {
    // Bounded: when the router falls behind, notify's thread waits instead
    // of memory growing; events for one path coalesce in `Pending` anyway.
    let (tx, rx) = mpsc::channel(1024);
    let mut watcher =
        notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
            Ok(event) => {
                for path in event.paths {
                    // The receiver is gone only at shutdown.
                    let _ = tx.blocking_send(path);
                }
            }
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
    use std::time::Duration;

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
