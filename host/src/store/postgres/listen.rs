//! Wake-ups between nodes: one connection per node `LISTEN`s, and every
//! commit that makes work `pg_notify`s. A notice is only a hint to look now;
//! the tables are the truth, and each waiter also looks again after
//! `storage.poll_interval`, so a lost notice (or a lost connection) costs
//! at most that long.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tokio_postgres::AsyncMessage;
use tokio_postgres_rustls::MakeRustlsConnect;

/// New deliveries are due; the payload is the target's name.
pub const DUE: &str = "wasmhook_due";
/// New events wait for their routes.
pub const EVENTS: &str = "wasmhook_events";
/// A plugin was pushed; the payload is its name.
pub const PLUGINS: &str = "wasmhook_plugins";

/// What this node's waiters wait on.
#[derive(Default)]
pub struct Wake {
    targets: Mutex<HashMap<String, Arc<Notify>>>,
    pub events: Notify,
    pub plugins: Notify,
}

impl Wake {
    pub fn target(&self, name: &str) -> Arc<Notify> {
        self.targets
            .lock()
            .expect("wake lock poisoned")
            .entry(name.to_string())
            .or_default()
            .clone()
    }

    /// Everyone looks again (after a reconnect: notices may have been
    /// missed meanwhile).
    fn all(&self) {
        for n in self.targets.lock().expect("wake lock poisoned").values() {
            n.notify_one();
        }
        self.events.notify_one();
        self.plugins.notify_one();
    }
}

/// Keep a listening connection open, reconnecting with a growing pause,
/// and turn notices into wake-ups. Runs until aborted.
pub async fn run(config: tokio_postgres::Config, tls: MakeRustlsConnect, wake: Arc<Wake>) {
    let mut pause = Duration::from_millis(200);
    loop {
        match listen(&config, tls.clone(), &wake).await {
            Ok(()) => {
                tracing::warn!("the PostgreSQL listening connection closed; reconnecting")
            }
            Err(e) => tracing::warn!(
                "the PostgreSQL listening connection failed: {e}; reconnecting in {pause:?} (work is still found by polling)"
            ),
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(10));
    }
}

async fn listen(
    config: &tokio_postgres::Config,
    tls: MakeRustlsConnect,
    wake: &Wake,
) -> Result<(), tokio_postgres::Error> {
    let (client, mut conn) = config.connect(tls).await?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let drive = tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| conn.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(n))) => {
                    if tx.send(n).is_err() {
                        return Ok(());
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e),
                None => return Ok(()),
            }
        }
    });
    client
        .batch_execute(&format!("LISTEN {DUE}; LISTEN {EVENTS}; LISTEN {PLUGINS}"))
        .await?;
    wake.all();
    while let Some(n) = rx.recv().await {
        match n.channel() {
            DUE => wake.target(n.payload()).notify_one(),
            EVENTS => wake.events.notify_one(),
            PLUGINS => wake.plugins.notify_one(),
            _ => {}
        }
    }
    drop(client);
    drive.await.unwrap_or(Ok(()))
}
