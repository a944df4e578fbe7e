//! The client-side request limiter for one amoCRM account (§2.2: ≤ 7 requests/s per
//! integration; 429 and then an API block for repeated violations).
//!
//! A token bucket whose tokens come back one window after they were spent: at most
//! `max_requests` grants in any window of `per`, so no second of the provider's clock can see
//! more, however the calls are spread. Waiters queue on an async mutex (FIFO) and sleep, never
//! spin. Clone it to share the bucket between every client of the same account on this node;
//! the cross-node limit is core's job.
//!
//! Why not the `governor` crate (issue 10, item 8; probed with governor 0.10.4): its GCRA refills
//! one cell every `per / max_requests`, so it cannot give both of this rule's halves at once.
//! With the same rate and burst (7 per 1.1 s, burst 7) it granted 7 at 0 ms and then one every
//! 157 ms: 13 grants inside one 1.1 s window, the overrun amoCRM answers with 429 and then a
//! block. Burst 1 keeps the window (at most 7) but spaces the first seven over 957 ms where
//! this limiter sends them at once; a 1.1 s period with burst 7 keeps both but then allows one
//! request per 1.1 s instead of seven. It also keeps its own clock rather than tokio's (the tests
//! below run on tokio's paused time) and wakes waiters in no set order (this queue is FIFO).

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

    /// The rule a GCRA limiter with the same rate and burst breaks: a full burst, then a steady
    /// stream, never puts an eighth request into any window of amoCRM's limit.
    #[tokio::test(start_paused = true)]
    async fn amocrm_burst_then_stream_keeps_seven_per_window() {
        let limiter = RateLimiter::new(RateLimit::AMOCRM);
        let per = RateLimit::AMOCRM.per;
        let start = Instant::now();
        let mut at = Vec::new();
        for _ in 0..30 {
            limiter.acquire().await;
            at.push(start.elapsed());
        }
        for (i, t) in at.iter().enumerate() {
            let in_window = at[i..].iter().filter(|u| **u - *t < per).count();
            assert!(in_window <= 7, "{in_window} in one window: {at:?}");
        }
        assert_eq!(at[6], Duration::ZERO, "the first seven go at once");
        // Seven more each window afterwards: the sustained rate is the full 7 per window.
        assert_eq!(at[27], per * 3, "{at:?}");
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
