//! The login failure limiter: one per process and kind of listener (SOCKS,
//! HTTP), so an address blocked on one listener is blocked on all of them.

use lru::LruCache;
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How many client addresses are counted at once, and separately how many
/// may be blocked at once. Counting entries past the bound forget the least
/// recently seen address; blocked entries are never forgotten before their
/// `block_for` ends.
pub const DEFAULT_MAX_TRACKED_IPS: usize = 65_536;

/// When a client counts as abusive: more than `max_failures` failures within
/// a sliding `period` block its address for `block_for`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureThresholds {
    /// Failures tolerated within `period`.
    pub max_failures: u32,
    /// The sliding window failures are counted in.
    pub period: Duration,
    /// How long an address stays blocked.
    pub block_for: Duration,
}

/// The unit an address is counted by: an IPv4 address, or the /64 of an
/// IPv6 address (one host usually holds a whole /64, so counting by /128
/// would let it rotate addresses forever).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientKey {
    /// One IPv4 address (IPv4-mapped IPv6 included).
    V4([u8; 4]),
    /// The first 64 bits of an IPv6 address.
    V6Prefix([u8; 8]),
}

impl From<IpAddr> for ClientKey {
    fn from(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V4(v4) => ClientKey::V4(v4.octets()),
            IpAddr::V6(v6) => {
                let mut prefix = [0; 8];
                prefix.copy_from_slice(&v6.octets()[..8]);
                ClientKey::V6Prefix(prefix)
            }
        }
    }
}

impl std::fmt::Display for ClientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientKey::V4(octets) => write!(f, "{}", std::net::Ipv4Addr::from(*octets)),
            ClientKey::V6Prefix(prefix) => {
                let mut octets = [0; 16];
                octets[..8].copy_from_slice(prefix);
                write!(f, "{}/64", std::net::Ipv6Addr::from(octets))
            }
        }
    }
}

struct Tables {
    /// Recent failure times per client, least recently seen first out.
    counting: LruCache<ClientKey, VecDeque<Instant>>,
    /// Blocked clients and when their block ends.
    blocked: HashMap<ClientKey, Instant>,
}

/// Failure counts and blocks shared by every listener of one kind. Every
/// operation is O(1) except a purge of expired blocks, which runs only when
/// the blocked table is full.
pub struct FailureLimiter {
    max_tracked: usize,
    tables: Mutex<Tables>,
}

impl std::fmt::Debug for FailureLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FailureLimiter")
            .field("max_tracked", &self.max_tracked)
            .finish_non_exhaustive()
    }
}

