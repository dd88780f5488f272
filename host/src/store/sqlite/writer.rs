//! The one thread that owns the database connection.
//!
//! Every store operation is a job: a closure run inside a transaction on
//! this thread. The thread takes every job that is waiting, runs them all in
//! one transaction (each in its own savepoint, so one failing job does not
//! undo the others), commits once, and only then answers each caller. That
//! is group commit: under load, many ingests share one fsync, and no caller
//! hears "done" before its data is committed.
//!
//! The thread does not copy the WAL into the database itself: a
//! checkpointer thread of its own, on its own connection, does that after
//! commits (`PASSIVE`, so it never blocks the writer), which keeps the
//! copying and its fsyncs off the one thread every write waits for. But the
//! log only starts over when a write begins with all of it copied, which
//! under steady writes never happens by chance (the writer appends while
//! the checkpointer copies), so the log would grow without end. When it
//! passes [`WAL_RESET_BYTES`], the checkpointer asks, and the writer copies
//! the little that arrived since, between two batches; its next write then
//! starts the log over.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rusqlite::{Connection, Transaction, TransactionBehavior};
use tokio::sync::{mpsc, oneshot};

use crate::store::StoreError;

/// Most jobs in one transaction: bounds commit latency under a flood.
const MAX_BATCH: usize = 512;
/// Jobs waiting for the thread before callers wait for room.
const QUEUE: usize = 4096;

type Finish = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
/// Given the batch's transaction (or why there is none), run and return how
/// to answer the caller once the commit's outcome is known.
type Job = Box<dyn FnOnce(Result<&Transaction<'_>, StoreError>) -> Finish + Send>;

#[derive(Clone)]
pub struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl Writer {
    /// Start the thread; it runs until every `Writer` clone is dropped.
    /// `checkpoints`: a connection to checkpoint the WAL on, for a file.
    pub fn start(mut conn: Connection, checkpoints: Option<(Connection, PathBuf)>) -> Self {
        let (jobs, mut rx) = mpsc::channel::<Job>(QUEUE);
        let reset_wanted = Arc::new(AtomicBool::new(false));
        let committed =
            checkpoints.map(|(c, wal)| start_checkpointer(c, wal, reset_wanted.clone()));
        std::thread::Builder::new()
            .name("wasmhook-store".into())
            .spawn(move || {
                while let Some(first) = rx.blocking_recv() {
                    let mut batch = vec![first];
                    while batch.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(job) => batch.push(job),
                            Err(_) => break,
                        }
                    }
                    run_batch(&mut conn, batch);
                    if reset_wanted.swap(false, Ordering::AcqRel) {
                        // Only what came since the checkpointer's pass.
                        if let Err(e) =
                            conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                        {
                            tracing::warn!("store: WAL checkpoint failed: {e}");
                        }
                    }
                    if let Some(committed) = &committed {
                        // Full means a checkpoint is due already.
                        let _ = committed.try_send(());
                    }
                }
            })
            .expect("spawning the store thread");
        Writer { jobs }
    }

    /// Run `f` in a transaction on the store thread, in a savepoint of its
    /// own (so that if it fails, none of it commits); resolves after commit.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.submit(move |t| in_savepoint(t, f)).await
    }

    /// [`Writer::run`] without the savepoint, for a job that is correct
    /// even if it fails halfway and is run again: one that only overwrites
    /// (a savepoint copies every page it touches, so this is cheaper).
    pub async fn run_idempotent<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.submit(move |t| {
            f(t).map_err(|e| {
                tracing::error!("store: {e}");
                to_store_error(&e)
            })
        })
        .await
    }

    async fn submit<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |t| {
            let result = t.and_then(f);
            Box::new(move |committed: Result<(), StoreError>| {
                let _ = tx.send(committed.and(result));
            })
        });
        self.jobs
            .send(job)
            .await
            .map_err(|_| StoreError::Unavailable("the store thread has stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Unavailable("the store thread has stopped".into()))?
    }
}

fn run_batch(conn: &mut Connection, batch: Vec<Job>) {
    let tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => {
            tracing::error!("store: cannot begin a transaction: {e}");
            let err = to_store_error(&e);
            for job in batch {
                job(Err(err.clone()))(Err(err.clone()));
            }
            return;
        }
    };
    let finishers: Vec<Finish> = batch.into_iter().map(|job| job(Ok(&tx))).collect();
    let committed = tx.commit().map_err(|e| {
        tracing::error!("store: commit failed: {e}");
        to_store_error(&e)
    });
    for finish in finishers {
        finish(committed.clone());
    }
}

/// Most often the thread checkpoints: a checkpoint copies every frame
/// committed since the last, so waiting a little makes each one do more.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

/// How big the WAL may grow before the writer makes it start over.
const WAL_RESET_BYTES: u64 = 64 << 20;

/// A thread that checkpoints the WAL at `wal` after commits; returns the
/// channel the writer nudges it on. It ends when the writer does.
fn start_checkpointer(
    conn: Connection,
    wal: PathBuf,
    reset_wanted: Arc<AtomicBool>,
) -> std::sync::mpsc::SyncSender<()> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<()>(1);
    std::thread::Builder::new()
        .name("wasmhook-checkpoint".into())
        .spawn(move || {
            while rx.recv().is_ok() {
                // PASSIVE: copy what no reader still needs, never wait.
                if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                    tracing::warn!("store: WAL checkpoint failed: {e}");
                }
                if std::fs::metadata(&wal).is_ok_and(|m| m.len() > WAL_RESET_BYTES) {
                    reset_wanted.store(true, Ordering::Release);
                }
                // A thread of its own, not a runtime's: pausing it holds up
                // nothing but the next checkpoint.
                #[allow(clippy::disallowed_methods)]
                std::thread::sleep(CHECKPOINT_EVERY);
            }
        })
        .expect("spawning the checkpoint thread");
    tx
}

fn in_savepoint<T>(
    t: &Transaction<'_>,
    f: impl FnOnce(&Transaction<'_>) -> rusqlite::Result<T>,
) -> Result<T, StoreError> {
    // Prepared once per connection, not parsed for every job.
    let step = |sql: &str| t.prepare_cached(sql).and_then(|mut s| s.execute([]));
    step("SAVEPOINT job").map_err(|e| to_store_error(&e))?;
    match f(t) {
        Ok(v) => {
            step("RELEASE job").map_err(|e| to_store_error(&e))?;
            Ok(v)
        }
        Err(e) => {
            let _ = step("ROLLBACK TO job");
            let _ = step("RELEASE job");
            tracing::error!("store: {e}");
            Err(to_store_error(&e))
        }
    }
}

/// Disk full is "full" (503, retry later); anything else is "unavailable".
pub fn to_store_error(e: &rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DiskFull) => StoreError::Full,
        _ => StoreError::Unavailable(e.to_string()),
    }
}
