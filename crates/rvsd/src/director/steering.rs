//! The XDP maps' steering entries (services and VIPs) brought from what
//! they hold to what a configuration needs, all or nothing: additions
//! first, then removals, and if one step fails every step taken is undone.

use std::net::IpAddr;

use rvs_datapath::XdpDatapath;
use rvs_engine::{Steering, SteeringKey};

/// The map operations an update is made of (the datapath's; a trait so the
/// rollback can be tested with maps that fail).
pub(super) trait SteeringMaps {
    fn add_service(&mut self, k: &SteeringKey) -> anyhow::Result<()>;
    fn remove_service(&mut self, k: &SteeringKey) -> anyhow::Result<()>;
    fn add_vip(&mut self, a: IpAddr) -> anyhow::Result<()>;
    fn remove_vip(&mut self, a: IpAddr) -> anyhow::Result<()>;
}

impl SteeringMaps for XdpDatapath {
    fn add_service(&mut self, k: &SteeringKey) -> anyhow::Result<()> {
        Ok(XdpDatapath::add_service(self, k.addr, k.protocol, k.port)?)
    }

    fn remove_service(&mut self, k: &SteeringKey) -> anyhow::Result<()> {
        Ok(XdpDatapath::remove_service(
            self, k.addr, k.protocol, k.port,
        )?)
    }

    fn add_vip(&mut self, a: IpAddr) -> anyhow::Result<()> {
        Ok(XdpDatapath::add_vip(self, a)?)
    }

    fn remove_vip(&mut self, a: IpAddr) -> anyhow::Result<()> {
        Ok(XdpDatapath::remove_vip(self, a)?)
    }
}

/// Makes `maps`, which hold `have`, hold `want`. On failure every step
/// taken is undone and the error returned. Either way the result says what
/// the maps hold now: `want`, or `have` after a rollback — or, should the
/// rollback fail too, what they were left with, for the next update to
/// repair.
pub(super) fn update(
    maps: &mut impl SteeringMaps,
    have: &Steering,
    want: &Steering,
) -> (Steering, anyhow::Result<()>) {
    let mut now = have.clone();
    let Err(e) = step(maps, &mut now, want) else {
        return (now, Ok(()));
    };
    if let Err(undo) = step(maps, &mut now, have) {
        tracing::error!(error = %undo, "undoing a failed XDP map update failed too; the next change repairs the maps");
    }
    (now, Err(e))
}

/// Brings `maps` (holding `now`) to `target`, keeping `now` true to what
/// they hold; stops at the first failure.
fn step(maps: &mut impl SteeringMaps, now: &mut Steering, target: &Steering) -> anyhow::Result<()> {
    let add: Vec<SteeringKey> = target.services.difference(&now.services).copied().collect();
    for k in add {
        maps.add_service(&k)?;
        now.services.insert(k);
    }
    let add: Vec<IpAddr> = target.vips.difference(&now.vips).copied().collect();
    for a in add {
        maps.add_vip(a)?;
        now.vips.insert(a);
    }
    let remove: Vec<SteeringKey> = now.services.difference(&target.services).copied().collect();
    for k in remove {
        maps.remove_service(&k)?;
        now.services.remove(&k);
    }
    let remove: Vec<IpAddr> = now.vips.difference(&target.vips).copied().collect();
    for a in remove {
        maps.remove_vip(a)?;
        now.vips.remove(&a);
    }
    Ok(())
}

/// Installs `want` into maps that hold nothing yet (at start, before the
/// program is attached, so its first frame finds every service).
pub(crate) fn prefill(maps: &mut rvs_datapath::XdpDatapath, want: &Steering) -> anyhow::Result<()> {
    update(maps, &Steering::default(), want).1
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Maps as sets, failing the operations the test names.
    #[derive(Default)]
    struct Fake {
        held: Steering,
        /// Operations done so far.
        ops: usize,
        /// Fail the operation with this number (0-based), once.
        fail_at: Option<usize>,
        /// Fail every removal.
        fail_removals: bool,
    }

    impl Fake {
        fn op(&mut self, removal: bool) -> anyhow::Result<()> {
            let n = self.ops;
            self.ops += 1;
            if self.fail_at == Some(n) || (removal && self.fail_removals) {
                anyhow::bail!("map full");
            }
            Ok(())
        }
    }

    impl SteeringMaps for Fake {
        fn add_service(&mut self, k: &SteeringKey) -> anyhow::Result<()> {
            self.op(false)?;
            self.held.services.insert(*k);
            Ok(())
        }
        fn remove_service(&mut self, k: &SteeringKey) -> anyhow::Result<()> {
            self.op(true)?;
            self.held.services.remove(k);
            Ok(())
        }
        fn add_vip(&mut self, a: IpAddr) -> anyhow::Result<()> {
            self.op(false)?;
            self.held.vips.insert(a);
            Ok(())
        }
        fn remove_vip(&mut self, a: IpAddr) -> anyhow::Result<()> {
            self.op(true)?;
            self.held.vips.remove(&a);
            Ok(())
        }
    }

    fn steering(hosts: std::ops::Range<u8>) -> Steering {
        let mut s = Steering::default();
        for h in hosts {
            let addr = IpAddr::from([10, 0, 0, h]);
            s.services.insert(SteeringKey {
                addr,
                protocol: 6,
                port: 80,
            });
            s.vips.insert(addr);
        }
        s
    }

    #[test]
    fn a_failure_anywhere_leaves_the_maps_as_they_were() {
        let (have, want) = (steering(0..4), steering(2..7));
        // 3 services and 3 VIPs to add, 2 and 2 to remove: fail each step.
        for fail_at in 0..10 {
            let mut maps = Fake {
                held: have.clone(),
                fail_at: Some(fail_at),
                ..Fake::default()
            };
            let (now, r) = update(&mut maps, &have, &want);
            assert!(r.is_err(), "step {fail_at} failed");
            assert_eq!(maps.held, have, "step {fail_at}: maps rolled back");
            assert_eq!(now, have, "step {fail_at}: what they hold is known");
        }
        let mut maps = Fake {
            held: have.clone(),
            ..Fake::default()
        };
        let (now, r) = update(&mut maps, &have, &want);
        r.unwrap();
        assert_eq!((&maps.held, &now), (&want, &want));
        // To nothing: every key goes.
        let (now, r) = update(&mut maps, &want, &Steering::default());
        r.unwrap();
        assert_eq!(
            (&maps.held, &now),
            (&Steering::default(), &Steering::default())
        );
    }

    #[test]
    fn a_failed_rollback_reports_what_the_maps_hold_and_the_next_update_repairs_it() {
        let (have, want) = (steering(0..2), steering(1..3));
        // Adding works, removing does not: the rollback cannot remove the
        // additions either.
        let mut maps = Fake {
            held: have.clone(),
            fail_removals: true,
            ..Fake::default()
        };
        let (now, r) = update(&mut maps, &have, &want);
        assert!(r.is_err());
        assert_eq!(now, maps.held, "what the maps hold, not what was wanted");
        maps.fail_removals = false;
        let (now, r) = update(&mut maps, &now, &have);
        r.unwrap();
        assert_eq!((&maps.held, &now), (&have, &have));
    }
}
