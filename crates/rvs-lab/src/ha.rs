//! High availability in the lab: keepalived in VRRP-only mode moving the
//! floating addresses between two directors (active/passive), with its
//! notify hooks switching rvsd's sync role.
//!
//! The pieces an operator runs, the way an operator runs them: each
//! director has rvsd with the same services and a backup sync daemon
//! always on (`[[sync_daemon]] role = "backup"` in its file), and
//! keepalived whose `vrrp_sync_group` moves [`FLOATING_FRONT_IP`] (the
//! router's next hop for the VIP) and, for NAT, [`FLOATING_BACK_IP`] (the
//! real servers' gateway) or, for FullNAT, the local addresses
//! [`LOCAL_IPS`] (which the real servers answer) together. Becoming MASTER starts rvsd's master
//! sync daemon (`rvsadm --start-daemon master`); BACKUP and FAULT stop it
//! (`rvsadm --stop-daemon master`). One rvsadm command per hook, so
//! keepalived runs it directly, no shell. A director that was backup
//! already holds the master's connections when it takes over; one that
//! returns (rvsd restarted, table empty) learns them from the master's
//! `--sync-refresh-period` before its `preempt_delay` lets it take the
//! addresses back.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use rvs_engine::config::DEFAULT_LOCAL_PORT_RANGE;
use std::time::{Duration, Instant};

use crate::{cmd, Lab, LabError, Mode, Spawned, FLOATING_BACK_IP, FLOATING_FRONT_IP, LOCAL_IPS};

/// The sync id the lab's directors use.
pub const SYNC_ID: u8 = 7;
/// The directors' sync leg.
pub const SYNC_INTERFACE: &str = "sync0";
/// Masters' `sync_refresh_period` (seconds): every live connection is
/// sent again this often, so a director that (re)starts knows them all
/// one period (plus the 1 s a partial datagram may wait) after its backup
/// daemon started.
pub const SYNC_REFRESH_PERIOD: u32 = 1;
/// keepalived's `preempt_delay`: a returning preferred master takes the
/// addresses back only after this, once the refresh has reached it.
pub const PREEMPT_DELAY_SECS: u32 = 3;
/// VRRP advertisement interval in seconds (VRRPv3 takes fractions): the
/// backup declares the master dead after 3 intervals plus its skew, about
/// 1.1 s, inside the 3 s a takeover may take.
pub const ADVERT_INT: &str = "0.3";
/// VRRP priority of director `k`: the first is the preferred master.
pub fn vrrp_priority(k: usize) -> u8 {
    if k <= 1 {
        150
    } else {
        100
    }
}

/// The `[[sync_daemon]]` table every director's rvsd file carries: a backup
/// daemon on the sync leg, always on (the master daemon is keepalived's).
pub fn backup_sync_daemon() -> String {
    sync_daemon("backup")
}

/// A `[[sync_daemon]]` table for `role` on the lab's sync leg.
pub fn sync_daemon(role: &str) -> String {
    format!(
        "[[sync_daemon]]\nrole = \"{role}\"\nmcast_interface = \"{SYNC_INTERFACE}\"\nsyncid = {SYNC_ID}\n"
    )
}

