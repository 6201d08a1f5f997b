//! The fixed-window counter behind the `"N/period"` rates the policy gives
//! (parsed by [`crate::parse_rate`]): proxy-server's `max_connect_rate`
//! and nephele's `max_message_rate`.

use parking_lot::Mutex;
use std::time::Duration;

/// One identity's count in the current window of a rate of `count` events
/// per `period`. Windows are aligned on multiples of the period since the
/// caller's clock anchor (`elapsed` 0).
#[derive(Debug, Default)]
pub struct FixedWindow {
    /// (window number, events counted in it).
    state: Mutex<(u128, u64)>,
}

impl FixedWindow {
    /// Count `events` at `elapsed` (time since the anchor) if they fit in
    /// the window of `count` per `period`; else count nothing and return
    /// how long until the window ends (a `Retry-After`).
    pub fn take(
        &self,
        count: u32,
        period: Duration,
        elapsed: Duration,
        events: u64,
    ) -> Result<(), Duration> {
        let period = period.as_millis().max(1);
        let now = elapsed.as_millis();
        let window = now / period;
        let mut state = self.state.lock();
        if state.0 != window {
            *state = (window, 0);
        }
        if state.1.saturating_add(events) <= u64::from(count) {
            state.1 += events;
            return Ok(());
        }
        let ends = (window + 1) * period;
        Err(Duration::from_millis((ends - now) as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_windows_count_and_say_when_they_end() {
        let window = FixedWindow::default();
        let at = Duration::from_millis;
        let take = |elapsed, events| window.take(3, at(10_000), at(elapsed), events);
        take(1_000, 2).unwrap();
        assert_eq!(take(4_000, 2), Err(at(6_000)));
        take(4_000, 1).unwrap();
        assert_eq!(take(9_999, 1), Err(at(1)));
        take(10_000, 3).unwrap();
    }
}
