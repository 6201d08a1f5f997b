//! Pure number-crunching: latency percentiles and error tallies. No clocks
//! and no sockets here, so everything is unit-tested.

use std::collections::BTreeMap;

/// The `q`-quantile (0.0..=1.0) of `sorted` by the nearest-rank method:
/// the smallest sample such that at least `q` of all samples are ≤ it.
/// `None` for an empty slice.
pub fn percentile(sorted: &[u64], q: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let q = q.clamp(0.0, 1.0);
    let rank = (q * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// The median of unsorted values (mean of the middle two for an even
/// count); `None` when empty. Used for summarising rounds.
pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    })
}

/// Latency summary in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct LatencySummary {
    /// How many samples.
    pub count: u64,
    /// Median.
    pub p50_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// Largest sample.
    pub max_us: u64,
}

impl LatencySummary {
    /// Summarise samples (sorted in place).
    pub fn from_samples(samples: &mut [u64]) -> Self {
        samples.sort_unstable();
        LatencySummary {
            count: samples.len() as u64,
            p50_us: percentile(samples, 0.50).unwrap_or(0),
            p99_us: percentile(samples, 0.99).unwrap_or(0),
            max_us: samples.last().copied().unwrap_or(0),
        }
    }
}

/// Errors counted by kind, keeping the first message for the report.
#[derive(Debug, Clone, Default)]
pub struct ErrorTally {
    by_kind: BTreeMap<&'static str, u64>,
    first: Option<String>,
}

impl ErrorTally {
    /// Count one error.
    pub fn record(&mut self, kind: &'static str, message: impl FnOnce() -> String) {
        *self.by_kind.entry(kind).or_default() += 1;
        if self.first.is_none() {
            self.first = Some(message());
        }
    }

    /// Add another tally into this one.
    pub fn merge(&mut self, other: ErrorTally) {
        for (kind, n) in other.by_kind {
            *self.by_kind.entry(kind).or_default() += n;
        }
        if self.first.is_none() {
            self.first = other.first;
        }
    }

    /// Total errors of all kinds.
    pub fn total(&self) -> u64 {
        self.by_kind.values().sum()
    }

    /// Counts per kind, for the JSON report.
    pub fn by_kind(&self) -> BTreeMap<String, u64> {
        self.by_kind
            .iter()
            .map(|(kind, n)| (kind.to_string(), *n))
            .collect()
    }

    /// The first error's message, if any.
    pub fn first(&self) -> Option<&str> {
        self.first.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 0.50), Some(50));
        assert_eq!(percentile(&v, 0.99), Some(99));
        assert_eq!(percentile(&v, 1.0), Some(100));
        assert_eq!(percentile(&v, 0.0), Some(1));
        assert_eq!(percentile(&[], 0.5), None);
        assert_eq!(percentile(&[7], 0.99), Some(7));
        // Ten samples: p99 is the largest, p50 the fifth.
        let v: Vec<u64> = (10..20).collect();
        assert_eq!(percentile(&v, 0.99), Some(19));
        assert_eq!(percentile(&v, 0.5), Some(14));
    }

    #[test]
    fn summary_sorts_first() {
        let mut samples = vec![5, 1, 4, 2, 3];
        let s = LatencySummary::from_samples(&mut samples);
        assert_eq!(s.count, 5);
        assert_eq!(s.p50_us, 3);
        assert_eq!(s.p99_us, 5);
        assert_eq!(s.max_us, 5);
        assert_eq!(
            LatencySummary::from_samples(&mut []),
            LatencySummary::default()
        );
    }

    #[test]
    fn median_odd_even_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn tally_counts_and_keeps_first() {
        let mut a = ErrorTally::default();
        a.record("io", || "first".into());
        a.record("io", || "second".into());
        let mut b = ErrorTally::default();
        b.record("timeout", || "late".into());
        a.merge(b);
        assert_eq!(a.total(), 3);
        assert_eq!(a.first(), Some("first"));
        assert_eq!(a.by_kind()["timeout"], 1);
    }
}
