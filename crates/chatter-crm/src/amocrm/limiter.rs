//! The client-side request limiter for one amoCRM account (§2.2: ≤ 7 requests/s per
//! integration; 429 and then an API block for repeated violations).
//!
//! A token bucket whose tokens come back one window after they were spent: at most
//! `max_requests` grants in any window of `per`, so no second of the provider's clock can see
//! more, however the calls are spread. Waiters queue on an async mutex (FIFO) and sleep, never
//! spin. Clone it to share the bucket between every client of the same account on this node;
//! the cross-node limit is core's job.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

/// How many requests per window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    pub max_requests: usize,
    pub per: Duration,
}

impl RateLimit {
    /// amoCRM's documented 7 requests/s, with a 100 ms window margin so network jitter between
    /// our grant and the provider's arrival time cannot put an eighth request into its second.
    pub const AMOCRM: RateLimit = RateLimit {
        max_requests: 7,
        per: Duration::from_millis(1100),
    };
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit::AMOCRM
    }
}

/// A shareable limiter (cheap to clone; clones share one bucket).
#[derive(Clone, Debug)]
pub struct RateLimiter {
    limit: RateLimit,
    /// When each of the last `max_requests` grants happened, oldest first.
    grants: Arc<Mutex<VecDeque<Instant>>>,
}

impl RateLimiter {
    pub fn new(limit: RateLimit) -> Self {
        let max_requests = limit.max_requests.max(1);
        RateLimiter {
            limit: RateLimit {
                max_requests,
                per: limit.per,
            },
            grants: Arc::new(Mutex::new(VecDeque::with_capacity(max_requests))),
        }
    }

    pub fn limit(&self) -> RateLimit {
        self.limit
    }

    /// Waits until a request may go out, and counts it.
    pub async fn acquire(&self) {
        // Holding the lock while sleeping keeps waiters in arrival order.
        let mut grants = self.grants.lock().await;
        if grants.len() >= self.limit.max_requests {
            if let Some(&oldest) = grants.front() {
                tokio::time::sleep_until(oldest + self.limit.per).await;
            }
            grants.pop_front();
        }
        grants.push_back(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn never_more_than_the_limit_in_any_window() {
        let limiter = RateLimiter::new(RateLimit {
            max_requests: 3,
            per: Duration::from_secs(1),
        });
        let start = Instant::now();
        let mut at = Vec::new();
        for _ in 0..10 {
            limiter.acquire().await;
            at.push(start.elapsed());
        }
        for (i, t) in at.iter().enumerate() {
            let in_window = at[i..].iter().filter(|u| **u - *t < Duration::from_secs(1));
            assert!(in_window.count() <= 3, "{at:?}");
        }
        // The first three go at once: a burst is not slowed down.
        assert_eq!(at[2], Duration::ZERO);
        assert_eq!(at[3], Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn clones_share_one_bucket() {
        let a = RateLimiter::new(RateLimit {
            max_requests: 2,
            per: Duration::from_secs(1),
        });
        let b = a.clone();
        let start = Instant::now();
        a.acquire().await;
        b.acquire().await;
        a.acquire().await;
        assert_eq!(start.elapsed(), Duration::from_secs(1));
    }
}
