use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How many client IPs are tracked at once; past it, expired entries are
/// purged and then the least recently seen IP is forgotten, so memory stays
/// bounded under a flood of distinct addresses.
pub const DEFAULT_MAX_TRACKED_IPS: usize = 65_536;

#[derive(Debug)]
struct IpRecord {
    /// Times of the most recent failures, at most `max_failures + 1`.
    failures: VecDeque<Instant>,
    blocked_until: Option<Instant>,
    last_seen: Instant,
}

/// Per-client-IP login failure limiter: more than `max_failures` failures
/// within a sliding `period` block that IP for `block_for`, during which
/// logins are refused without consulting the policy.
#[derive(Debug)]
pub struct FailureLimiter {
    max_failures: u32,
    period: Duration,
    block_for: Duration,
    max_tracked: usize,
    records: Mutex<HashMap<IpAddr, IpRecord>>,
}

impl FailureLimiter {
    /// A limiter with the given thresholds.
    pub fn new(
        max_failures: u32,
        period: Duration,
        block_for: Duration,
        max_tracked: usize,
    ) -> Self {
        FailureLimiter {
            max_failures,
            period,
            block_for,
            max_tracked: max_tracked.max(1),
            records: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, IpRecord>> {
        // A poisoned map only holds counters; keep using it.
        self.records
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// How much longer `ip` stays blocked, or `None` if it may log in.
    pub fn blocked_for(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        let records = self.lock();
        let until = records.get(&ip)?.blocked_until?;
        (until > now).then(|| until - now)
    }

    /// Count a failed login; returns `true` when this failure blocks the IP.
    pub fn record_failure(&self, ip: IpAddr, now: Instant) -> bool {
        let mut records = self.lock();
        if !records.contains_key(&ip) && records.len() >= self.max_tracked {
            self.make_room(&mut records, now);
        }
        let record = records.entry(ip).or_insert_with(|| IpRecord {
            failures: VecDeque::new(),
            blocked_until: None,
            last_seen: now,
        });
        record.last_seen = now;
        if record.blocked_until.is_some_and(|until| until > now) {
            return false;
        }
        record.blocked_until = None;
        while record
            .failures
            .front()
            .is_some_and(|&at| now.duration_since(at) > self.period)
        {
            record.failures.pop_front();
        }
        record.failures.push_back(now);
        if record.failures.len() > self.max_failures as usize {
            record.failures.clear();
            record.blocked_until = Some(now + self.block_for);
            return true;
        }
        false
    }

    /// Number of IPs tracked now.
    pub fn tracked(&self) -> usize {
        self.lock().len()
    }

    fn make_room(&self, records: &mut HashMap<IpAddr, IpRecord>, now: Instant) {
        let horizon = self.period.max(self.block_for);
        records.retain(|_, r| {
            r.blocked_until.is_some_and(|until| until > now)
                || now.duration_since(r.last_seen) <= horizon
        });
        if records.len() >= self.max_tracked {
            if let Some(oldest) = records
                .iter()
                .min_by_key(|(_, r)| r.last_seen)
                .map(|(ip, _)| *ip)
            {
                records.remove(&oldest);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn blocks_after_more_than_max_failures_then_expires() {
        let limiter =
            FailureLimiter::new(10, Duration::from_secs(60), Duration::from_secs(300), 100);
        let start = Instant::now();
        for i in 0..10 {
            assert!(!limiter.record_failure(ip(1), start + Duration::from_millis(i)));
            assert_eq!(limiter.blocked_for(ip(1), start), None);
        }
        assert!(limiter.record_failure(ip(1), start + Duration::from_millis(10)));
        assert!(limiter
            .blocked_for(ip(1), start + Duration::from_secs(1))
            .is_some());
        assert_eq!(limiter.blocked_for(ip(2), start), None);
        assert_eq!(
            limiter.blocked_for(ip(1), start + Duration::from_secs(301)),
            None
        );
    }

    #[test]
    fn failures_outside_the_period_do_not_count() {
        let limiter = FailureLimiter::new(2, Duration::from_secs(10), Duration::from_secs(60), 100);
        let start = Instant::now();
        assert!(!limiter.record_failure(ip(1), start));
        assert!(!limiter.record_failure(ip(1), start + Duration::from_secs(1)));
        assert!(!limiter.record_failure(ip(1), start + Duration::from_secs(20)));
        assert!(!limiter.record_failure(ip(1), start + Duration::from_secs(21)));
        assert!(limiter.record_failure(ip(1), start + Duration::from_secs(22)));
    }

    #[test]
    fn memory_is_bounded() {
        let limiter = FailureLimiter::new(1, Duration::from_secs(10), Duration::from_secs(60), 50);
        let start = Instant::now();
        for n in 0..10_000u32 {
            let addr = IpAddr::from(n.to_be_bytes());
            limiter.record_failure(addr, start + Duration::from_millis(u64::from(n)));
        }
        assert!(limiter.tracked() <= 50);
    }
}
