//! Queue counts for `/readyz` and `/metrics`, from the store at most a few
//! times a second however often they are asked.
//!
//! Each count is a store query; a scraper or a load balancer polling hard
//! would otherwise turn into a flood of them. Callers that arrive while a
//! query is running wait for it and share its answer.

use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::store::{QueueStats, StoreError};

/// How stale an answer may be.
pub const STATS_MAX_AGE: Duration = Duration::from_millis(250);

#[derive(Debug)]
pub struct CachedStats {
    max_age: Duration,
    // A tokio mutex: held across the store query, so one caller queries and
    // the others wait for its answer.
    last: Mutex<Option<(Instant, QueueStats)>>,
}

impl CachedStats {
    pub fn new(max_age: Duration) -> Self {
        CachedStats {
            max_age,
            last: Mutex::new(None),
        }
    }

    /// The last answer if it is fresh, else `fetch`'s.
    pub async fn get<F>(&self, fetch: impl FnOnce() -> F) -> Result<QueueStats, StoreError>
    where
        F: Future<Output = Result<QueueStats, StoreError>>,
    {
        let mut last = self.last.lock().await;
        if let Some((at, stats)) = &*last
            && at.elapsed() < self.max_age
        {
            return Ok(stats.clone());
        }
        let stats = fetch().await?;
        *last = Some((Instant::now(), stats.clone()));
        Ok(stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn a_flood_of_asks_makes_one_query_per_period() {
        let cache = Arc::new(CachedStats::new(Duration::from_secs(60)));
        let queries = Arc::new(AtomicUsize::new(0));
        let ask = |cache: Arc<CachedStats>, queries: Arc<AtomicUsize>| async move {
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

        // A failed query is not cached.
        let fresh = CachedStats::new(Duration::from_secs(60));
        let failed = fresh
            .get(|| async { Err(StoreError::Unavailable("down".into())) })
            .await;
        assert!(failed.is_err());
        assert_eq!(
            fresh.get(|| async { Ok(QueueStats::default()) }).await,
            Ok(QueueStats::default())
        );
    }
}
