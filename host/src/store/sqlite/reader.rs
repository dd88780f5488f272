//! Reads beside the writer: the admin API, `/metrics` and `/readyz` never
//! wait behind ingest's commits, and never hold the write lock.
//!
//! In WAL mode a reader sees the last committed state while the writer
//! thread commits, so reads get their own small pool of read-only
//! connections, each read in one transaction (a consistent snapshot).
//! `memory://` has one connection and no WAL: its reads go through the
//! writer, as everything else does.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, Transaction};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::writer::{Writer, to_store_error};
use crate::store::StoreError;

/// Read connections for a file database: reads are short, and the machine
/// this runs on may have two cores.
const READERS: usize = 2;

pub enum Reader {
    /// Read-only connections to the database file.
    Pool(ReadPool),
    /// No second connection is possible (`memory://`): read on the writer.
    Writer(Writer),
}

impl Reader {
    /// Run `f` in a read transaction.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        match self {
            Reader::Pool(pool) => pool.run(f).await,
            Reader::Writer(writer) => writer.run(f).await,
        }
    }
}

pub struct ReadPool {
    // A std mutex: held to push or pop a connection, never across an await.
    idle: Arc<Mutex<Vec<Connection>>>,
    /// One permit per idle connection.
    available: Arc<Semaphore>,
}

impl ReadPool {
    /// Open the read connections. The writer has already opened the file
    /// and put it in WAL mode.
    pub fn open(path: &Path) -> rusqlite::Result<Self> {
        let mut idle = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            let conn = Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?;
            conn.busy_timeout(Duration::from_secs(5))?;
            idle.push(conn);
        }
        Ok(ReadPool {
            idle: Arc::new(Mutex::new(idle)),
            available: Arc::new(Semaphore::new(READERS)),
        })
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let permit = self
            .available
            .clone()
            .acquire_owned()
            .await
            .expect("the read semaphore is never closed");
        let conn = self
            .idle
            .lock()
            .expect("read pool lock poisoned")
            .pop()
            .expect("a permit means an idle connection");
        // The connection and its permit go back from the blocking thread
        // itself, even if the caller stops waiting (a client that hangs up
        // drops its handler) or `f` panics.
        let mut lent = Lent {
            conn: Some(conn),
            idle: self.idle.clone(),
            _permit: permit,
        };
        tokio::task::spawn_blocking(move || {
            let conn = lent.conn.as_mut().expect("lent until dropped");
            let t = conn.transaction().map_err(|e| to_store_error(&e))?;
            let value = f(&t).map_err(|e| to_store_error(&e))?;
            t.finish().map_err(|e| to_store_error(&e))?;
            Ok(value)
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("a read failed: {e}")))?
    }
}

/// A read connection out of the pool; returned, with its permit, on drop.
struct Lent {
    conn: Option<Connection>,
    idle: Arc<Mutex<Vec<Connection>>>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Lent {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            // Poisoned only if a holder panicked mid-push: keep serving.
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            idle.push(conn);
        }
    }
}