/// keepalived.conf for director `k` of an active/passive pair: VRRP only
/// (no `virtual_server`: rvsd balances), both instances in one sync group
/// so the VIP's next hop and the NAT gateway (or FullNAT's local
/// addresses) move together, and notify
/// hooks running `rvsadm_hook` (the rvsadm command line, e.g.
/// `/usr/sbin/rvsadm` or `/usr/bin/env RVSD_SOCKET=… rvsadm`).
pub fn keepalived_conf(k: usize, mode: Mode, rvsadm_hook: &str) -> String {
    let mut instances = vec![("RVS_FRONT", "front", 51, vec![FLOATING_FRONT_IP])];
    match mode {
        Mode::Nat => instances.push(("RVS_BACK", "back", 52, vec![FLOATING_BACK_IP])),
        Mode::FullNat => instances.push(("RVS_BACK", "back", 52, LOCAL_IPS.to_vec())),
        Mode::Dr | Mode::Tun => {}
    }
    let mut s = format!(
        "# Written by rvs-lab: VRRP only. rvsd balances; keepalived moves the\n\
         # floating addresses and switches rvsd's sync role.\n\
         global_defs {{\n    router_id {role}\n    vrrp_version 3\n    script_user root\n    \
         vrrp_garp_master_delay 1\n    vrrp_garp_master_repeat 3\n}}\n\n\
         vrrp_sync_group RVS {{\n    group {{\n",
        role = crate::director_role(k)
    );
    for (name, ..) in &instances {
        s.push_str(&format!("        {name}\n"));
    }
    let start = format!(
        "{rvsadm_hook} --start-daemon master --mcast-interface {SYNC_INTERFACE} --syncid {SYNC_ID} \
         --sync-refresh-period {SYNC_REFRESH_PERIOD}"
    );
    let stop = format!("{rvsadm_hook} --stop-daemon master");
    s.push_str(&format!(
        "    }}\n    notify_master \"{start}\"\n    notify_backup \"{stop}\"\n    notify_fault \"{stop}\"\n}}\n"
    ));
    for (name, dev, vrid, addrs) in instances {
        let addrs: String = addrs
            .iter()
            .map(|a| format!("        {a}/24 dev {dev}\n"))
            .collect();
        s.push_str(&format!(
            "\nvrrp_instance {name} {{\n    state BACKUP\n    interface {dev}\n    \
             virtual_router_id {vrid}\n    priority {prio}\n    advert_int {ADVERT_INT}\n    \
             preempt_delay {PREEMPT_DELAY_SECS}\n    \
             virtual_ipaddress {{\n{addrs}    }}\n}}\n",
            prio = vrrp_priority(k)
        ));
    }
    s
}

/// The nftables table that keeps a FullNAT director's kernel from
/// answering the local addresses' FullNAT ports (`range`: the
/// configuration's `local_port_range`) when no XDP program takes those
/// packets: a director whose rvsd died still holds the addresses until
/// the other takes them, and its TCP stack would reset every connection
/// whose server reply reaches it. Dropped instead, the reply is sent
/// again and reaches the new master. While rvsd runs, its XDP program
/// takes these packets before nftables sees them. The director's own
/// connections use the kernel's ephemeral ports, above the range.
pub fn local_port_guard(range: (u16, u16)) -> Vec<String> {
    let addrs: Vec<String> = LOCAL_IPS.iter().map(ToString::to_string).collect();
    let (lo, hi) = range;
    vec![
        "add table inet rvs_fullnat".into(),
        "add chain inet rvs_fullnat input { type filter hook input priority 0 ; }".into(),
        format!(
            "add rule inet rvs_fullnat input ip daddr {{ {} }} meta l4proto {{ tcp, udp, sctp }} th dport {lo}-{hi} drop",
            addrs.join(", ")
        ),
    ]
}

/// keepalived running in a director namespace (VRRP subsystem only).
#[derive(Debug)]
pub struct Keepalived {
    role: String,
    parent: Spawned,
    vrrp_pid_file: PathBuf,
}

impl Lab {
    /// Installs [`local_port_guard`] for the default local port range in
    /// director `role`.
    pub fn guard_local_ports(&self, role: &str) -> Result<(), LabError> {
        for command in local_port_guard(DEFAULT_LOCAL_PORT_RANGE) {
            let mut args = vec!["nft"];
            args.extend(command.split(' '));
            self.exec(role, &args)?;
        }
        Ok(())
    }

