//! The one thread that owns the database connection.
//!
//! Every store operation is a job: a closure run inside a transaction on
//! this thread. The thread takes every job that is waiting, runs them all in
//! one transaction (each in its own savepoint, so one failing job does not
//! undo the others), commits once, and only then answers each caller. That
//! is group commit: under load, many ingests share one fsync, and no caller
//! hears "done" before its data is committed.
//!
//! With fsync on, a file database commits in SQLite's `NORMAL` mode (the
//! commit writes the log, and does not sync it), and a syncer thread of its
//! own syncs the log and then answers the batch's callers: every batch that
//! committed before the sync began is durable when it returns. While one
//! batch's sync runs, the next batch already runs its statements, so the
//! disk's flush time is no longer a pause of the one thread every write
//! waits for; it stays open, taking every job that comes, until that sync
//! ends, and commits then (see [`run_batch`]). Callers still hear "done"
//! only once their data is on disk.
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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use rusqlite::{Connection, Transaction, TransactionBehavior};
use tokio::sync::{mpsc, oneshot};

use crate::metrics::Commits;
use crate::store::StoreError;

/// Most jobs in one transaction: bounds commit latency under a flood.
const MAX_BATCH: usize = 512;
/// Jobs waiting for the thread before callers wait for room.
const QUEUE: usize = 4096;

