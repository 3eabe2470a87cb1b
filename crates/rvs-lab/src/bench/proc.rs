//! Counters read from `/proc`: CPU time of processes and of the machine, and
//! UDP datagrams delivered inside a namespace.

use anyhow::{bail, Context, Result};

use crate::Lab;

/// Seconds per `/proc` clock tick (USER_HZ).
fn tick_secs() -> f64 {
    // SAFETY: sysconf(3) only reads a system constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    1.0 / if hz > 0 { hz as f64 } else { 100.0 }
}

/// User + system CPU seconds of process `pid` (all its threads, living and
/// exited), or `None` if it is gone.
pub(super) fn process_cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: fields are
    // counted after the last ')'. Field 3 (state) is index 0, so utime
    // (field 14) and stime (field 15) are 11 and 12.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 * tick_secs())
}

/// Sum of [`process_cpu_secs`] over `pids` (gone processes count 0).
pub(super) fn processes_cpu_secs(pids: &[u32]) -> f64 {
    pids.iter().filter_map(|&p| process_cpu_secs(p)).sum()
}

/// Machine-wide CPU time from the first line of `/proc/stat`.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct MachineCpu {
    /// Seconds in softirq, summed over all CPUs.
    pub(super) softirq: f64,
}

impl MachineCpu {
    /// Reads `/proc/stat` now.
    pub(super) fn now() -> Result<MachineCpu> {
        let s = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
        let Some(line) = s.lines().find(|l| l.starts_with("cpu ")) else {
            bail!("/proc/stat has no `cpu` line");
        };
        // cpu user nice system idle iowait irq softirq steal ...
        let v: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .map(|x| x.parse().unwrap_or(0))
            .collect();
        let Some(&softirq) = v.get(6) else {
            bail!("/proc/stat `cpu` line too short: {line}");
        };
        Ok(MachineCpu {
            softirq: softirq as f64 * tick_secs(),
        })
    }

    /// Softirq seconds spent since `earlier`.
    pub(super) fn softirq_since(&self, earlier: &MachineCpu) -> f64 {
        (self.softirq - earlier.softirq).max(0.0)
    }
}

/// Processes in `role`'s namespace whose command name is `comm`.
pub(super) fn pids_named(lab: &Lab, role: &str, comm: &str) -> Result<Vec<u32>> {
    let out = std::process::Command::new("ip")
        .args(["netns", "pids", &lab.ns(role)])
        .output()
        .context("running `ip netns pids`")?;
    if !out.status.success() {
        bail!(
            "ip netns pids {}: {}",
            lab.ns(role),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse::<u32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/comm"))
                .map(|c| c.trim() == comm)
                .unwrap_or(false)
        })
        .collect())
}

/// UDP datagrams that reached the UDP layer in `role`'s namespace so far:
/// `InDatagrams + NoPorts + InErrors` of its `/proc/net/snmp` (a datagram
/// to a port nobody listens on is counted in NoPorts, one dropped for a
/// full buffer or bad checksum in InErrors).
pub(super) fn udp_arrived(lab: &Lab, role: &str) -> Result<u64> {
    let snmp = lab
        .exec_timeout(
            role,
            &["cat", "/proc/net/snmp"],
            std::time::Duration::from_secs(10),
        )
        .with_context(|| format!("reading /proc/net/snmp in {}", lab.ns(role)))?;
    parse_udp_arrived(&snmp)
        .with_context(|| format!("no Udp counters in /proc/net/snmp of {}", lab.ns(role)))
}

fn parse_udp_arrived(snmp: &str) -> Option<u64> {
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp: "));
    let names: Vec<&str> = udp.next()?.split_whitespace().collect();
    let values: Vec<&str> = udp.next()?.split_whitespace().collect();
    let get = |n: &str| -> Option<u64> {
        let i = names.iter().position(|x| *x == n)?;
        values.get(i)?.parse().ok()
    };
    Some(get("InDatagrams")? + get("NoPorts")? + get("InErrors")?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn udp_counters_are_summed_by_name() {
        let snmp = "Ip: Forwarding DefaultTTL\nIp: 1 64\n\
Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors\n\
Udp: 5 700 3 9 3 0 0 0 0\n\
UdpLite: InDatagrams NoPorts InErrors OutDatagrams\nUdpLite: 1 1 1 1\n";
        assert_eq!(parse_udp_arrived(snmp), Some(708));
        assert_eq!(parse_udp_arrived("Ip: a\nIp: 1\n"), None);
    }

    #[test]
    fn own_cpu_time_is_readable() {
        let pid = std::process::id();
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert!(x != 1);
        assert!(process_cpu_secs(pid).is_some_and(|s| s > 0.0));
        assert!(MachineCpu::now().is_ok());
    }
}
