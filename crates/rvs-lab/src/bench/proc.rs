//! Counters read from `/proc` (CPU time of threads and processes) and the
//! pinning of threads to CPUs.

use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::Lab;

/// CPU time a task (thread) has run, in seconds: the first field of
/// `/proc/PID/schedstat` (nanoseconds on the CPU, exact, where
/// `/proc/PID/stat` samples at the clock tick). `None` if it is gone.
pub(super) fn task_cpu_secs(pid: u32) -> Option<f64> {
    parse_schedstat(&std::fs::read_to_string(format!("/proc/{pid}/schedstat")).ok()?)
}

fn parse_schedstat(s: &str) -> Option<f64> {
    let ns: u64 = s.split_whitespace().next()?.parse().ok()?;
    Some(ns as f64 * 1e-9)
}

/// CPU time of every live thread of process `pid` ([`task_cpu_secs`]
/// summed over `/proc/PID/task/*`); 0 if it is gone.
pub(super) fn threads_cpu_secs(pid: u32) -> f64 {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0.0;
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|tid| {
            parse_schedstat(
                &std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/schedstat")).ok()?,
            )
        })
        .sum()
}

/// Busy time of CPU `cpu` in seconds (everything but idle and iowait), from
/// `/proc/stat`: a cross-check that no work of the director escapes the
/// threads that are counted.
pub(super) fn cpu_busy_secs(cpu: usize) -> Option<f64> {
    let s = std::fs::read_to_string("/proc/stat").ok()?;
    let name = format!("cpu{cpu}");
    let line = s
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name.as_str()))?;
    // cpuN user nice system idle iowait irq softirq steal ...
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    let busy: u64 = [0, 1, 2, 5, 6, 7].iter().filter_map(|&i| v.get(i)).sum();
    Some(busy as f64 * tick_secs())
}

/// Pins `pid` to CPU `cpu` with taskset: all its threads (`-a`) for a
/// process, the one thread for a kernel thread.
pub(super) fn pin(pid: u32, cpu: usize, all_threads: bool) -> Result<()> {
    let mut c = Command::new("taskset");
    if all_threads {
        c.arg("-a");
    }
    c.args(["-p", "-c", &cpu.to_string(), &pid.to_string()]);
    run(&mut c)
}

/// Makes `pid` a SCHED_FIFO thread of priority 1 (`chrt -f -p 1`): it runs
/// whenever it has work, ahead of every normal thread on its CPU.
pub(super) fn realtime(pid: u32) -> Result<()> {
    run(Command::new("chrt").args(["-f", "-p", "1", &pid.to_string()]))
}

fn run(c: &mut Command) -> Result<()> {
    let line = format!("{c:?}");
    let out = c.output().with_context(|| format!("running {line}"))?;
    if !out.status.success() {
        bail!(
            "{line} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Every process in `role`'s namespace.
pub(super) fn pids_in(lab: &Lab, role: &str) -> Result<Vec<u32>> {
    Ok(rvs_netns::pids(&lab.ns(role))?)
}

/// Seconds per `/proc` clock tick (USER_HZ).
fn tick_secs() -> f64 {
    // SAFETY: sysconf(3) only reads a system constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    1.0 / if hz > 0 { hz as f64 } else { 100.0 }
}

/// Processes in `role`'s namespace whose command name is `comm`.
pub(super) fn pids_named(lab: &Lab, role: &str, comm: &str) -> Result<Vec<u32>> {
    Ok(pids_in(lab, role)?
        .into_iter()
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/comm"))
                .map(|c| c.trim() == comm)
                .unwrap_or(false)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedstat_is_nanoseconds_on_the_cpu() {
        assert_eq!(parse_schedstat("1500000000 20 7\n"), Some(1.5));
        assert_eq!(parse_schedstat(""), None);
    }

    #[test]
    fn own_cpu_time_is_readable() {
        let pid = std::process::id();
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert!(x != 1);
        assert!(task_cpu_secs(pid).is_some_and(|s| s > 0.0));
        assert!(threads_cpu_secs(pid) >= task_cpu_secs(pid).unwrap_or(0.0));
        assert!(cpu_busy_secs(0).is_some());
    }
}