type Finish = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
/// Given the batch's transaction (or why there is none), run and return how
/// to answer the caller once the commit's outcome is known.
type Job = Box<dyn FnOnce(Result<&Transaction<'_>, StoreError>) -> Finish + Send>;

/// Syncs the write-ahead log to disk.
type SyncLog = Box<dyn FnMut() -> std::io::Result<()> + Send>;

/// What the store thread is sent.
enum Work {
    Job(Job),
    /// The syncer has answered the last batch it was given.
    Synced,
}

#[derive(Clone)]
pub struct Writer {
    jobs: mpsc::Sender<Work>,
    commits: Arc<OnceLock<Commits>>,
}

/// A committed batch waiting for its sync: how to answer its callers, and
/// what to report of it once durable.
struct Committed {
    finishers: Vec<Finish>,
    jobs: usize,
    began: Instant,
}

impl Writer {
    /// Start the thread; it runs until every `Writer` clone is dropped.
    /// `checkpoints`: a connection to checkpoint the WAL on, for a file.
    /// `log`: the write-ahead log to sync after each commit, when `conn`
    /// commits without syncing it (see the module's notes).
    pub fn start(
        conn: Connection,
        checkpoints: Option<(Connection, PathBuf)>,
        log: Option<std::fs::File>,
    ) -> Self {
        Self::start_with(
            conn,
            checkpoints,
            log.map(|file| Box::new(move || file.sync_data()) as SyncLog),
        )
    }

    /// [`Writer::start`] with `sync` in place of the log file's sync.
    fn start_with(
        mut conn: Connection,
        checkpoints: Option<(Connection, PathBuf)>,
        sync: Option<SyncLog>,
    ) -> Self {
        let (jobs, mut rx) = mpsc::channel::<Work>(QUEUE);
        let commits = Arc::new(OnceLock::<Commits>::new());
        let reset_wanted = Arc::new(AtomicBool::new(false));
        let checkpointer =
            checkpoints.map(|(c, wal)| start_checkpointer(c, wal, reset_wanted.clone()));
        // A batch is with the syncer: the next one stays open.
        let syncing = Arc::new(AtomicBool::new(false));
        let syncer =
            sync.map(|sync| start_syncer(sync, commits.clone(), syncing.clone(), jobs.downgrade()));
        let observer = commits.clone();
        std::thread::Builder::new()
            .name("wasmhook-store".into())
            .spawn(move || {
                loop {
                    let first = loop {
                        match rx.blocking_recv() {
                            Some(Work::Job(job)) => break Some(job),
                            Some(Work::Synced) => {}
                            None => break None,
                        }
                    };
                    let Some(first) = first else { return };
                    let began = Instant::now();
                    let (finishers, committed) = run_batch(&mut conn, first, &mut rx, &syncing);
                    let jobs = finishers.len();
                    match (&syncer, committed) {
                        // Answered once the log is on disk. A full channel
                        // holds this thread until the syncer catches up.
                        (Some(syncer), Ok(())) => {
                            let batch = Committed {
                                finishers,
                                jobs,
                                began,
                            };
                            syncing.store(true, Ordering::Release);
                            if let Err(unsent) = syncer.send(batch) {
                                syncing.store(false, Ordering::Release);
                                answer(unsent.0.finishers, Err(stopped_syncing()));
                            }
                        }
                        (_, committed) => {
                            if committed.is_ok()
                                && let Some(commits) = observer.get()
                            {
                                commits.observe(jobs, began.elapsed());
                            }
                            answer(finishers, committed);
                        }
                    }
                    if reset_wanted.swap(false, Ordering::AcqRel) {
                        // Only what came since the checkpointer's pass.
                        if let Err(e) =
                            conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                        {
                            tracing::warn!("store: WAL checkpoint failed: {e}");
                        }
                    }
                    if let Some(checkpointer) = &checkpointer {
                        // Full means a checkpoint is due already.
                        let _ = checkpointer.try_send(());
                    }
                }
            })
            .expect("spawning the store thread");
        Writer { jobs, commits }
    }

    /// Report each commit to `commits` from now on (the first call wins).
    pub fn observe_commits(&self, commits: Commits) {
        let _ = self.commits.set(commits);
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
            .send(Work::Job(job))
            .await
            .map_err(|_| StoreError::Unavailable("the store thread has stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Unavailable("the store thread has stopped".into()))?
    }
}

/// Run `first` and every job that comes while the batch is open in one
/// transaction, and commit it; returns how to answer its jobs, and
/// whether the commit took.
///
/// The batch stays open while `syncing` (the last batch is still being
/// synced, and this one could not be synced before that ends anyway), up
/// to [`MAX_BATCH`] jobs. So under load each sync carries one commit, as
/// large as the sync took, rather than many small ones: a commit writes
/// every page it changed to the log, and consecutive small commits write
/// the same hot pages (the tables' and indexes' last leaves) again and
/// again.
fn run_batch(
    conn: &mut Connection,
    first: Job,
    rx: &mut mpsc::Receiver<Work>,
    syncing: &AtomicBool,
) -> (Vec<Finish>, Result<(), StoreError>) {
    let tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => {
            tracing::error!("store: cannot begin a transaction: {e}");
            let err = to_store_error(&e);
            let mut finishers = vec![first(Err(err.clone()))];
            // Whatever else waits fails with it, as it would have in the
            // transaction.
            while let Ok(work) = rx.try_recv() {
                if let Work::Job(job) = work {
                    finishers.push(job(Err(err.clone())));
                }
            }
            return (finishers, Err(err));
        }
    };
    let mut finishers = vec![first(Ok(&tx))];
    while finishers.len() < MAX_BATCH {
        let work = match rx.try_recv() {
            Ok(work) => work,
            Err(_) if !syncing.load(Ordering::Acquire) => break,
            // Nothing waits, and the syncer is busy: wait for either. The
            // syncer clears the flag before it sends `Synced`, so a wake-up
            // lost to a full channel is made up by the jobs that fill it.
            Err(_) => match rx.blocking_recv() {
                Some(work) => work,
                None => break,
            },
        };
        if let Work::Job(job) = work {
            finishers.push(job(Ok(&tx)));
        }
    }
    let committed = tx.commit().map_err(|e| {
        tracing::error!("store: commit failed: {e}");
        to_store_error(&e)
    });
    (finishers, committed)
}

fn answer(finishers: Vec<Finish>, outcome: Result<(), StoreError>) {
    for finish in finishers {
        finish(outcome.clone());
    }
}

fn stopped_syncing() -> StoreError {
    StoreError::Unavailable("the store's log syncer has stopped".into())
}

/// Committed batches waiting for their sync; beyond this the writer waits.
const SYNC_QUEUE: usize = 64;

/// A thread that syncs the log `file` and then answers the batches that
/// committed before the sync began: one sync for all that are waiting.
/// It ends when the writer does.
fn start_syncer(
    mut sync: SyncLog,
    commits: Arc<OnceLock<Commits>>,
    syncing: Arc<AtomicBool>,
    writer: mpsc::WeakSender<Work>,
) -> std::sync::mpsc::SyncSender<Committed> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<Committed>(SYNC_QUEUE);
    std::thread::Builder::new()
        .name("wasmhook-sync".into())
        .spawn(move || {
            while let Ok(first) = rx.recv() {
                let mut waiting = vec![first];
                waiting.extend(rx.try_iter());
                let synced = sync().map_err(|e| {
                    // The kernel may have dropped the pages it failed to
                    // write: nothing here may be said to be durable.
                    tracing::error!("store: syncing the write-ahead log failed: {e}");
                    StoreError::Unavailable(format!("syncing the write-ahead log failed: {e}"))
                });
                for batch in waiting {
                    if synced.is_ok()
                        && let Some(commits) = commits.get()
                    {
                        commits.observe(batch.jobs, batch.began.elapsed());
                    }
                    answer(batch.finishers, synced.clone());
                }
                // The writer may commit its open batch now.
                syncing.store(false, Ordering::Release);
                if let Some(writer) = writer.upgrade() {
                    let _ = writer.try_send(Work::Synced);
                }
            }
        })
        .expect("spawning the log syncer thread");
    tx
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A caller hears the sync's outcome, not the commit's: a log that
    /// cannot be synced (here a pipe, which refuses `fsync`) fails every
    /// job of the batch, though its commit took.
    #[tokio::test]
    async fn callers_hear_done_only_from_the_sync() {
        let file = |fd: std::os::fd::OwnedFd| std::fs::File::from(fd);
        let (unsyncable, _w) = std::io::pipe().unwrap();
        let writer = Writer::start(
            Connection::open_in_memory().unwrap(),
            None,
            Some(file(unsyncable.into())),
        );
        let err = writer
            .run(|t| t.execute_batch("CREATE TABLE t (x)"))
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("syncing the write-ahead log failed"),
            "{err}"
        );

        let dir = std::env::temp_dir().join(format!("wasmhook-sync-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = std::fs::File::create(dir.join("log")).unwrap();
        let writer = Writer::start(Connection::open_in_memory().unwrap(), None, Some(log));
        let answers: Vec<_> = (0..50)
            .map(|i| writer.run(move |t| t.query_row("SELECT ?1", [i], |r| r.get::<_, i64>(0))))
            .collect();
        for (i, answer) in futures_util::future::join_all(answers)
            .await
            .into_iter()
            .enumerate()
        {
            assert_eq!(answer.unwrap(), i as i64);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// While a batch is being synced, the jobs that come meanwhile run in
    /// one open transaction, committed once that sync ends: one commit per
    /// sync, not one per arrival. None is answered before its own sync.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn jobs_that_come_during_a_sync_share_the_next_commit() {
        use std::sync::mpsc::{Receiver, channel};
        use std::sync::{Arc, Mutex};

        let dir = std::env::temp_dir().join(format!("wasmhook-open-batch-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("db");
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn.execute_batch("CREATE TABLE t (x INTEGER)").unwrap();
        let committed = || {
            Connection::open(&path)
                .unwrap()
                .query_row("SELECT count(*) FROM t", [], |r| r.get::<_, i64>(0))
                .unwrap()
        };

        // Each sync says it began, then waits to be let go.
        let (began_tx, began) = channel::<()>();
        let (go, go_rx) = channel::<()>();
        let go_rx = Mutex::new(go_rx);
        let sync: SyncLog = Box::new(move || {
            began_tx.send(()).unwrap();
            go_rx.lock().unwrap().recv().unwrap();
            Ok(())
        });
        let writer = Writer::start_with(conn, None, Some(sync));
        let insert = |x: i64, ran: Option<std::sync::mpsc::Sender<()>>| {
            let writer = writer.clone();
            tokio::spawn(async move {
                writer
                    .run(move |t| {
                        t.execute("INSERT INTO t VALUES (?1)", [x])?;
                        if let Some(ran) = ran {
                            ran.send(()).unwrap();
                        }
                        Ok(())
                    })
                    .await
            })
        };
        let wait = |rx: &Receiver<()>| rx.recv_timeout(Duration::from_secs(10)).unwrap();

        let first = insert(1, None);
        let began = Arc::new(Mutex::new(began));
        let began_ = began.clone();
        tokio::task::spawn_blocking(move || wait(&began_.lock().unwrap()))
            .await
            .unwrap();
        // The first batch is committed and being synced; eight more come.
        let (ran_tx, ran) = channel::<()>();
        let rest: Vec<_> = (2..=9).map(|x| insert(x, Some(ran_tx.clone()))).collect();
        let ran = tokio::task::spawn_blocking(move || {
            for _ in 2..=9 {
                wait(&ran);
            }
        });
        ran.await.unwrap();
        assert_eq!(
            committed(),
            1,
            "the jobs that came during the sync are not committed yet"
        );
        assert!(!first.is_finished(), "answered before its sync ended");

        go.send(()).unwrap();
        assert_eq!(first.await.unwrap(), Ok(()));
        let began_ = began.clone();
        tokio::task::spawn_blocking(move || wait(&began_.lock().unwrap()))
            .await
            .unwrap();
        // The second sync carries all eight, committed at once.
        assert_eq!(committed(), 9);
        assert!(rest.iter().all(|r| !r.is_finished()));
        go.send(()).unwrap();
        for r in rest {
            assert_eq!(r.await.unwrap(), Ok(()));
        }
        assert!(
            began.lock().unwrap().try_recv().is_err(),
            "one sync for the eight, not one each"
        );
        drop(writer);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
