//! Scale-out in the lab: N active directors behind an ECMP router, each
//! announcing the VIP over BGP with its own BIRD while its rvsd is
//! healthy.
//!
//! - **The router** runs BIRD with one eBGP session per director (BFD on,
//!   3 s hold time) and merges the directors' VIP routes into one multipath
//!   route (`merge paths`) in kernel table [`BIRD_TABLE`];
//!   `fib_multipath_hash_policy = 1` spreads flows by their L4 hash. Linux's
//!   plain multipath (hash-threshold) moves up to half the flows when a
//!   next hop returns; a *resilient* nexthop group moves only the ~1/N that
//!   go to it. BIRD 2 cannot program nexthop groups, so a small watcher
//!   ([`resilient_watcher`], [`Lab::start_ecmp_router`]) copies the next
//!   hops of BIRD's route into resilient group [`GROUP_ID`] and routes the
//!   VIP through it in the main table. A router with resilient ECMP in
//!   hardware needs none of this.
//! - **Each director** runs BIRD with a static protocol `vip` (a blackhole
//!   route for the VIP, never installed in its kernel: the director's BIRD
//!   has no kernel protocol) that starts disabled and is exported to the
//!   router. rvsd switches it with its service's quorum commands:
//!   `quorum_up` = `birdc enable vip`, `quorum_down` = `birdc disable vip`,
//!   with `alpha` (servers start down, so the first passing checks run
//!   quorum_up) and `omega` (a stopping rvsd runs quorum_down). So the VIP
//!   is announced once a real server answers, and withdrawn when the last
//!   one fails or rvsd stops. A crashed rvsd runs nothing: its supervisor
//!   runs [`withdraw_command`] after it (systemd's `ExecStopPost=`; the
//!   lab's `Rvsd::start_supervised`), and BFD withdraws a director that is
//!   gone altogether.
//! - Every director runs a master and a backup sync daemon on the sync
//!   segment, so a flow the router moves to another director is known
//!   there. A director that comes back has an empty table: the masters
//!   re-send every live connection each [`SYNC_REFRESH_PERIOD`], and its
//!   `quorum_up` announces only after [`ANNOUNCE_DELAY_SECS`], so the
//!   flows the router then moves to it are known there too.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::{cmd, dir_front_ip, Lab, LabError, Spawned, ROUTER_DIR_IP, VIP};

/// The router's AS.
pub const ROUTER_AS: u32 = 65000;
/// The directors' AS (one AS, so their routes are equal and merge).
pub const DIRECTOR_AS: u32 = 65001;
/// The director BIRD protocol that announces the VIP.
pub const VIP_PROTOCOL: &str = "vip";

const BFD: &str = "min rx interval 100 ms; min tx interval 100 ms; multiplier 3;";

/// The kernel table the router's BIRD writes the VIP's multipath route to.
pub const BIRD_TABLE: u32 = 100;
/// The resilient nexthop group the VIP is routed through.
pub const GROUP_ID: u32 = 100;

/// The router's watcher: every 50 ms, the next hops of BIRD's VIP route in
/// [`BIRD_TABLE`] become the members of resilient group [`GROUP_ID`]
/// (128 buckets; an idle bucket moves after 1 s), through which the main
/// table routes the VIP; no next hop, no route. Members keep their ids
/// (1000 + the address's last byte), so a returning director gets back
/// only buckets, never reshuffles the others'.
pub fn resilient_watcher() -> String {
    format!(
        "last=x\n\
         while :; do\n\
         \x20 hops=$(ip -4 -o route show table {BIRD_TABLE} {VIP}/32 2>/dev/null | tr ' ' '\\n' | awk 'p {{ print; p = 0 }} $0 == \"via\" {{ p = 1 }}' | sort | tr '\\n' ' ')\n\
         \x20 if [ \"$hops\" != \"$last\" ]; then\n\
         \x20   if [ -z \"$hops\" ]; then\n\
         \x20     ip route del {VIP}/32 2>/dev/null\n\
         \x20     ip nexthop del id {GROUP_ID} 2>/dev/null\n\
         \x20   else\n\
         \x20     grp=\n\
         \x20     for h in $hops; do\n\
         \x20       id=$((1000 + ${{h##*.}}))\n\
         \x20       ip nexthop replace id $id via $h dev brf\n\
         \x20       grp=$grp${{grp:+/}}$id\n\
         \x20     done\n\
         \x20     ip nexthop replace id {GROUP_ID} group $grp type resilient buckets 128 idle_timer 1\n\
         \x20     ip route replace {VIP}/32 nhid {GROUP_ID}\n\
         \x20   fi\n\
         \x20   last=$hops\n\
         \x20 fi\n\
         \x20 sleep 0.05\n\
         done\n"
    )
}

