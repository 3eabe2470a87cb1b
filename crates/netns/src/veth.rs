//! veth pairs between namespaces, created inside them (never in the root
//! namespace) and configured in one call.

use crate::{exec, ip, Error};

/// One end of a [`Veth`]: its namespace and device name, and what to set on
/// it.
#[derive(Debug, Clone)]
pub struct End {
    netns: String,
    dev: String,
    mac: Option<String>,
    mtu: Option<u32>,
    addrs: Vec<String>,
}

impl End {
    /// Device `dev` in namespace `netns`, with the kernel's defaults.
    pub fn new(netns: &str, dev: &str) -> End {
        End {
            netns: netns.to_owned(),
            dev: dev.to_owned(),
            mac: None,
            mtu: None,
            addrs: Vec::new(),
        }
    }

    /// A fixed MAC address (`02:…`), for tests that check frames byte for
    /// byte.
    pub fn mac(mut self, mac: &str) -> End {
        self.mac = Some(mac.to_owned());
        self
    }

    /// An MTU other than 1500.
    pub fn mtu(mut self, mtu: u32) -> End {
        self.mtu = Some(mtu);
        self
    }

    /// An address in CIDR form (`10.0.0.1/24`, `fd00::1/64`); may be
    /// repeated.
    pub fn addr(mut self, cidr: &str) -> End {
        self.addrs.push(cidr.to_owned());
        self
    }

    fn mtu_text(&self) -> Option<String> {
        self.mtu.map(|m| m.to_string())
    }
}

/// A veth pair: `ip -n A link add … type veth peer name … netns B`, then on
/// each end `ethtool -K` (if asked), the addresses, and `up` (if asked).
#[derive(Debug, Clone)]
pub struct Veth {
    a: End,
    b: End,
    queues: Option<u32>,
    ethtool: Vec<String>,
    up: bool,
}

impl Veth {
    /// A pair from `a` to `b` (both may be in one namespace).
    pub fn new(a: End, b: End) -> Veth {
        Veth {
            a,
            b,
            queues: None,
            ethtool: Vec::new(),
            up: false,
        }
    }

    /// `queues` TX and RX queues on both ends: a sender's flows are spread
    /// over its TX queues by hash, and each lands on the peer's RX queue of
    /// the same number, as RSS spreads them on a NIC.
    pub fn queues(mut self, queues: u32) -> Veth {
        self.queues = Some(queues);
        self
    }

    /// `ethtool -K DEV <features>` on both ends, e.g. `["tx", "off"]` so
    /// that frames carry complete checksums instead of partial ones.
    pub fn ethtool(mut self, features: &[&str]) -> Veth {
        self.ethtool = features.iter().map(|s| s.to_string()).collect();
        self
    }

    /// Sets both ends up once configured.
    pub fn up(mut self) -> Veth {
        self.up = true;
        self
    }

    /// Creates and configures the pair.
    pub fn create(&self) -> Result<(), Error> {
        let queues = self.queues.map(|q| q.to_string());
        let (a_mtu, b_mtu) = (self.a.mtu_text(), self.b.mtu_text());
        let mut args = vec!["link", "add"];
        args.extend(end_args(&self.a, a_mtu.as_deref(), queues.as_deref()));
        args.extend(["type", "veth", "peer", "name"]);
        args.extend(end_args(&self.b, b_mtu.as_deref(), queues.as_deref()));
        if self.b.netns != self.a.netns {
            args.extend(["netns", &self.b.netns]);
        }
        ip(&self.a.netns, &args)?;
        for end in [&self.a, &self.b] {
            if !self.ethtool.is_empty() {
                let mut cmd = vec!["ethtool", "-K", &end.dev];
                cmd.extend(self.ethtool.iter().map(String::as_str));
                exec(&end.netns, &cmd)?;
            }
            for addr in &end.addrs {
                ip(&end.netns, &["addr", "add", addr, "dev", &end.dev])?;
            }
            if self.up {
                ip(&end.netns, &["link", "set", &end.dev, "up"])?;
            }
        }
        Ok(())
    }
}

/// Device name and the `ip link add` options of one end.
fn end_args<'a>(end: &'a End, mtu: Option<&'a str>, queues: Option<&'a str>) -> Vec<&'a str> {
    let mut v = vec![end.dev.as_str()];
    if let Some(mac) = &end.mac {
        v.extend(["address", mac.as_str()]);
    }
    if let Some(mtu) = mtu {
        v.extend(["mtu", mtu]);
    }
    if let Some(q) = queues {
        v.extend(["numtxqueues", q, "numrxqueues", q]);
    }
    v
}
