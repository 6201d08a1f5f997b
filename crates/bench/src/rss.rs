//! Reading a process's memory from `/proc`: `VmRSS` from `status` and `Pss`
//! from `smaps_rollup`, summed over the process and its descendants (Dante
//! serves clients from forked children).

use anyhow::{Context, Result};
use std::collections::{BTreeSet, HashMap};

/// Memory of a process tree in KiB.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct TreeMemory {
    /// Sum of `VmRSS` (shared pages count once per process).
    pub rss_kib: u64,
    /// Sum of `Pss` (shared pages split between the sharers); 0 when
    /// `smaps_rollup` is not readable.
    pub pss_kib: u64,
    /// How many processes were summed.
    pub processes: u64,
}

/// Read the memory of `pid` and all its descendants.
pub fn tree_memory(pid: u32) -> Result<TreeMemory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("read /proc/{pid}/status (is the proxy running?)"))?;
    let mut total = TreeMemory {
        rss_kib: status_field_kib(&status, "VmRSS:").context("no VmRSS line")?,
        pss_kib: pss_kib(pid),
        processes: 1,
    };
    for child in descendants(pid, &parent_map()?) {
        // A child may exit between listing and reading: skip it.
        let Ok(status) = std::fs::read_to_string(format!("/proc/{child}/status")) else {
            continue;
        };
        total.rss_kib += status_field_kib(&status, "VmRSS:").unwrap_or(0);
        total.pss_kib += pss_kib(child);
        total.processes += 1;
    }
    Ok(total)
}

fn pss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .ok()
        .and_then(|text| status_field_kib(&text, "Pss:"))
        .unwrap_or(0)
}

/// Every pid's parent, from `/proc/*/stat`.
fn parent_map() -> Result<HashMap<u32, u32>> {
    let mut parents = HashMap::new();
    for entry in std::fs::read_dir("/proc").context("list /proc")? {
        let Ok(entry) = entry else { continue };
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            if let Some(ppid) = stat_ppid(&stat) {
                parents.insert(pid, ppid);
            }
        }
    }
    Ok(parents)
}

/// All descendants of `root` given a child→parent map.
pub fn descendants(root: u32, parents: &HashMap<u32, u32>) -> BTreeSet<u32> {
    let mut found = BTreeSet::new();
    let mut frontier = vec![root];
    while let Some(parent) = frontier.pop() {
        for (&child, &p) in parents {
            if p == parent && child != root && found.insert(child) {
                frontier.push(child);
            }
        }
    }
    found
}

/// The value in KiB of a `Name:   123 kB` line.
pub fn status_field_kib(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// The parent pid from a `/proc/PID/stat` line. The command name is in
/// parentheses and may itself contain spaces or `)`, so fields are counted
/// from the last `)`.
pub fn stat_ppid(stat: &str) -> Option<u32> {
    let after = &stat[stat.rfind(')')? + 1..];
    // After the name: state, then ppid.
    after.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_parsing() {
        let status = "Name:\tdanted\nVmPeak:\t  9000 kB\nVmRSS:\t    4242 kB\nThreads:\t1\n";
        assert_eq!(status_field_kib(status, "VmRSS:"), Some(4242));
        assert_eq!(status_field_kib(status, "VmSwap:"), None);
        let rollup = "55d0-7ffd ---p 00000000 00:00 0 [rollup]\nRss:  100 kB\nPss:   77 kB\n";
        assert_eq!(status_field_kib(rollup, "Pss:"), Some(77));
    }

    #[test]
    fn ppid_with_odd_name() {
        assert_eq!(stat_ppid("123 (danted) S 1 123 123 0 -1"), Some(1));
        assert_eq!(stat_ppid("124 (a) b) S 123 124 1 0"), Some(123));
        assert_eq!(stat_ppid("garbage"), None);
    }

    #[test]
    fn tree_walk() {
        let parents: HashMap<u32, u32> = [(2, 1), (3, 2), (4, 1), (5, 9), (1, 0)].into();
        let d = descendants(1, &parents);
        assert_eq!(d.into_iter().collect::<Vec<_>>(), vec![2, 3, 4]);
        assert!(descendants(5, &parents).is_empty());
    }

    #[test]
    fn own_process_is_readable() {
        let me = tree_memory(std::process::id()).unwrap();
        assert!(me.rss_kib > 0);
        assert!(me.processes >= 1);
    }
}
