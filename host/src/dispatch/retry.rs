//! When to try a failed delivery again.

use std::time::{Duration, SystemTime};

use rand::Rng;

/// A `Retry-After` value: delay-seconds (`120`) or an HTTP-date
/// (`Wed, 21 Oct 2015 07:28:00 GMT`), as RFC 9110 allows. A date in the past
/// means now. Anything else is ignored (`None`), and the schedule applies.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// A target's retry schedule: the delay before attempt 2, 3, …, with ±20 %
/// jitter so a recovering target is not hit by every retry at once. The last
/// delay repeats if `max_attempts` outruns the schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy<'a> {
    pub schedule: &'a [Duration],
    pub max_attempts: u32,
}

impl RetryPolicy<'_> {
    /// The delay after failed attempt number `attempt` (1-based), or `None`
    /// when that was the last attempt. A `Retry-After` from the target is
    /// honoured within [scheduled delay, 2 × scheduled delay]: a target may
    /// slow us down, but not stall the delivery for hours nor speed us up.
    pub fn next_delay(
        &self,
        attempt: u32,
        retry_after: Option<Duration>,
        rng: &mut impl Rng,
    ) -> Option<Duration> {
        if attempt >= self.max_attempts {
            return None;
        }
        let index = (attempt as usize - 1).min(self.schedule.len().saturating_sub(1));
        let base = self.schedule.get(index).copied().unwrap_or_default();
        let jittered = base.mul_f64(rng.random_range(0.8..=1.2));
        Some(match retry_after {
            Some(ra) => ra.clamp(base, base * 2),
            None => jittered,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    const SCHEDULE: [Duration; 3] = [
        Duration::from_secs(5),
        Duration::from_secs(300),
        Duration::from_secs(1800),
    ];

    fn policy() -> RetryPolicy<'static> {
        RetryPolicy {
            schedule: &SCHEDULE,
            max_attempts: 5,
        }
    }

    #[test]
    fn follows_the_schedule_with_bounded_jitter_and_stops() {
        let p = policy();
        let mut rng = StdRng::seed_from_u64(7);
        for _ in 0..1000 {
            for (attempt, base) in [(1, 5.0), (2, 300.0), (3, 1800.0), (4, 1800.0)] {
                let d = p.next_delay(attempt, None, &mut rng).unwrap().as_secs_f64();
                assert!(
                    (base * 0.8..=base * 1.2).contains(&d),
                    "attempt {attempt}: {d}"
                );
            }
            assert_eq!(p.next_delay(5, None, &mut rng), None);
        }
    }

    #[test]
    fn jitter_spreads_retries() {
        let p = policy();
        let mut rng = StdRng::seed_from_u64(1);
        let delays: std::collections::HashSet<_> = (0..20)
            .map(|_| p.next_delay(1, None, &mut rng).unwrap())
            .collect();
        assert!(delays.len() > 10);
    }

    #[test]
    fn retry_after_is_clamped_to_one_to_two_times_the_schedule() {
        let p = policy();
        let mut rng = StdRng::seed_from_u64(3);
        let s = Duration::from_secs;
        assert_eq!(p.next_delay(1, Some(s(1)), &mut rng), Some(s(5)));
        assert_eq!(p.next_delay(1, Some(s(8)), &mut rng), Some(s(8)));
        assert_eq!(p.next_delay(1, Some(s(3600)), &mut rng), Some(s(10)));
    }

    #[test]
    fn retry_after_is_seconds_or_an_http_date() {
        let now = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").unwrap();
        let s = Duration::from_secs;
        assert_eq!(parse_retry_after("120", now), Some(s(120)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(s(0)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(s(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO),
            "a date in the past means now"
        );
        for junk in [
            "",
            "-1",
            "1.5",
            "soon",
            "Wed, 21 Oct 2015",
            "99999999999999999999",
        ] {
            assert_eq!(parse_retry_after(junk, now), None, "{junk:?}");
        }
    }

    #[test]
    fn one_attempt_means_no_retry() {
        let p = RetryPolicy {
            schedule: &[Duration::ZERO],
            max_attempts: 1,
        };
        assert_eq!(p.next_delay(1, None, &mut rand::rng()), None);
    }
}
