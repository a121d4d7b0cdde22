//! What the server processes use, read from /proc: proportional memory (PSS, so nginx's shared
//! memory and copy-on-write pages are counted once across master and workers) and CPU time, for
//! a process and all its descendants. Also raising our own descriptor limit.

use std::collections::{BTreeSet, HashMap};

/// `pid` and every process below it.
pub fn tree(roots: &[u32]) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some(ppid) = stat_fields(pid).and_then(|f| f.get(1)?.parse::<u32>().ok()) {
                children.entry(ppid).or_default().push(pid);
            }
        }
    }
    let mut out = BTreeSet::new();
    let mut stack: Vec<u32> = roots.to_vec();
    while let Some(p) = stack.pop() {
        if out.insert(p) {
            stack.extend(children.get(&p).into_iter().flatten().copied());
        }
    }
    out.into_iter().collect()
}

/// The fields of /proc/PID/stat after the command name: state, ppid, …
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &s[s.rfind(')')? + 1..];
    Some(after.split_whitespace().map(str::to_string).collect())
}

fn kib_field(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.starts_with(name))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Proportional set size of a process tree, KiB (RSS where smaps_rollup is missing).
pub fn pss_kib(roots: &[u32]) -> u64 {
    tree(roots)
        .into_iter()
        .map(|p| {
            std::fs::read_to_string(format!("/proc/{p}/smaps_rollup"))
                .ok()
                .and_then(|t| kib_field(&t, "Pss:"))
                .or_else(|| {
                    std::fs::read_to_string(format!("/proc/{p}/status"))
                        .ok()
                        .and_then(|t| kib_field(&t, "VmRSS:"))
                })
                .unwrap_or(0)
        })
        .sum()
}

/// Resident set size of a process tree, KiB.
pub fn rss_kib(roots: &[u32]) -> u64 {
    tree(roots)
        .into_iter()
        .filter_map(|p| {
            std::fs::read_to_string(format!("/proc/{p}/status"))
                .ok()
                .and_then(|t| kib_field(&t, "VmRSS:"))
        })
        .sum()
}

/// User + system CPU seconds of a process tree.
pub fn cpu_seconds(roots: &[u32]) -> f64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    tree(roots)
        .into_iter()
        .filter_map(|p| {
            let f = stat_fields(p)?;
            // After the name: state(0) ppid(1) … utime(11) stime(12).
            let u: f64 = f.get(11)?.parse().ok()?;
            let s: f64 = f.get(12)?.parse().ok()?;
            Some((u + s) / hz)
        })
        .sum()
}

/// Raises RLIMIT_NOFILE as far as allowed; returns the soft limit now in force.
pub fn raise_nofile(want: u64) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_max < want {
            // Only with CAP_SYS_RESOURCE; fine if it fails.
            let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .unwrap_or(want);
            let raised = libc::rlimit {
                rlim_cur: want.min(nr_open),
                rlim_max: want.min(nr_open),
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                return raised.rlim_cur;
            }
        }
        lim.rlim_cur = lim.rlim_max.min(want.max(lim.rlim_cur));
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
    }
    lim.rlim_cur
}