impl FailureLimiter {
    /// A limiter counting at most `max_tracked` clients (and blocking at
    /// most as many at once).
    pub fn new(max_tracked: usize) -> Arc<Self> {
        let bound = NonZeroUsize::new(max_tracked.max(1)).expect("at least one");
        Arc::new(FailureLimiter {
            max_tracked: bound.get(),
            tables: Mutex::new(Tables {
                counting: LruCache::new(bound),
                blocked: HashMap::new(),
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tables> {
        // A poisoned table only holds counters; keep using it.
        self.tables
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// How much longer `ip` stays blocked, or `None` if it may log in.
    pub fn blocked_for(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        let key = ClientKey::from(ip);
        let mut tables = self.lock();
        let until = *tables.blocked.get(&key)?;
        if until > now {
            return Some(until - now);
        }
        tables.blocked.remove(&key);
        None
    }

    /// Count a failed login; returns `true` when this failure blocks the
    /// client.
    pub fn record_failure(&self, ip: IpAddr, now: Instant, limit: &FailureThresholds) -> bool {
        let key = ClientKey::from(ip);
        let mut tables = self.lock();
        if tables.blocked.get(&key).is_some_and(|until| *until > now) {
            return false;
        }
        let failures = tables.counting.get_or_insert_mut(key, VecDeque::new);
        while failures
            .front()
            .is_some_and(|&at| now.saturating_duration_since(at) > limit.period)
        {
            failures.pop_front();
        }
        failures.push_back(now);
        if failures.len() <= limit.max_failures as usize {
            return false;
        }
        tables.counting.pop(&key);
        self.block(&mut tables, key, now, limit.block_for)
    }

    /// Put `key` in the blocked table; `false` when the table is full of
    /// unexpired blocks (the client is then only slowed by counting again).
    fn block(
        &self,
        tables: &mut Tables,
        key: ClientKey,
        now: Instant,
        block_for: Duration,
    ) -> bool {
        if tables.blocked.len() >= self.max_tracked {
            tables.blocked.retain(|_, until| *until > now);
            if tables.blocked.len() >= self.max_tracked {
                return false;
            }
        }
        // Durations are capped at ten years when parsed; an Instant that
        // still cannot hold the sum leaves the client unblocked (counted).
        let Some(until) = now.checked_add(block_for) else {
            return false;
        };
        tables.blocked.insert(key, until);
        true
    }

    /// Lift the block on the client `ip` belongs to; `true` if it was blocked.
    pub fn unblock(&self, ip: IpAddr) -> bool {
        self.lock().blocked.remove(&ClientKey::from(ip)).is_some()
    }

    /// The blocked clients and how long each stays blocked.
    pub fn blocked(&self, now: Instant) -> Vec<(ClientKey, Duration)> {
        self.lock()
            .blocked
            .iter()
            .filter(|(_, until)| **until > now)
            .map(|(key, until)| (*key, *until - now))
            .collect()
    }

    /// Clients counted or blocked now.
    pub fn tracked(&self) -> usize {
        let tables = self.lock();
        tables.counting.len() + tables.blocked.len()
    }
}

/// One listener's view of the process limiter: the shared table with this
/// listener's thresholds.
#[derive(Debug, Clone)]
pub struct ListenerFailureLimit {
    /// The process's limiter for this kind of listener.
    pub limiter: Arc<FailureLimiter>,
    /// This listener's thresholds.
    pub thresholds: FailureThresholds,
}

impl ListenerFailureLimit {
    /// How much longer `ip` stays blocked, or `None` if it may log in.
    pub fn blocked_for(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        self.limiter.blocked_for(ip, now)
    }

    /// Count a failed login; `true` when it blocks the client.
    pub fn record_failure(&self, ip: IpAddr, now: Instant) -> bool {
        self.limiter.record_failure(ip, now, &self.thresholds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    fn limit(max_failures: u32, period: u64, block_for: u64) -> FailureThresholds {
        FailureThresholds {
            max_failures,
            period: Duration::from_secs(period),
            block_for: Duration::from_secs(block_for),
        }
    }

    #[test]
    fn blocks_after_more_than_max_failures_then_expires() {
        let limiter = FailureLimiter::new(100);
        let limit = limit(10, 60, 300);
        let start = Instant::now();
        for i in 0..10 {
            assert!(!limiter.record_failure(ip(1), start + Duration::from_millis(i), &limit));
            assert_eq!(limiter.blocked_for(ip(1), start), None);
        }
        assert!(limiter.record_failure(ip(1), start + Duration::from_millis(10), &limit));
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
        let limiter = FailureLimiter::new(100);
        let limit = limit(2, 10, 60);
        let start = Instant::now();
        assert!(!limiter.record_failure(ip(1), start, &limit));
        assert!(!limiter.record_failure(ip(1), start + Duration::from_secs(1), &limit));
        assert!(!limiter.record_failure(ip(1), start + Duration::from_secs(20), &limit));
        assert!(!limiter.record_failure(ip(1), start + Duration::from_secs(21), &limit));
        assert!(limiter.record_failure(ip(1), start + Duration::from_secs(22), &limit));
    }

    #[test]
    fn memory_is_bounded() {
        let limiter = FailureLimiter::new(50);
        let limit = limit(1, 10, 60);
        let start = Instant::now();
        for n in 0..10_000u32 {
            let addr = IpAddr::from(n.to_be_bytes());
            limiter.record_failure(addr, start + Duration::from_millis(u64::from(n)), &limit);
        }
        assert!(limiter.tracked() <= 100, "{}", limiter.tracked());
    }

    /// A flood of other addresses, far more than the table holds, does not
    /// lift a block before `block_for`.
    #[test]
    fn blocked_clients_survive_a_flood_of_other_addresses() {
        let limiter = FailureLimiter::new(64);
        let limit = limit(1, 60, 300);
        let start = Instant::now();
        limiter.record_failure(ip(1), start, &limit);
        assert!(limiter.record_failure(ip(1), start, &limit));
        for n in 0..70_000u32 {
            let addr = IpAddr::from((n + (10 << 24)).to_be_bytes());
            limiter.record_failure(addr, start + Duration::from_millis(1), &limit);
        }
        assert!(limiter
            .blocked_for(ip(1), start + Duration::from_secs(299))
            .is_some());
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64_prefix() {
        let limiter = FailureLimiter::new(100);
        let limit = limit(2, 60, 300);
        let start = Instant::now();
        for host in 1..=3u16 {
            let addr = IpAddr::from([0x2001, 0xdb8, 0, 7, 0, 0, 0, host]);
            limiter.record_failure(addr, start, &limit);
        }
        let sibling = IpAddr::from([0x2001, 0xdb8, 0, 7, 0xffff, 1, 2, 3]);
        assert!(limiter.blocked_for(sibling, start).is_some());
        let other_prefix = IpAddr::from([0x2001, 0xdb8, 0, 8, 0, 0, 0, 1]);
        assert_eq!(limiter.blocked_for(other_prefix, start), None);
        assert_eq!(ClientKey::from(sibling).to_string(), "2001:db8:0:7::/64");
    }

    #[test]
    fn listeners_share_blocks_with_their_own_thresholds() {
        let limiter = FailureLimiter::new(100);
        let strict = ListenerFailureLimit {
            limiter: limiter.clone(),
            thresholds: limit(1, 60, 300),
        };
        let lenient = ListenerFailureLimit {
            limiter,
            thresholds: limit(100, 60, 300),
        };
        let start = Instant::now();
        assert!(!strict.record_failure(ip(9), start));
        assert!(strict.record_failure(ip(9), start));
        assert!(lenient.blocked_for(ip(9), start).is_some());
        assert!(lenient.limiter.unblock(ip(9)));
        assert_eq!(strict.blocked_for(ip(9), start), None);
    }
}
