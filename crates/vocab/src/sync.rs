//! Connection-sync daemon settings (`ipvsadm --start-daemon`), one
//! definition for the configuration file, the control API and rvsadm; the
//! defaults are the kernel's.

use std::net::{IpAddr, Ipv4Addr};

/// The kernel's default sync group.
pub const DEFAULT_GROUP: IpAddr = IpAddr::V4(Ipv4Addr::new(224, 0, 0, 81));
/// The kernel's default sync port.
pub const DEFAULT_PORT: u16 = 8848;
/// The kernel's default multicast TTL.
pub const DEFAULT_TTL: u8 = 1;
/// The largest `sync_retries`, as the kernel's sysctl.
pub const MAX_SYNC_RETRIES: u8 = 3;

/// The kernel's `sync_threshold` sysctl (`net.ipv4.vs.sync_threshold = 3
/// 50`): a master sends a connection when its count of packets from the
/// client reaches `threshold`, then each time the count is `threshold`
/// modulo `period` (period 0: that once). State changes are sent whatever
/// the count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(from = "[u16; 2]", into = "[u16; 2]")
)]
pub struct SyncThreshold {
    /// The packet that is sent first (the sysctl's first number).
    pub threshold: u16,
    /// Sent again every this many packets; 0: never again (the second).
    pub period: u16,
}

impl SyncThreshold {
    /// The kernel's default, `3 50`.
    pub const DEFAULT: SyncThreshold = SyncThreshold {
        threshold: 3,
        period: 50,
    };

    /// What is wrong with it, if anything: the kernel's rule (the threshold
    /// below a period that is not 0), and a count RVS keeps in 16 bits.
    pub fn check(self) -> Result<(), String> {
        if self.period != 0 && self.threshold >= self.period {
            return Err(format!(
                "sync_threshold = [{}, {}]: the threshold must be below the period (or the period 0)",
                self.threshold, self.period
            ));
        }
        if self.period == 0 && self.threshold == u16::MAX {
            return Err(format!(
                "sync_threshold = [{}, 0]: a threshold up to {}",
                self.threshold,
                u16::MAX - 1
            ));
        }
        Ok(())
    }
}

impl Default for SyncThreshold {
    fn default() -> Self {
        SyncThreshold::DEFAULT
    }
}

impl From<[u16; 2]> for SyncThreshold {
    fn from([threshold, period]: [u16; 2]) -> Self {
        SyncThreshold { threshold, period }
    }
}

impl From<SyncThreshold> for [u16; 2] {
    fn from(t: SyncThreshold) -> Self {
        [t.threshold, t.period]
    }
}

impl std::fmt::Display for SyncThreshold {
    /// As `rvsadm --sync-threshold` takes it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{},{}", self.threshold, self.period)
    }
}

impl std::str::FromStr for SyncThreshold {
    type Err = String;

    /// `T,P` (as the sysctl's `T P`, with a comma).
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s}: give THRESHOLD,PERIOD (the kernel's `3,50`), each 0 to 65535");
        let (t, p) = s.split_once(',').ok_or_else(bad)?;
        let t = SyncThreshold {
            threshold: t.trim().parse().map_err(|_| bad())?,
            period: p.trim().parse().map_err(|_| bad())?,
        };
        t.check()?;
        Ok(t)
    }
}

/// Which side of the sync a daemon is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "snake_case")
)]
pub enum SyncRole {
    /// Sends this director's connections.
    Master,
    /// Installs another director's connections.
    Backup,
}

impl SyncRole {
    /// As ipvsadm writes it.
    pub const fn name(self) -> &'static str {
        match self {
            SyncRole::Master => "master",
            SyncRole::Backup => "backup",
        }
    }

    /// From ipvsadm's word.
    pub fn from_name(s: &str) -> Option<Self> {
        match s {
            "master" => Some(SyncRole::Master),
            "backup" => Some(SyncRole::Backup),
            _ => None,
        }
    }
}

