//! What the director learns from the kernel: its interfaces (index, MAC,
//! addresses, MTU), routes and the neighbour table.
//!
//! Read through iproute2's JSON output (`ip -j`), which is stable and
//! documented; moving this to rtnetlink is a planned follow-up (it would also
//! let us subscribe to changes instead of polling).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::process::Command;

use anyhow::{bail, Context};
use rvs_engine::{IfIndex, Interface, Route};
use rvs_wire::EthernetAddress;
use serde::Deserialize;

fn ip_json(args: &[&str]) -> anyhow::Result<serde_json::Value> {
    let out = Command::new("ip")
        .arg("-j")
        .args(args)
        .output()
        .context("running `ip` (install iproute2)")?;
    if !out.status.success() {
        bail!(
            "`ip -j {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    if out.stdout.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(serde_json::Value::Array(Vec::new()));
    }
    serde_json::from_slice(&out.stdout).context("parsing `ip -j` output")
}

#[derive(Deserialize)]
struct AddrInfo {
    family: String,
    local: IpAddr,
    prefixlen: u8,
    #[serde(default)]
    scope: String,
}

#[derive(Deserialize)]
struct Link {
    ifindex: u32,
    ifname: String,
    mtu: u32,
    address: Option<String>,
    #[serde(default)]
    addr_info: Vec<AddrInfo>,
}

/// The interface `name` as the engine needs it.
pub(crate) fn interface(name: &str) -> anyhow::Result<Interface> {
    let v = ip_json(&["addr", "show", "dev", name])
        .with_context(|| format!("interface {name} not found: check `interfaces` in the config"))?;
    let links: Vec<Link> = serde_json::from_value(v).context("unexpected `ip -j addr` output")?;
    let Some(l) = links.into_iter().next() else {
        bail!("interface {name} not found: check `interfaces` in the config");
    };
    let mac: EthernetAddress = l
        .address
        .as_deref()
        .unwrap_or_default()
        .parse()
        .map_err(|_| anyhow::anyhow!("interface {name} has no Ethernet address"))?;
    Ok(Interface {
        index: IfIndex(l.ifindex),
        name: l.ifname,
        mac,
        addrs: l
            .addr_info
            .into_iter()
            .filter(|a| (a.family == "inet" || a.family == "inet6") && a.scope != "link")
            .map(|a| (a.local, a.prefixlen))
            .collect(),
        // Loopback reports 65536; an IP packet cannot exceed 65535 anyway.
        mtu: u16::try_from(l.mtu).unwrap_or(u16::MAX),
    })
}

#[derive(Deserialize)]
struct RouteJson {
    dst: String,
    gateway: Option<IpAddr>,
    dev: Option<String>,
}

/// Routes of the main table that leave through one of `ifaces`, beyond their
/// connected networks (which the engine derives from the addresses).
pub(crate) fn routes(ifaces: &[Interface]) -> anyhow::Result<Vec<Route>> {
    let mut out = Vec::new();
    for family in ["-4", "-6"] {
        let v = ip_json(&[family, "route", "show", "table", "main"])?;
        let routes: Vec<RouteJson> =
            serde_json::from_value(v).context("unexpected `ip -j route` output")?;
        for r in routes {
            let Some(gateway) = r.gateway else { continue };
            let Some(iface) = ifaces.iter().find(|i| Some(&i.name) == r.dev.as_ref()) else {
                continue;
            };
            let (dst, prefix_len) = if r.dst == "default" {
                let any: IpAddr = if family == "-4" {
                    "0.0.0.0".parse()?
                } else {
                    "::".parse()?
                };
                (any, 0)
            } else {
                match r.dst.split_once('/') {
                    Some((a, l)) => (a.parse()?, l.parse()?),
                    None => {
                        let a: IpAddr = r.dst.parse()?;
                        (a, if a.is_ipv4() { 32 } else { 128 })
                    }
                }
            };
            out.push(Route {
                dst,
                prefix_len,
                egress: iface.index,
                gateway: Some(gateway),
            });
        }
    }
    Ok(out)
}

#[derive(Deserialize)]
struct NeighJson {
    dst: IpAddr,
    lladdr: Option<String>,
    #[serde(default)]
    state: Vec<String>,
}

/// Resolved neighbours (address → MAC), sorted for cheap comparison.
pub(crate) fn neighbors() -> anyhow::Result<BTreeMap<IpAddr, EthernetAddress>> {
    let v = ip_json(&["neigh", "show"])?;
    let list: Vec<NeighJson> =
        serde_json::from_value(v).context("unexpected `ip -j neigh` output")?;
    Ok(list
        .into_iter()
        .filter(|n| !n.state.iter().any(|s| s == "FAILED" || s == "INCOMPLETE"))
        .filter_map(|n| Some((n.dst, n.lladdr?.parse().ok()?)))
        .collect())
}

/// Asks the kernel to resolve `addr` by sending it an empty datagram to the
/// discard port: the kernel ARPs / solicits for the next hop as it would for
/// any traffic, and the neighbour poller picks the answer up.
pub(crate) fn trigger_resolution(addr: IpAddr) {
    let bind = if addr.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    if let Ok(s) = std::net::UdpSocket::bind(bind) {
        let _ = s.send_to(&[], (addr, 9));
    }
}

/// RX queues of an interface (one AF_XDP worker per queue).
pub(crate) fn rx_queues(name: &str) -> u32 {
    std::fs::read_dir(format!("/sys/class/net/{name}/queues"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
                .count() as u32
        })
        .unwrap_or(1)
        .max(1)
}
