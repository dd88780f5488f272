//! Store counts for `/readyz` and `/metrics` (the queue's, and each
//! target's), from the store at most a few times a second however often
//! they are asked.
//!
//! Each count is a store query; a scraper or a load balancer polling hard
//! would otherwise turn into a flood of them. Callers that arrive while a
//! query is running wait for it and share its answer.

use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::store::StoreError;

/// How stale an answer may be.
pub const STATS_MAX_AGE: Duration = Duration::from_millis(250);

#[derive(Debug)]
pub struct Cached<T> {
    max_age: Duration,
    // A tokio mutex: held across the store query, so one caller queries and
    // the others wait for its answer.
    last: Mutex<Option<(Instant, Result<T, StoreError>)>>,
}

impl<T: Clone> Cached<T> {
    pub fn new(max_age: Duration) -> Self {
        Cached {
            max_age,
            last: Mutex::new(None),
        }
    }

    /// The last answer if it is fresh, else `fetch`'s. A failure is an
    /// answer too: while the store is down, callers do not queue up to
    /// query it one after another.
    pub async fn get<F>(&self, fetch: impl FnOnce() -> F) -> Result<T, StoreError>
    where
        F: Future<Output = Result<T, StoreError>>,
    {
        let mut last = self.last.lock().await;
        if let Some((at, answer)) = &*last
            && at.elapsed() < self.max_age
        {
            return answer.clone();
        }
        let answer = fetch().await;
        *last = Some((Instant::now(), answer.clone()));
        answer
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::QueueStats;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn a_flood_of_asks_makes_one_query_per_period() {
        let cache = Arc::new(Cached::new(Duration::from_secs(60)));
        let queries = Arc::new(AtomicUsize::new(0));
        let ask = |cache: Arc<Cached<QueueStats>>, queries: Arc<AtomicUsize>| async move {
            cache
                .get(|| async {
                    queries.fetch_add(1, Ordering::SeqCst);
                    tokio::task::yield_now().await;
                    Ok(QueueStats {
                        dead: 3,
                        ..QueueStats::default()
                    })
                })
                .await
        };
        let asks: Vec<_> = (0..100)
            .map(|_| tokio::spawn(ask(cache.clone(), queries.clone())))
            .collect();
        for a in asks {
            assert_eq!(a.await.unwrap().unwrap().dead, 3);
        }
        assert_eq!(queries.load(Ordering::SeqCst), 1);

        // A failure is cached as well, and expires like an answer.
        let fresh = Cached::new(Duration::from_millis(50));
        let down = || async { Err(StoreError::Unavailable("down".into())) };
        assert!(fresh.get(down).await.is_err());
        assert!(
            fresh
                .get(|| async { unreachable!("cached") })
                .await
                .is_err(),
            "no second query while the failure is fresh"
        );
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(
            fresh.get(|| async { Ok(QueueStats::default()) }).await,
            Ok(QueueStats::default())
        );
    }
}
