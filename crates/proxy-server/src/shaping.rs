//! Bandwidth shaping: a token bucket shared by every tunnel of one identity
//! in one direction. A relay moves a chunk, then [`TokenBucket::consume`]s
//! it and sleeps off any debt, so the identity's tunnels together move
//! `rate` bytes per second after a burst of at most [`burst`] bytes.

use parking_lot::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
// tokio's clock, so shaping can be tested under a paused clock.
use tokio::time::Instant;

/// The bucket's depth for `rate` bytes/s: a tenth of a second's worth, at
/// least one relay chunk (16 KiB), so a tunnel that was quiet may send a
/// little at once but a measurement over seconds sees `rate`.
pub fn burst(rate: u64) -> f64 {
    (rate as f64 / 10.0).max(16.0 * 1024.0)
}

/// A token bucket whose level may go negative (debt): a consumer takes what
/// it moved and waits until the bucket would have refilled to zero.
#[derive(Debug)]
pub struct TokenBucket {
    /// Bytes per second; changed when the policy's limit changes.
    rate: AtomicU64,
    state: Mutex<Level>,
}

#[derive(Debug)]
struct Level {
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    /// A full bucket refilling at `rate` bytes per second.
    pub fn new(rate: u64) -> Self {
        TokenBucket {
            rate: AtomicU64::new(rate.max(1)),
            state: Mutex::new(Level {
                tokens: burst(rate),
                updated: Instant::now(),
            }),
        }
    }

    /// The refill rate in bytes per second.
    pub fn rate(&self) -> u64 {
        self.rate.load(Ordering::Relaxed)
    }

    /// Use `rate` from now on (the policy changed the identity's limit).
    pub fn set_rate(&self, rate: u64) {
        self.rate.store(rate.max(1), Ordering::Relaxed);
    }

    /// Take `bytes` and return how long the caller must wait before moving
    /// more (zero while the bucket is in credit).
    pub fn take(&self, bytes: usize) -> Duration {
        let rate = self.rate() as f64;
        let now = Instant::now();
        let mut level = self.state.lock();
        let elapsed = now.saturating_duration_since(level.updated).as_secs_f64();
        level.tokens = (level.tokens + elapsed * rate).min(burst(rate as u64));
        level.updated = now;
        level.tokens -= bytes as f64;
        if level.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-level.tokens / rate)
        }
    }

    /// Take `bytes` and sleep off the debt, if any.
    pub async fn consume(&self, bytes: usize) {
        let wait = self.take(bytes);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn moves_rate_bytes_per_second_after_the_burst() {
        let bucket = TokenBucket::new(1_000_000);
        let start = Instant::now();
        let mut moved = 0usize;
        while start.elapsed() < Duration::from_secs(5) {
            bucket.consume(16 * 1024).await;
            moved += 16 * 1024;
        }
        let rate = moved as f64 / start.elapsed().as_secs_f64();
        assert!(
            (1_000_000.0..1_050_000.0).contains(&rate),
            "{rate} bytes/s for a 1 MB/s bucket"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn consumers_share_one_bucket() {
        let bucket = std::sync::Arc::new(TokenBucket::new(100_000));
        let start = Instant::now();
        let tasks: Vec<_> = (0..4)
            .map(|_| {
                let bucket = bucket.clone();
                tokio::spawn(async move {
                    for _ in 0..25 {
                        bucket.consume(10_000).await;
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        // 1 MB through 100 kB/s after a 16 KiB burst: about 9.8 s.
        let took = start.elapsed().as_secs_f64();
        assert!((9.5..10.5).contains(&took), "{took} s");
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_rate_applies_at_once() {
        let bucket = TokenBucket::new(1024);
        bucket.set_rate(1_000_000);
        assert_eq!(bucket.take(16 * 1024), Duration::ZERO);
        assert!(bucket.take(100_000) < Duration::from_millis(200));
    }
}
