//! Reads beside the writer: the admin API, `/metrics` and `/readyz` never
//! wait behind ingest's commits, and never hold the write lock.
//!
//! In WAL mode a reader sees the last committed state while the writer
//! thread commits, so reads get their own small pool of read-only
//! connections, each read in one transaction (a consistent snapshot).
//! `memory://` has one connection and no WAL: its reads go through the
//! writer, as everything else does.

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, Transaction};
use tokio::sync::Semaphore;

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
    idle: Mutex<Vec<Connection>>,
    /// One permit per idle connection.
    available: Semaphore,
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
            idle: Mutex::new(idle),
            available: Semaphore::new(READERS),
        })
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let permit = self
            .available
            .acquire()
            .await
            .expect("the read semaphore is never closed");
        let mut conn = self
            .idle
            .lock()
            .expect("read pool lock poisoned")
            .pop()
            .expect("a permit means an idle connection");
        let done = tokio::task::spawn_blocking(move || {
            let result = conn.transaction().and_then(|t| {
                let value = f(&t)?;
                t.finish()?;
                Ok(value)
            });
            (conn, result)
        })
        .await;
        match done {
            Ok((conn, result)) => {
                self.idle
                    .lock()
                    .expect("read pool lock poisoned")
                    .push(conn);
                drop(permit);
                result.map_err(|e| to_store_error(&e))
            }
            Err(e) => {
                // The connection went down with the task: so does its permit.
                permit.forget();
                Err(StoreError::Unavailable(format!("a read failed: {e}")))
            }
        }
    }
}
