//! Kernel facts changed (an interface's MAC, MTU or addresses, a route):
//! applied to the running configuration as a reload applies a file —
//! validated whole, a refusal changes nothing — without touching what the
//! operator configured (`watch.rs` notices the changes).

use std::fmt::Write as _;

use rvs_api::ControlError;
use rvs_engine::{Config, Interface, Route};

use super::{Director, Handler};

impl Director {
    /// Runs on `interfaces` (the same links, in the same order, as now) and
    /// `routes` from now on. `Ok(false)`: nothing changed.
    pub(crate) fn apply_facts(
        &mut self,
        interfaces: Vec<Interface>,
        routes: Vec<Route>,
    ) -> Result<bool, ControlError> {
        let same_links = interfaces.len() == self.config.interfaces.len()
            && interfaces
                .iter()
                .zip(&self.config.interfaces)
                .all(|(a, b)| a.index == b.index);
        if !same_links {
            return Err(ControlError::internal(
                "kernel facts for other interfaces than rvsd runs on",
            ));
        }
        if self.config.interfaces == interfaces && self.config.routes == routes {
            return Ok(false);
        }
        let mut next = Config::clone(&self.config);
        next.interfaces = interfaces;
        next.routes = routes;
        let changes = describe(&self.config, &next);
        self.apply(next)?;
        tracing::info!(changes = %changes, "kernel facts applied");
        Ok(true)
    }
}

impl Handler {
    /// [`Director::apply_facts`] under the state lock, the refusal as text.
    pub(crate) fn apply_facts(
        &self,
        interfaces: Vec<Interface>,
        routes: Vec<Route>,
    ) -> Result<bool, String> {
        let mut d = self
            .0
            .lock()
            .map_err(|_| "state lock poisoned".to_owned())?;
        d.apply_facts(interfaces, routes).map_err(|e| e.to_string())
    }
}

/// What differs between `old` and `new`'s facts, for the log: MTUs, MACs,
/// addresses, and the routes that came and went.
fn describe(old: &Config, new: &Config) -> String {
    let mut out = String::new();
    for (a, b) in old.interfaces.iter().zip(&new.interfaces) {
        if a.mtu != b.mtu {
            let _ = write!(out, "{}: mtu {} -> {}; ", b.name, a.mtu, b.mtu);
        }
        if a.mac != b.mac {
            let _ = write!(out, "{}: mac {} -> {}; ", b.name, a.mac, b.mac);
        }
        if a.addrs != b.addrs {
            let _ = write!(
                out,
                "{}: addresses {:?} -> {:?}; ",
                b.name, a.addrs, b.addrs
            );
        }
    }
    let name = |r: &Route| {
        new.interfaces
            .iter()
            .find(|i| i.index == r.egress)
            .map_or_else(|| r.egress.0.to_string(), |i| i.name.clone())
    };
    let show = |r: &Route| match r.gateway {
        Some(gw) => format!("{}/{} via {gw} dev {}", r.dst, r.prefix_len, name(r)),
        None => format!("{}/{} dev {}", r.dst, r.prefix_len, name(r)),
    };
    for r in old.routes.iter().filter(|r| !new.routes.contains(r)) {
        let _ = write!(out, "route - {}; ", show(r));
    }
    for r in new.routes.iter().filter(|r| !old.routes.contains(r)) {
        let _ = write!(out, "route + {}; ", show(r));
    }
    if out.is_empty() {
        out.push_str("route order");
    }
    out.trim_end_matches("; ").to_owned()
}
