//! A stream of events from several concurrent senders, as the crash tests
//! send it: each event retried (same id) until some router acknowledges it.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub struct Stream {
    /// The routers' base URLs; event `i` goes to `bases[i % len]`, and a
    /// retry to the next. Replace an entry when its router restarts.
    pub bases: Arc<Mutex<Vec<String>>>,
    /// How many events were taken by a sender so far.
    pub next: Arc<AtomicUsize>,
    acked: Arc<Mutex<HashSet<i64>>>,
    senders: Vec<tokio::task::JoinHandle<()>>,
}

impl Stream {
    /// Start `senders` senders of `events` events `{"i":N}`, each with
    /// `webhook-id: {prefix}-N`, to `/ingest/s` of `bases`.
    pub fn start(bases: Vec<String>, events: usize, senders: usize, prefix: &str) -> Stream {
        let bases = Arc::new(Mutex::new(bases));
        let next = Arc::new(AtomicUsize::new(0));
        let acked = Arc::new(Mutex::new(HashSet::new()));
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let senders = (0..senders)
            .map(|_| {
                let (bases, next, acked, client) =
                    (bases.clone(), next.clone(), acked.clone(), client.clone());
                let prefix = prefix.to_string();
                tokio::spawn(async move {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= events {
                            return;
                        }
                        // Like a real sender: retry (same id) until acknowledged.
                        for attempt in 0..500 {
                            let base = {
                                let b = bases.lock().unwrap();
                                b[(i + attempt) % b.len()].clone()
                            };
                            let sent = client
                                .post(format!("{base}/ingest/s"))
                                .header("webhook-id", format!("{prefix}-{i}"))
                                .body(format!("{{\"i\":{i}}}"))
                                .send()
                                .await;
                            if sent.is_ok_and(|r| r.status().as_u16() == 202) {
                                acked.lock().unwrap().insert(i as i64);
                                break;
                            }
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                    }
                })
            })
            .collect();
        Stream {
            bases,
            next,
            acked,
            senders,
        }
    }

    /// Until `n` events were taken by a sender.
    pub async fn reached(&self, n: usize) {
        while self.next.load(Ordering::Relaxed) < n {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Wait for every sender; the events acknowledged.
    pub async fn finish(self) -> HashSet<i64> {
        for s in self.senders {
            s.await.unwrap();
        }
        self.acked.lock().unwrap().clone()
    }
}