/// The router's bird.conf for `directors` directors.
pub fn router_bird_conf(directors: usize) -> String {
    let mut s = format!(
        "# Written by rvs-lab: the ECMP router. One eBGP session per director;\n\
         # their VIP routes merge into one multipath route.\n\
         router id {ROUTER_DIR_IP};\n\
         protocol device {{ scan time 10; }}\n\
         protocol kernel {{\n    kernel table {BIRD_TABLE};\n    ipv4 {{ import none; export all; }};\n    merge paths on;\n}}\n\
         protocol bfd {{\n    interface \"brf\" {{ {BFD} }};\n}}\n\
         template bgp director {{\n    local as {ROUTER_AS};\n    hold time 3;\n    \
         keepalive time 1;\n    connect retry time 1;\n    bfd on;\n    \
         ipv4 {{ import where net = {VIP}/32; export none; }};\n}}\n"
    );
    for k in 1..=directors {
        s.push_str(&format!(
            "protocol bgp director{k} from director {{ neighbor {} as {DIRECTOR_AS}; }}\n",
            dir_front_ip(k)
        ));
    }
    s
}

/// Director `k`'s bird.conf: the VIP as a static protocol that starts
/// disabled (rvsd's quorum commands enable it), exported to the router.
pub fn director_bird_conf(k: usize) -> String {
    format!(
        "# Written by rvs-lab: director {k} announces the VIP while rvsd enables\n\
         # protocol {VIP_PROTOCOL} (quorum_up / quorum_down).\n\
         router id {me};\n\
         protocol device {{ scan time 10; }}\n\
         protocol static {VIP_PROTOCOL} {{\n    disabled;\n    ipv4;\n    route {VIP}/32 blackhole;\n}}\n\
         protocol bfd {{\n    interface \"front\" {{ {BFD} }};\n}}\n\
         protocol bgp upstream {{\n    local as {DIRECTOR_AS};\n    neighbor {ROUTER_DIR_IP} as {ROUTER_AS};\n    \
         hold time 3;\n    keepalive time 1;\n    connect retry time 1;\n    bfd on;\n    \
         ipv4 {{ import none; export where proto = \"{VIP_PROTOCOL}\"; }};\n}}\n",
        me = dir_front_ip(k)
    )
}

pub use crate::ha::SYNC_REFRESH_PERIOD;
/// How long `quorum_up` waits before announcing: longer than that, so no
/// flow the router moves to a returning director is unknown there.
pub const ANNOUNCE_DELAY_SECS: u32 = 3;

/// A `[[sync_daemon]]` table for `role` on the lab's sync leg, masters
/// with [`SYNC_REFRESH_PERIOD`].
pub fn sync_daemon(role: &str) -> String {
    let mut s = crate::ha::sync_daemon(role);
    if role == "master" {
        s.push_str(&format!("sync_refresh_period = {SYNC_REFRESH_PERIOD}\n"));
    }
    s
}

/// The service's health policy that makes rvsd drive its BIRD: quorum
/// commands switching protocol [`VIP_PROTOCOL`] over `birdc` (the
/// announcement after [`ANNOUNCE_DELAY_SECS`]), alpha and omega. Goes in
/// a `[[service]]` table of rvsd's file.
pub fn announce_policy(birdc: &Path, socket: &Path) -> String {
    format!(
        "alpha = true\nomega = true\nquorum = 1\ndelay_loop = 1\n\
         quorum_up = \"/bin/sh -c 'sleep {ANNOUNCE_DELAY_SECS}; exec {} enable {VIP_PROTOCOL}'\"\n\
         quorum_down = \"{}\"\n",
        birdc_command(birdc, socket),
        withdraw_command(birdc, socket)
    )
}

/// The command that withdraws the VIP: rvsd's `quorum_down`, and what its
/// supervisor runs after rvsd exits (systemd's `ExecStopPost=`), so a
/// crash withdraws it too.
pub fn withdraw_command(birdc: &Path, socket: &Path) -> String {
    format!("{} disable {VIP_PROTOCOL}", birdc_command(birdc, socket))
}

fn birdc_command(birdc: &Path, socket: &Path) -> String {
    format!("{} -s {}", birdc.display(), socket.display())
}

/// BIRD running in a lab namespace, with its control socket.
#[derive(Debug)]
pub struct Bird {
    role: String,
    process: Spawned,
    socket: PathBuf,
}

impl Lab {
    /// The ECMP router: BIRD with [`router_bird_conf`] and the
    /// [`resilient_watcher`] beside it.
    pub fn start_ecmp_router(&self, directors: usize) -> Result<Bird, LabError> {
        let bird = self.start_bird("router", &router_bird_conf(directors))?;
        self.spawn("router", &["sh", "-c", &resilient_watcher()])?;
        Ok(bird)
    }