/// One sync daemon, as `--start-daemon` and `[[sync_daemon]]` give it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(deny_unknown_fields)
)]
pub struct SyncDaemon {
    /// Master or backup.
    pub role: SyncRole,
    /// `--mcast-interface`: the interface the datagrams go out of or are
    /// received on.
    pub mcast_interface: String,
    /// `--syncid`: a master's id in its datagrams; a backup takes only
    /// datagrams with its id (0: every id).
    #[cfg_attr(feature = "serde", serde(default))]
    pub syncid: u8,
    /// `--sync-maxlen`: largest datagram payload (default: the interface's
    /// MTU less the IP and UDP headers).
    #[cfg_attr(feature = "serde", serde(default))]
    pub sync_maxlen: Option<u16>,
    /// `--mcast-group` (default 224.0.0.81).
    #[cfg_attr(feature = "serde", serde(default))]
    pub mcast_group: Option<IpAddr>,
    /// `--mcast-port` (default 8848).
    #[cfg_attr(feature = "serde", serde(default))]
    pub mcast_port: Option<u16>,
    /// `--mcast-ttl` (default 1).
    #[cfg_attr(feature = "serde", serde(default))]
    pub mcast_ttl: Option<u8>,
    /// Master only, the kernel's `sync_refresh_period` sysctl (seconds;
    /// none: off): every connection the XDP program forwarded in the
    /// period is sent again, so a backup that (re)started knows every live
    /// connection after one period (a director rejoining an ECMP group).
    /// `rvsadm --sync-refresh-period` (an RVS option: ipvsadm has none).
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub sync_refresh_period: Option<u32>,
    /// Master only, the kernel's `sync_retries` sysctl (0 to 3; none: 0):
    /// after each `sync_refresh_period` round, up to this many more rounds
    /// every period / 8 send again what was active since the last round,
    /// against lost datagrams. Needs `sync_refresh_period`.
    /// `rvsadm --sync-retries` (an RVS option: ipvsadm has none).
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub sync_retries: Option<u8>,
    /// Master only, the kernel's `sync_threshold` sysctl as `[threshold,
    /// period]` (none: `[3, 50]`). The engine counts the packets it sees;
    /// a connection the XDP program forwards is sent as the program takes
    /// it over instead (see [`SyncThreshold`]).
    /// `rvsadm --sync-threshold T,P` (an RVS option: ipvsadm has none).
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub sync_threshold: Option<SyncThreshold>,
}

impl SyncDaemon {
    /// The group, defaulted.
    pub fn group(&self) -> IpAddr {
        self.mcast_group.unwrap_or(DEFAULT_GROUP)
    }

    /// The port, defaulted.
    pub fn port(&self) -> u16 {
        self.mcast_port.unwrap_or(DEFAULT_PORT)
    }

    /// The TTL, defaulted.
    pub fn ttl(&self) -> u8 {
        self.mcast_ttl.unwrap_or(DEFAULT_TTL)
    }

    /// What is wrong with these settings, if anything, in ipvsadm's terms.
    pub fn check(&self) -> Result<(), String> {
        if self.mcast_interface.is_empty() || self.mcast_interface.len() > 15 {
            return Err(format!(
                "--mcast-interface `{}': an interface name of 1 to 15 characters",
                self.mcast_interface
            ));
        }
        if !self.group().is_multicast() {
            return Err(format!(
                "--mcast-group {}: not a multicast address",
                self.group()
            ));
        }
        if self.port() == 0 {
            return Err("--mcast-port 0: a port from 1 to 65535".into());
        }
        if self.ttl() == 0 {
            return Err("--mcast-ttl 0: a TTL from 1 to 255".into());
        }
        if let Some(m) = self.sync_maxlen {
            if !(256..=65507).contains(&m) {
                return Err(format!("--sync-maxlen {m}: from 256 to 65507"));
            }
        }
        match (self.role, self.sync_refresh_period) {
            (_, None) => {}
            (SyncRole::Backup, Some(_)) => {
                return Err(
                    "sync_refresh_period: a master's setting; remove it from the backup".into(),
                )
            }
            (SyncRole::Master, Some(0)) => {
                return Err("sync_refresh_period = 0: leave it out to turn refreshing off".into())
            }
            (SyncRole::Master, Some(_)) => {}
        }
        match (self.role, self.sync_retries, self.sync_refresh_period) {
            (_, None, _) => {}
            (SyncRole::Backup, Some(_), _) => {
                return Err("sync_retries: a master's setting; remove it from the backup".into())
            }
            (SyncRole::Master, Some(r), _) if r > MAX_SYNC_RETRIES => {
                return Err(format!(
                    "sync_retries = {r}: from 0 to {MAX_SYNC_RETRIES}, as the kernel's sysctl"
                ))
            }
            (SyncRole::Master, Some(r), None) if r > 0 => {
                return Err(
                    "sync_retries: retries space sync_refresh_period rounds; set sync_refresh_period too"
                        .into(),
                )
            }
            (SyncRole::Master, Some(_), _) => {}
        }
        match (self.role, self.sync_threshold) {
            (_, None) => {}
            (SyncRole::Backup, Some(_)) => {
                return Err("sync_threshold: a master's setting; remove it from the backup".into())
            }
            (SyncRole::Master, Some(t)) => t.check()?,
        }
        Ok(())
    }

