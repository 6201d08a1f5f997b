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

/// CPU time (user + system) in microseconds spent by `pid`, its live
/// descendants and the children it has already reaped (Dante's finished
/// workers): the proxy's cost, independent of how loaded the machine is.
pub fn tree_cpu_us(pid: u32) -> Result<u64> {
    let ticks_per_sec = clock_ticks_per_sec();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("read /proc/{pid}/stat (is the proxy running?)"))?;
    let root = stat_cpu_ticks(&stat).context("malformed /proc/PID/stat")?;
    let mut ticks = root.own + root.reaped_children;
    for child in descendants(pid, &parent_map()?) {
        if let Some(cpu) = std::fs::read_to_string(format!("/proc/{child}/stat"))
            .ok()
            .and_then(|text| stat_cpu_ticks(&text))
        {
            ticks += cpu.own;
        }
    }
    Ok(ticks * 1_000_000 / ticks_per_sec)
}

/// The proxy's CPU clock ([`tree_cpu_us`]) read at the start of a measured
/// window.
pub struct CpuWindow {
    pid: u32,
    start_us: u64,
}

impl CpuWindow {
    /// Start the window now.
    pub fn start(pid: u32) -> Result<Self> {
        Ok(CpuWindow {
            pid,
            start_us: tree_cpu_us(pid)?,
        })
    }

    /// CPU microseconds the process tree used since [`CpuWindow::start`].
    pub fn used_us(&self) -> Result<u64> {
        Ok(tree_cpu_us(self.pid)?.saturating_sub(self.start_us))
    }
}

fn clock_ticks_per_sec() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).ok().filter(|&t| t > 0).unwrap_or(100)
}

struct CpuTicks {
    own: u64,
    reaped_children: u64,
}

/// utime+stime and cutime+cstime from a `/proc/PID/stat` line. The command
/// name may contain spaces and parentheses, so fields are counted from the
/// last `)`.
fn stat_cpu_ticks(stat: &str) -> Option<CpuTicks> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let field = |n: usize| fields.get(n)?.parse::<u64>().ok();
    // After the name: state is field 3 of the man page, utime field 14.
    Some(CpuTicks {
        own: field(11)? + field(12)?,
        reaped_children: field(13)? + field(14)?,
    })
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
    fn cpu_ticks_from_stat_with_odd_names() {
        let stat = "42 (my (odd) proc) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 2 1 20 0 1 0 5 1000 10";
        let cpu = stat_cpu_ticks(stat).unwrap();
        assert_eq!((cpu.own, cpu.reaped_children), (10, 3));
        assert!(tree_cpu_us(std::process::id()).is_ok());
    }

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