    /// Starts `bird -f -c CONF -s SOCK -P PID` in `role` (files in the lab
    /// dir, never the machine's `/run/bird`) and waits until birdc answers.
    pub fn start_bird(&self, role: &str, conf: &str) -> Result<Bird, LabError> {
        let bird = cmd::require("bird", "bird2")?;
        cmd::require("birdc", "bird2")?;
        let dir = self.dir().join(format!("bird-{role}"));
        std::fs::create_dir(&dir).map_err(LabError::io(format!("creating {}", dir.display())))?;
        let file = dir.join("bird.conf");
        std::fs::write(&file, conf).map_err(LabError::io(format!("writing {}", file.display())))?;
        let socket = dir.join("bird.ctl");
        let process = self.spawn(
            role,
            &[
                &bird.display().to_string(),
                "-f",
                "-c",
                &file.display().to_string(),
                "-s",
                &socket.display().to_string(),
                "-P",
                &dir.join("bird.pid").display().to_string(),
            ],
        )?;
        let b = Bird {
            role: role.to_owned(),
            process,
            socket,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while b.birdc(self, &["show", "status"]).is_err() {
            if !b.process.is_running() || Instant::now() >= deadline {
                return Err(LabError::Command {
                    cmd: format!("bird -c {} in {}", file.display(), self.ns(role)),
                    status: "not answering birdc".into(),
                    stderr: b.process.log(),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(b)
    }

    /// The next hops of the router's VIP route (none: not announced).
    pub fn vip_next_hops(&self) -> Result<Vec<Ipv4Addr>, LabError> {
        let out = self.exec_timeout(
            "router",
            &["ip", "-4", "route", "show", &format!("{VIP}/32")],
            Duration::from_secs(5),
        )?;
        let mut hops: Vec<Ipv4Addr> = out
            .split_whitespace()
            .collect::<Vec<_>>()
            .windows(2)
            .filter(|w| w[0] == "via")
            .filter_map(|w| w[1].parse().ok())
            .collect();
        hops.sort_unstable();
        Ok(hops)
    }

    /// Waits until the router's VIP route has exactly `want` next hops;
    /// returns how long that took.
    pub fn wait_vip_next_hops(
        &self,
        want: &[Ipv4Addr],
        timeout: Duration,
    ) -> Result<Duration, LabError> {
        let mut want = want.to_vec();
        want.sort_unstable();
        let started = Instant::now();
        loop {
            let now = self.vip_next_hops()?;
            if now == want {
                return Ok(started.elapsed());
            }
            if started.elapsed() >= timeout {
                return Err(LabError::Timeout {
                    what: format!("VIP route via {want:?} on the router (now via {now:?})"),
                    after: timeout,
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Which director's front address the router picks for each TCP flow
    /// from the client's `ports` to VIP:80 (its FIB lookup with the L4
    /// hash, `ip route get … ipproto tcp sport P dport 80`), in one `ip
    /// -batch`.
    pub fn vip_next_hop_per_port(&self, ports: &[u16]) -> Result<Vec<Ipv4Addr>, LabError> {
        let batch = self.dir().join("route-get.batch");
        let text: String = ports
            .iter()
            .map(|p| {
                format!(
                    "route get {VIP} from {} iif rt-client ipproto tcp sport {p} dport 80\n",
                    crate::CLIENT_IP
                )
            })
            .collect();
        std::fs::write(&batch, text)
            .map_err(LabError::io(format!("writing {}", batch.display())))?;
        let out = self.exec_timeout(
            "router",
            &["ip", "-4", "-batch", &batch.display().to_string()],
            Duration::from_secs(30),
        )?;
        let hops: Vec<Ipv4Addr> = out
            .lines()
            .filter(|l| l.starts_with(&VIP.to_string()))
            .filter_map(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                w.windows(2)
                    .find(|x| x[0] == "via")
                    .and_then(|x| x[1].parse().ok())
            })
            .collect();
        if hops.len() != ports.len() {
            return Err(LabError::Command {
                cmd: "ip -batch route get".into(),
                status: format!("{} answers for {} flows", hops.len(), ports.len()),
                stderr: out,
            });
        }
        Ok(hops)
    }
}

impl Bird {
    /// Runs `birdc -s SOCK ARGS` in its namespace.
    pub fn birdc(&self, lab: &Lab, args: &[&str]) -> Result<String, LabError> {
        let sock = self.socket.display().to_string();
        let mut argv = vec!["birdc", "-s", sock.as_str()];
        argv.extend_from_slice(args);
        lab.exec_timeout(&self.role, &argv, Duration::from_secs(5))
    }

    /// Its control socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// What it has logged.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// SIGTERM.
    pub fn stop(self) -> Result<String, LabError> {
        Ok(self.process.stop(Duration::from_secs(3))?.1)
    }
}
