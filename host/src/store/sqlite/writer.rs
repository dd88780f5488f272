//! The one thread that owns the database connection.
//!
//! Every store operation is a job: a closure run inside a transaction on
//! this thread. The thread takes every job that is waiting, runs them all in
//! one transaction (each in its own savepoint, so one failing job does not
//! undo the others), commits once, and only then answers each caller. That
//! is group commit: under load, many ingests share one fsync, and no caller
//! hears "done" before its data is committed.

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
    pub fn start(mut conn: Connection) -> Self {
        let (jobs, mut rx) = mpsc::channel::<Job>(QUEUE);
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
                }
            })
            .expect("spawning the store thread");
        Writer { jobs }
    }

    /// Run `f` in a transaction on the store thread; resolves after commit.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |t| {
            let result = t.and_then(|t| in_savepoint(t, f));
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

fn in_savepoint<T>(
    t: &Transaction<'_>,
    f: impl FnOnce(&Transaction<'_>) -> rusqlite::Result<T>,
) -> Result<T, StoreError> {
    t.execute_batch("SAVEPOINT job")
        .map_err(|e| to_store_error(&e))?;
    match f(t) {
        Ok(v) => {
            t.execute_batch("RELEASE job")
                .map_err(|e| to_store_error(&e))?;
            Ok(v)
        }
        Err(e) => {
            let _ = t.execute_batch("ROLLBACK TO job; RELEASE job");
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