    /// The threshold in force (a master's; the kernel's default).
    pub fn threshold(&self) -> SyncThreshold {
        self.sync_threshold.unwrap_or_default()
    }

    /// ipvsadm's `-L --daemon` line, with `maxlen` the one in force.
    pub fn listing_line(&self, maxlen: u16) -> String {
        format!(
            "{} sync daemon (mcast={}, syncid={}, maxlen={maxlen}, group={}, port={}, ttl={})",
            self.role.name(),
            self.mcast_interface,
            self.syncid,
            self.group(),
            self.port(),
            self.ttl()
        )
    }
}

#[cfg(test)]
mod refresh_tests {
    use super::*;

    fn daemon(role: SyncRole, refresh: Option<u32>) -> SyncDaemon {
        SyncDaemon {
            role,
            mcast_interface: "eth1".into(),
            syncid: 7,
            sync_maxlen: None,
            mcast_group: None,
            mcast_port: None,
            mcast_ttl: None,
            sync_refresh_period: refresh,
            sync_retries: None,
            sync_threshold: None,
        }
    }

    #[test]
    fn sync_threshold_is_a_masters_below_its_period() {
        let with = |role, t: &str| SyncDaemon {
            sync_threshold: Some(t.parse().unwrap()),
            ..daemon(role, None)
        };
        assert_eq!(
            daemon(SyncRole::Master, None).threshold(),
            SyncThreshold::DEFAULT
        );
        for t in ["3,50", "0,1", "49,50", "7,0", "65534,0", "0,65535"] {
            assert!(with(SyncRole::Master, t).check().is_ok(), "{t}");
        }
        assert_eq!(
            with(SyncRole::Master, "3, 50").threshold(),
            SyncThreshold::DEFAULT
        );
        let e = with(SyncRole::Backup, "3,50").check().unwrap_err();
        assert!(e.contains("master"), "{e}");
        for (t, why) in [
            ("50,50", "below the period"),
            ("65535,0", "up to 65534"),
            ("3", "THRESHOLD,PERIOD"),
            ("3,x", "THRESHOLD,PERIOD"),
            ("-1,50", "THRESHOLD,PERIOD"),
            ("3,70000", "THRESHOLD,PERIOD"),
        ] {
            let e = t.parse::<SyncThreshold>().unwrap_err();
            assert!(e.contains(why), "{t}: {e}");
        }
        // Written by hand in a file, checked as a whole.
        let t = SyncDaemon {
            sync_threshold: Some(SyncThreshold::from([60, 50])),
            ..daemon(SyncRole::Master, None)
        };
        assert!(t.check().unwrap_err().contains("below the period"));
    }

    #[test]
    fn sync_refresh_period_is_a_masters_setting_and_never_zero() {
        assert!(daemon(SyncRole::Master, Some(10)).check().is_ok());
        assert!(daemon(SyncRole::Master, None).check().is_ok());
        assert!(daemon(SyncRole::Backup, None).check().is_ok());
        let e = daemon(SyncRole::Backup, Some(10)).check().unwrap_err();
        assert!(e.contains("master"), "{e}");
        let e = daemon(SyncRole::Master, Some(0)).check().unwrap_err();
        assert!(e.contains("leave it out"), "{e}");
    }

    #[test]
    fn sync_retries_are_a_masters_0_to_3_with_a_refresh_period() {
        let with = |role, refresh, retries| SyncDaemon {
            sync_retries: retries,
            ..daemon(role, refresh)
        };
        for r in 0..=3 {
            assert!(with(SyncRole::Master, Some(10), Some(r)).check().is_ok());
        }
        assert!(with(SyncRole::Master, None, Some(0)).check().is_ok());
        let e = with(SyncRole::Master, Some(10), Some(4))
            .check()
            .unwrap_err();
        assert_eq!(e, "sync_retries = 4: from 0 to 3, as the kernel's sysctl");
        let e = with(SyncRole::Master, None, Some(2)).check().unwrap_err();
        assert!(e.contains("set sync_refresh_period too"), "{e}");
        let e = with(SyncRole::Backup, None, Some(1)).check().unwrap_err();
        assert!(e.contains("master"), "{e}");
    }
}