    /// Starts `keepalived -P -n -l -D` in director `role` on `conf`, with
    /// its pid files and configuration in the lab dir (never the
    /// machine's `/run/keepalived*`).
    pub fn start_keepalived(&self, role: &str, conf: &str) -> Result<Keepalived, LabError> {
        let bin = cmd::require("keepalived", "keepalived")?;
        // A fresh directory per start: a restarted keepalived keeps the
        // first one's log.
        let dir = (1..)
            .map(|n| match n {
                1 => self.dir().join(format!("keepalived-{role}")),
                n => self.dir().join(format!("keepalived-{role}-{n}")),
            })
            .find(|d| !d.exists())
            .expect("a free name");
        std::fs::create_dir(&dir).map_err(LabError::io(format!("creating {}", dir.display())))?;
        let file = dir.join("keepalived.conf");
        std::fs::write(&file, conf).map_err(LabError::io(format!("writing {}", file.display())))?;
        let path = |name: &str| dir.join(name).display().to_string();
        let vrrp_pid_file = dir.join("vrrp.pid");
        let parent = self.spawn(
            role,
            &[
                &bin.display().to_string(),
                "--vrrp",
                "--dont-fork",
                "--log-console",
                "--log-detail",
                "--no-syslog",
                "--use-file",
                &path("keepalived.conf"),
                "--pid",
                &path("keepalived.pid"),
                "--vrrp_pid",
                &path("vrrp.pid"),
                "--checkers_pid",
                &path("checkers.pid"),
                "--bfd_pid",
                &path("bfd.pid"),
            ],
        )?;
        Ok(Keepalived {
            role: role.to_owned(),
            parent,
            vrrp_pid_file,
        })
    }

    /// Whether `role` has `addr` on any interface.
    pub fn holds(&self, role: &str, addr: Ipv4Addr) -> Result<bool, LabError> {
        let out = self.exec_timeout(
            role,
            &["ip", "-o", "-4", "addr", "show"],
            Duration::from_secs(5),
        )?;
        let want = format!(" {addr}/");
        Ok(out.lines().any(|l| l.contains(&want)))
    }

    /// Waits until `role` holds `addr`; returns how long that took.
    pub fn wait_holds(
        &self,
        role: &str,
        addr: Ipv4Addr,
        timeout: Duration,
    ) -> Result<Duration, LabError> {
        let started = Instant::now();
        loop {
            if self.holds(role, addr)? {
                return Ok(started.elapsed());
            }
            if started.elapsed() >= timeout {
                return Err(LabError::Timeout {
                    what: format!("{addr} on {}", self.ns(role)),
                    after: timeout,
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Keepalived {
    /// The director it runs in.
    pub fn role(&self) -> &str {
        &self.role
    }

    /// What it has logged so far.
    pub fn log(&self) -> String {
        self.parent.log()
    }

    /// Whether its parent process still runs.
    pub fn is_running(&self) -> bool {
        self.parent.is_running()
    }

    /// A crash: both processes stopped at once, then killed, so neither
    /// releases its addresses nor sends a priority-0 advertisement (a
    /// parent killed first would have its VRRP child stop cleanly, and a
    /// child killed first would be respawned). The floating addresses stay
    /// on the dead director's interfaces, as after a real crash.
    pub fn crash(self) -> Result<String, LabError> {
        let child = read_pid(&self.vrrp_pid_file);
        cmd::signal(self.parent.pid(), libc::SIGSTOP);
        if let Some(c) = child {
            cmd::signal(c, libc::SIGSTOP);
            cmd::signal(c, libc::SIGKILL);
        }
        let (_, log) = self
            .parent
            .stop_with(libc::SIGKILL, Duration::from_secs(2))?;
        Ok(log)
    }

    /// SIGTERM: keepalived releases its addresses and tells the peer.
    pub fn stop(self) -> Result<String, LabError> {
        let (_, log) = self.parent.stop(Duration::from_secs(5))?;
        Ok(log)
    }
}

fn read_pid(file: &Path) -> Option<u32> {
    std::fs::read_to_string(file).ok()?.trim().parse().ok()
}
