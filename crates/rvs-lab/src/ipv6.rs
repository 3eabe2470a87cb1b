//! The lab's IPv6 layer: the same topology dual-stack, so every mode can be
//! run with an IPv6 service ([`Lab::enable_ipv6`]).
//!
//! ```text
//!  client fd00:1::2 ── fd00:1::1 router fd00:3::1 ── fd00:3::2 (front) dir
//!                               br0 fd00:2::1                  (back) fd00:2::10
//!                      rs1 fd00:2::11, rs2 fd00:2::12, ... ─────────┘
//!  VIP6 fd00:100::1/128 is routed by the router to the director (front).
//! ```
//!
//! Real servers per mode, as for IPv4:
//! - DR: VIP6 on `lo` as /128. Linux answers neighbour solicitations only
//!   for addresses of the interface they arrive on, so, unlike IPv4's ARP,
//!   no sysctl is needed to keep the servers from answering for the VIP
//!   (an operator whose servers hold the VIP on the LAN interface instead
//!   must not do that: put it on `lo`, or filter NS for it);
//! - NAT: default IPv6 route via the director's back address;
//! - TUN: a second `rvs-decap --vip VIP6` decapsulates IPv6-in-IPv6.
//!
//! Addresses are added with `nodad` (no 1-second duplicate address
//! detection wait); every namespace starts with IPv6 disabled (the lab's
//! IPv4 captures stay free of IPv6 chatter), so this turns it on first.

use std::net::Ipv6Addr;
use std::time::Duration;

use crate::{find_decap, DirectorKind, Lab, LabError, Mode};

/// The IPv6 virtual service address.
pub const VIP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x100, 0, 0, 0, 0, 0, 1);
/// The client's IPv6 address.
pub const CLIENT_IP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 2);
/// The router's IPv6 address toward the client.
pub const ROUTER_CLIENT_IP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 1);
/// The router's IPv6 address toward the director's front leg.
pub const ROUTER_DIR_IP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 3, 0, 0, 0, 0, 0, 1);
/// The router's IPv6 address on the server LAN.
pub const ROUTER_LAN_IP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 2, 0, 0, 0, 0, 0, 1);
/// The director's front IPv6 address; VIP6 is routed here.
pub const DIR_FRONT_IP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 3, 0, 0, 0, 0, 0, 2);
/// The director's back IPv6 address (the IPv6 DIP).
pub const DIR_BACK_IP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 2, 0, 0, 0, 0, 0, 0x10);

/// IPv6 address of real server `n` (1-based): fd00:2::(0x10+n).
pub fn rs_ip6(n: usize) -> Ipv6Addr {
    Ipv6Addr::new(
        0xfd00,
        2,
        0,
        0,
        0,
        0,
        0,
        0x10 + n.clamp(1, crate::MAX_SERVERS) as u16,
    )
}

impl Lab {
    /// Makes the lab dual-stack: IPv6 addresses and routes mirroring the
    /// IPv4 ones, VIP6 routed to the director, the real servers wired for
    /// the lab's mode (see the module doc). Call before starting rvsd, which
    /// reads the director's addresses when it starts.
    pub fn enable_ipv6(&self) -> Result<(), LabError> {
        let n = self.spec.servers;
        let mut devices: Vec<(String, &str)> = vec![
            ("client".into(), "eth0"),
            ("router".into(), "rt-client"),
            ("router".into(), "rt-dir"),
            ("router".into(), "br0"),
            ("dir".into(), "front"),
            ("dir".into(), "back"),
        ];
        devices.extend((1..=n).map(|i| (format!("rs{i}"), "eth0")));
        for role in self.roles() {
            for scope in ["all", "default", "lo"] {
                self.set_sysctl(&role, &format!("net.ipv6.conf.{scope}.disable_ipv6"), "0")?;
            }
        }
        for (role, dev) in &devices {
            self.set_sysctl(role, &format!("net.ipv6.conf.{dev}.disable_ipv6"), "0")?;
        }
        let addr = |role: &str, dev: &str, a: Ipv6Addr, len: u8| {
            self.ip(
                role,
                &[
                    "-6",
                    "addr",
                    "add",
                    &format!("{a}/{len}"),
                    "dev",
                    dev,
                    "nodad",
                ],
            )
        };
        let route = |role: &str, dst: &str, via: Ipv6Addr| {
            self.ip(role, &["-6", "route", "add", dst, "via", &via.to_string()])
        };
        addr("client", "eth0", CLIENT_IP6, 64)?;
        route("client", "default", ROUTER_CLIENT_IP6)?;
        addr("router", "rt-client", ROUTER_CLIENT_IP6, 64)?;
        addr("router", "rt-dir", ROUTER_DIR_IP6, 64)?;
        addr("router", "br0", ROUTER_LAN_IP6, 64)?;
        self.set_sysctl("router", "net.ipv6.conf.all.forwarding", "1")?;
        route("router", &format!("{VIP6}/128"), DIR_FRONT_IP6)?;
        addr("dir", "front", DIR_FRONT_IP6, 64)?;
        addr("dir", "back", DIR_BACK_IP6, 64)?;
        if self.spec.mode == Mode::FullNat {
            addr("dir", "back", crate::LOCAL_IP6, 64)?;
        }
        route("dir", "default", ROUTER_DIR_IP6)?;
        self.set_sysctl("dir", "net.ipv6.conf.all.forwarding", "1")?;
        let gateway = match (self.spec.director, self.spec.mode) {
            (DirectorKind::NftDnat, _) | (DirectorKind::None, Mode::Nat) => DIR_BACK_IP6,
            _ => ROUTER_LAN_IP6,
        };
        let decap = match self.spec.mode {
            Mode::Tun => Some(find_decap(self.spec.decap_bin.as_deref())?),
            _ => None,
        };
        for i in 1..=n {
            let rs = format!("rs{i}");
            addr(&rs, "eth0", rs_ip6(i), 64)?;
            route(&rs, "default", gateway)?;
            if self.spec.mode == Mode::Dr {
                addr(&rs, "lo", VIP6, 128)?;
            }
            if let Some(bin) = &decap {
                let bin = bin.display().to_string();
                let vip = VIP6.to_string();
                let gue_port = crate::GUE_PORT.to_string();
                self.spawn(
                    &rs,
                    &[
                        &bin,
                        "--vip",
                        &vip,
                        "--tun-name",
                        "rvsdecap6",
                        "--gue-port",
                        &gue_port,
                        "--gre",
                    ],
                )?;
            }
        }
        if decap.is_some() {
            for i in 1..=n {
                self.wait_decap_addr(
                    &format!("rs{i}"),
                    std::net::IpAddr::V6(VIP6),
                    Duration::from_secs(10),
                )?;
            }
        }
        // The client reaches every server's nginx over IPv6 through the
        // router before the director is involved (a wiring check).
        self.wait_http(
            "client",
            &format!("http://[{}]/", rs_ip6(1)),
            Duration::from_secs(10),
        )
        .map(|_| ())
    }
}
