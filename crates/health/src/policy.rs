//! The service policy of keepalived's ipwrapper.c, as pure functions: from
//! the configured servers and their health to the pool the engine should
//! use, the quorum state and the commands to run. No I/O, no clock.
//!
//! Rules:
//! - A live server is in the pool with its configured weight, or the weight
//!   its misc_dynamic script set. A failed server is removed, or kept with
//!   weight 0 when its inhibit_on_failure (server's, else service's) is set.
//! - A server with no checks is always live. Checked servers start live,
//!   or failed with `alpha`, until the monitor says otherwise.
//! - quorum and hysteresis are first clamped as keepalived validates them
//!   ([`effective_quorum`]): a quorum above the servers' total configured
//!   weight is lowered to it, a hysteresis not below the quorum to
//!   quorum − 1.
//! - Live weight = sum of the pool weights of live servers. Quorum, once up,
//!   is lost when live weight is 0 or `< quorum − hysteresis`; once down, it
//!   is regained when live weight `>= quorum + hysteresis`. At start it is up
//!   iff live weight `>= quorum + hysteresis` (keepalived's set_quorum_states).
//! - While quorum is lost and a sorry server is configured, the sorry server
//!   replaces the live servers (failed inhibited ones stay at weight 0, as
//!   keepalived leaves them); without a sorry server the pool is unchanged.
//! - Gaining quorum runs quorum_up, losing it runs quorum_down. Starting with
//!   quorum down runs quorum_down (keepalived does so only with a sorry
//!   server; RVS always tells, so a script sees every start in a known state).
//!   Starting up runs nothing. With `omega`, stopping runs quorum_down,
//!   whatever the state (keepalived's clear_services).

use std::collections::HashMap;
use std::net::SocketAddr;

/// A configured real server, as the policy needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyServer {
    /// Its address and port.
    pub addr: SocketAddr,
    /// Configured weight.
    pub weight: u32,
    /// Resolved inhibit_on_failure (server's, else service's).
    pub inhibit_on_failure: bool,
    /// Whether it has checks; unchecked servers are always live.
    pub checked: bool,
}

/// The sorry server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SorryServer {
    /// Its address and port.
    pub addr: SocketAddr,
    /// Its weight in the pool (1 in keepalived unless configured).
    pub weight: u32,
}

/// The service's policy keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyConfig {
    /// Live weight needed (≥ 1).
    pub quorum: u32,
    /// Margin against flapping.
    pub hysteresis: u32,
    /// Checked servers start failed.
    pub alpha: bool,
    /// quorum_down runs on stop.
    pub omega: bool,
    /// Command for quorum gained.
    pub quorum_up: Option<String>,
    /// Command for quorum lost.
    pub quorum_down: Option<String>,
    /// Replaces the pool while quorum is lost.
    pub sorry_server: Option<SorryServer>,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            quorum: 1,
            hysteresis: 0,
            alpha: false,
            omega: false,
            quorum_up: None,
            quorum_down: None,
            sorry_server: None,
        }
    }
}

/// A server's health as reported by the monitor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Health {
    /// Every check passes.
    pub up: bool,
    /// misc_dynamic weight, replacing the configured one while set.
    pub weight: Option<u32>,
}

/// The health a server has before any event: see the module rules.
pub fn initial_health(cfg: &PolicyConfig, server: &PolicyServer) -> Health {
    Health {
        up: !server.checked || !cfg.alpha,
        weight: None,
    }
}

/// One server the engine should have in the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolEntry {
    /// Its address and port.
    pub addr: SocketAddr,
    /// Weight to program (0 = inhibited: kept, gets no new connections).
    pub weight: u32,
    /// This is the sorry server.
    pub sorry: bool,
}

/// Which way quorum went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuorumTransition {
    /// Gained (quorum_up).
    Up,
    /// Lost, started down, or stopping with omega (quorum_down).
    Down,
}

/// A command the daemon should run (see [`crate::run_command`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumCommand {
    /// Why.
    pub transition: QuorumTransition,
    /// The command line as configured.
    pub command: String,
}

/// The result of [`evaluate`]: what to program and what to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation {
    /// The servers to have in the service, in configuration order, the sorry
    /// server last.
    pub pool: Vec<PoolEntry>,
    /// Quorum state after this evaluation.
    pub quorum_up: bool,
    /// The sorry server replaces the live servers.
    pub sorry_active: bool,
    /// Sum of the weights of live servers.
    pub live_weight: u64,
    /// Quorum transition of this evaluation, if any.
    pub transition: Option<QuorumTransition>,
    /// Commands to run because of it (none when not configured).
    pub commands: Vec<QuorumCommand>,
}

fn command_for(cfg: &PolicyConfig, t: QuorumTransition) -> Vec<QuorumCommand> {
    let cmd = match t {
        QuorumTransition::Up => &cfg.quorum_up,
        QuorumTransition::Down => &cfg.quorum_down,
    };
    cmd.iter()
        .map(|c| QuorumCommand {
            transition: t,
            command: c.clone(),
        })
        .collect()
}

/// The (quorum, hysteresis) the service runs with: keepalived's
/// check_data.c lowers a quorum above the real servers' total configured
/// weight to that total (it could never be reached) and a hysteresis not
/// below the quorum to quorum − 1. With no weight at all nothing is
/// clamped (quorum stays out of reach, as in keepalived).
pub fn effective_quorum(cfg: &PolicyConfig, servers: &[PolicyServer]) -> (u32, u32) {
    let total: u64 = servers.iter().map(|s| u64::from(s.weight)).sum();
    let quorum = if total > 0 && u64::from(cfg.quorum) > total {
        total as u32
    } else {
        cfg.quorum
    };
    let hysteresis = if cfg.hysteresis >= quorum {
        quorum.saturating_sub(1)
    } else {
        cfg.hysteresis
    };
    (quorum, hysteresis)
}

/// Computes the pool from configuration, health and the previous quorum
/// state (`None` at start). `health` lacking a server means its
/// [`initial_health`].
pub fn evaluate(
    cfg: &PolicyConfig,
    servers: &[PolicyServer],
    health: &HashMap<SocketAddr, Health>,
    previous_quorum: Option<bool>,
) -> Evaluation {
    let states: Vec<(PolicyServer, Health, u32)> = servers
        .iter()
        .map(|s| {
            let h = health
                .get(&s.addr)
                .copied()
                .unwrap_or_else(|| initial_health(cfg, s));
            (*s, h, h.weight.unwrap_or(s.weight))
        })
        .collect();
    let live_weight: u64 = states
        .iter()
        .filter(|(_, h, _)| h.up)
        .map(|(_, _, w)| u64::from(*w))
        .sum();
    let (quorum, hysteresis) = effective_quorum(cfg, servers);
    let q = i64::from(quorum);
    let hy = i64::from(hysteresis);
    let lw = i64::try_from(live_weight).unwrap_or(i64::MAX);
    let gain = lw >= q + hy;
    let (quorum_up, transition) = match previous_quorum {
        None => (gain, (!gain).then_some(QuorumTransition::Down)),
        Some(true) if live_weight == 0 || lw < q - hy => (false, Some(QuorumTransition::Down)),
        Some(true) => (true, None),
        Some(false) if gain => (true, Some(QuorumTransition::Up)),
        Some(false) => (false, None),
    };
    let sorry_active = !quorum_up && cfg.sorry_server.is_some();
    let mut pool: Vec<PoolEntry> = states
        .iter()
        .filter_map(|(s, h, w)| match (h.up, s.inhibit_on_failure) {
            (true, _) if sorry_active => None,
            (true, _) => Some(PoolEntry {
                addr: s.addr,
                weight: *w,
                sorry: false,
            }),
            (false, true) => Some(PoolEntry {
                addr: s.addr,
                weight: 0,
                sorry: false,
            }),
            (false, false) => None,
        })
        .collect();
    if let (true, Some(sorry)) = (sorry_active, cfg.sorry_server) {
        pool.push(PoolEntry {
            addr: sorry.addr,
            weight: sorry.weight,
            sorry: true,
        });
    }
    Evaluation {
        pool,
        quorum_up,
        sorry_active,
        live_weight,
        transition,
        commands: transition.map(|t| command_for(cfg, t)).unwrap_or_default(),
    }
}

/// The commands to run when the daemon stops: quorum_down with omega.
pub fn shutdown_commands(cfg: &PolicyConfig) -> Vec<QuorumCommand> {
    if cfg.omega {
        command_for(cfg, QuorumTransition::Down)
    } else {
        Vec::new()
    }
}

/// [`evaluate`] with its state kept: one per service in the daemon.
///
/// Call order: `new` (then `evaluate` for the start state and commands),
/// `on_health` per [`crate::HealthEvent`], `reconfigure` on config reload,
/// `shutdown` on stop.
#[derive(Debug, Clone)]
pub struct ServicePolicy {
    cfg: PolicyConfig,
    servers: Vec<PolicyServer>,
    health: HashMap<SocketAddr, Health>,
    quorum: Option<bool>,
}

impl ServicePolicy {
    /// A service before its first evaluation.
    pub fn new(cfg: PolicyConfig, servers: Vec<PolicyServer>) -> Self {
        Self {
            cfg,
            servers,
            health: HashMap::new(),
            quorum: None,
        }
    }

    /// Evaluates the current state; the first call gives the start state.
    pub fn evaluate(&mut self) -> Evaluation {
        let e = evaluate(&self.cfg, &self.servers, &self.health, self.quorum);
        self.quorum = Some(e.quorum_up);
        e
    }

    /// Records a server's new health and re-evaluates. Unknown servers
    /// (removed since) are ignored, the evaluation still returned.
    pub fn on_health(&mut self, server: SocketAddr, up: bool, weight: Option<u32>) -> Evaluation {
        if self.servers.iter().any(|s| s.addr == server) {
            self.health.insert(server, Health { up, weight });
        }
        self.evaluate()
    }

    /// New configuration: servers kept keep their health, new ones start in
    /// their initial health, quorum state carries over (as keepalived's
    /// reload), then re-evaluates.
    pub fn reconfigure(&mut self, cfg: PolicyConfig, servers: Vec<PolicyServer>) -> Evaluation {
        self.health
            .retain(|a, _| servers.iter().any(|s| s.addr == *a));
        self.cfg = cfg;
        self.servers = servers;
        self.evaluate()
    }

    /// Commands to run on stop (omega).
    pub fn shutdown(&self) -> Vec<QuorumCommand> {
        shutdown_commands(&self.cfg)
    }

    /// Current quorum state (`None` before the first evaluation).
    pub fn quorum_up(&self) -> Option<bool> {
        self.quorum
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(n: u8) -> SocketAddr {
        SocketAddr::from(([10, 0, 2, n], 80))
    }

    fn srv(n: u8, weight: u32) -> PolicyServer {
        PolicyServer {
            addr: addr(n),
            weight,
            inhibit_on_failure: false,
            checked: true,
        }
    }

    fn cmds() -> PolicyConfig {
        PolicyConfig {
            quorum_up: Some("/bin/up".into()),
            quorum_down: Some("/bin/down".into()),
            ..Default::default()
        }
    }

    fn pool(e: &Evaluation) -> Vec<(u8, u32, bool)> {
        e.pool
            .iter()
            .map(|p| match p.addr.ip() {
                std::net::IpAddr::V4(v4) => (v4.octets()[3], p.weight, p.sorry),
                std::net::IpAddr::V6(_) => (0, p.weight, p.sorry),
            })
            .collect()
    }

    fn down(p: &mut ServicePolicy, n: u8) -> Evaluation {
        p.on_health(addr(n), false, None)
    }

    fn up(p: &mut ServicePolicy, n: u8) -> Evaluation {
        p.on_health(addr(n), true, None)
    }

    #[test]
    fn failed_servers_are_removed() {
        let mut p = ServicePolicy::new(cmds(), vec![srv(1, 1), srv(2, 3)]);
        let e = p.evaluate();
        assert_eq!(pool(&e), vec![(1, 1, false), (2, 3, false)]);
        assert!(e.quorum_up);
        assert_eq!(e.transition, None);
        assert!(e.commands.is_empty(), "starting up runs nothing");
        let e = down(&mut p, 2);
        assert_eq!(pool(&e), vec![(1, 1, false)]);
        assert_eq!(e.live_weight, 1);
        let e = up(&mut p, 2);
        assert_eq!(pool(&e), vec![(1, 1, false), (2, 3, false)]);
    }

    #[test]
    fn inhibit_on_failure_keeps_weight_zero() {
        let mut s2 = srv(2, 3);
        s2.inhibit_on_failure = true;
        let mut p = ServicePolicy::new(cmds(), vec![srv(1, 1), s2]);
        p.evaluate();
        let e = down(&mut p, 2);
        assert_eq!(pool(&e), vec![(1, 1, false), (2, 0, false)]);
        assert_eq!(e.live_weight, 1, "an inhibited server does not count");
        let e = down(&mut p, 1);
        assert_eq!(pool(&e), vec![(2, 0, false)]);
    }

    #[test]
    fn misc_dynamic_weight_replaces_configured() {
        let mut p = ServicePolicy::new(cmds(), vec![srv(1, 1), srv(2, 1)]);
        p.evaluate();
        let e = p.on_health(addr(2), true, Some(7));
        assert_eq!(pool(&e), vec![(1, 1, false), (2, 7, false)]);
        assert_eq!(e.live_weight, 8);
        // Weight 0 from the script: in the pool, counts nothing.
        let e = p.on_health(addr(2), true, Some(0));
        assert_eq!(pool(&e), vec![(1, 1, false), (2, 0, false)]);
        assert_eq!(e.live_weight, 1);
    }

    /// keepalived's quorum sample: quorum 12 over ten servers of weight 1
    /// would never be reached; clamped to 10 it is, and quorum_up runs.
    #[test]
    fn quorum_and_hysteresis_are_clamped_as_keepalived() {
        let servers: Vec<PolicyServer> = (1..=10).map(|n| srv(n, 1)).collect();
        let cfg = PolicyConfig {
            quorum: 12,
            ..cmds()
        };
        assert_eq!(effective_quorum(&cfg, &servers), (10, 0));
        let mut p = ServicePolicy::new(cfg.clone(), servers.clone());
        assert!(p.evaluate().quorum_up, "ten of weight 1 reach quorum 10");
        let e = down(&mut p, 1);
        assert_eq!(e.transition, Some(QuorumTransition::Down));
        let e = up(&mut p, 1);
        assert_eq!(e.transition, Some(QuorumTransition::Up), "quorum_up runs");
        assert_eq!(e.commands.len(), 1);
        // hysteresis not below quorum: quorum − 1.
        let cfg = PolicyConfig {
            quorum: 12,
            hysteresis: 15,
            ..cmds()
        };
        assert_eq!(effective_quorum(&cfg, &servers), (10, 9));
        // Within range: unchanged; no weight at all: unchanged.
        let fine = PolicyConfig {
            quorum: 3,
            hysteresis: 2,
            ..cmds()
        };
        assert_eq!(effective_quorum(&fine, &servers), (3, 2));
        assert_eq!(effective_quorum(&cfg, &[]), (12, 11));
        assert_eq!(effective_quorum(&cfg, &[srv(1, 0)]), (12, 11));
    }

    #[test]
    fn quorum_lost_and_regained_with_commands() {
        let cfg = PolicyConfig {
            quorum: 2,
            ..cmds()
        };
        let mut p = ServicePolicy::new(cfg, vec![srv(1, 1), srv(2, 1), srv(3, 1)]);
        assert!(p.evaluate().quorum_up);
        assert!(down(&mut p, 1).quorum_up, "2 >= 2");
        let e = down(&mut p, 2);
        assert!(!e.quorum_up, "1 < 2");
        assert_eq!(e.transition, Some(QuorumTransition::Down));
        assert_eq!(
            e.commands,
            vec![QuorumCommand {
                transition: QuorumTransition::Down,
                command: "/bin/down".into()
            }]
        );
        assert_eq!(
            pool(&e),
            vec![(3, 1, false)],
            "no sorry server: pool unchanged"
        );
        let e = down(&mut p, 3);
        assert_eq!(e.transition, None, "already down: nothing more to run");
        let e = up(&mut p, 1);
        assert!(!e.quorum_up);
        let e = up(&mut p, 2);
        assert!(e.quorum_up);
        assert_eq!(e.transition, Some(QuorumTransition::Up));
        assert_eq!(e.commands[0].command, "/bin/up");
    }

    #[test]
    fn hysteresis_widens_both_thresholds() {
        // quorum 3, hysteresis 1: lost below 2, regained at 4.
        let cfg = PolicyConfig {
            quorum: 3,
            hysteresis: 1,
            ..cmds()
        };
        let servers: Vec<_> = (1..=5).map(|n| srv(n, 1)).collect();
        let mut p = ServicePolicy::new(cfg, servers);
        assert!(p.evaluate().quorum_up, "5 >= 4 at start");
        assert!(down(&mut p, 1).quorum_up); // 4
        assert!(down(&mut p, 2).quorum_up); // 3
        assert!(down(&mut p, 3).quorum_up, "2 is not < 3 - 1"); // 2
        let e = down(&mut p, 4); // 1
        assert!(!e.quorum_up);
        assert_eq!(e.transition, Some(QuorumTransition::Down));
        assert!(!up(&mut p, 4).quorum_up); // 2
        assert!(!up(&mut p, 3).quorum_up, "3 is not >= 3 + 1"); // 3
        let e = up(&mut p, 2); // 4
        assert!(e.quorum_up);
        assert_eq!(e.transition, Some(QuorumTransition::Up));
    }

    #[test]
    fn zero_live_weight_loses_quorum_even_below_threshold() {
        // quorum 1, hysteresis 5: threshold -4, but no live weight is still lost.
        let cfg = PolicyConfig {
            quorum: 1,
            hysteresis: 5,
            ..cmds()
        };
        let mut p = ServicePolicy::new(cfg, vec![srv(1, 6)]);
        assert!(p.evaluate().quorum_up);
        let e = p.on_health(addr(1), true, Some(0));
        assert!(
            !e.quorum_up,
            "live weight 0 loses quorum whatever the threshold"
        );
        assert_eq!(e.transition, Some(QuorumTransition::Down));
    }

    #[test]
    fn start_state_follows_quorum_plus_hysteresis() {
        let cfg = PolicyConfig {
            quorum: 2,
            hysteresis: 1,
            ..cmds()
        };
        // 2 live < 3: starts down, and says so.
        let e = evaluate(&cfg, &[srv(1, 1), srv(2, 1)], &HashMap::new(), None);
        assert!(!e.quorum_up);
        assert_eq!(e.transition, Some(QuorumTransition::Down));
        assert_eq!(e.commands[0].command, "/bin/down");
        let e = evaluate(&cfg, &[srv(1, 1), srv(2, 2)], &HashMap::new(), None);
        assert!(e.quorum_up);
        assert!(e.commands.is_empty());
    }

    #[test]
    fn alpha_starts_checked_servers_down_only() {
        let cfg = PolicyConfig {
            alpha: true,
            ..cmds()
        };
        let unchecked = PolicyServer {
            checked: false,
            ..srv(2, 1)
        };
        let mut p = ServicePolicy::new(cfg.clone(), vec![srv(1, 1), unchecked]);
        let e = p.evaluate();
        assert_eq!(
            pool(&e),
            vec![(2, 1, false)],
            "unchecked servers are always live"
        );
        assert!(e.quorum_up);
        let mut p = ServicePolicy::new(cfg, vec![srv(1, 1)]);
        let e = p.evaluate();
        assert!(e.pool.is_empty());
        assert!(!e.quorum_up);
        assert_eq!(e.transition, Some(QuorumTransition::Down));
        let e = up(&mut p, 1);
        assert_eq!(pool(&e), vec![(1, 1, false)]);
        assert_eq!(e.transition, Some(QuorumTransition::Up));
    }

    #[test]
    fn sorry_server_replaces_live_servers_while_quorum_is_lost() {
        let cfg = PolicyConfig {
            quorum: 2,
            sorry_server: Some(SorryServer {
                addr: addr(99),
                weight: 1,
            }),
            ..cmds()
        };
        let mut s3 = srv(3, 1);
        s3.inhibit_on_failure = true;
        let mut p = ServicePolicy::new(cfg, vec![srv(1, 1), srv(2, 1), s3]);
        let e = p.evaluate();
        assert!(!e.sorry_active);
        assert_eq!(pool(&e), vec![(1, 1, false), (2, 1, false), (3, 1, false)]);
        let e = down(&mut p, 3);
        assert_eq!(pool(&e), vec![(1, 1, false), (2, 1, false), (3, 0, false)]);
        let e = down(&mut p, 2);
        assert!(e.sorry_active);
        assert_eq!(
            pool(&e),
            vec![(3, 0, false), (99, 1, true)],
            "live server 1 leaves, the inhibited one stays at 0, the sorry server comes"
        );
        assert_eq!(e.commands[0].command, "/bin/down");
        let e = up(&mut p, 2);
        assert!(!e.sorry_active);
        assert_eq!(pool(&e), vec![(1, 1, false), (2, 1, false), (3, 0, false)]);
        assert_eq!(e.commands[0].command, "/bin/up");
    }

    #[test]
    fn sorry_server_at_start_when_quorum_is_down() {
        let cfg = PolicyConfig {
            alpha: true,
            sorry_server: Some(SorryServer {
                addr: addr(99),
                weight: 1,
            }),
            ..Default::default()
        };
        let e = evaluate(&cfg, &[srv(1, 1)], &HashMap::new(), None);
        assert!(e.sorry_active);
        assert_eq!(pool(&e), vec![(99, 1, true)]);
        assert_eq!(e.transition, Some(QuorumTransition::Down));
        assert!(
            e.commands.is_empty(),
            "no quorum_down configured, nothing to run"
        );
    }

    #[test]
    fn omega_runs_quorum_down_on_shutdown() {
        let p = ServicePolicy::new(cmds(), vec![srv(1, 1)]);
        assert!(
            p.shutdown().is_empty(),
            "without omega nothing runs on stop"
        );
        let mut p = ServicePolicy::new(
            PolicyConfig {
                omega: true,
                ..cmds()
            },
            vec![srv(1, 1)],
        );
        assert!(p.evaluate().quorum_up);
        assert_eq!(
            p.shutdown(),
            vec![QuorumCommand {
                transition: QuorumTransition::Down,
                command: "/bin/down".into()
            }]
        );
        let p = ServicePolicy::new(
            PolicyConfig {
                omega: true,
                ..Default::default()
            },
            vec![],
        );
        assert!(
            p.shutdown().is_empty(),
            "omega without quorum_down has nothing to run"
        );
    }

    #[test]
    fn reconfigure_keeps_health_and_quorum_state() {
        let cfg = PolicyConfig {
            quorum: 2,
            ..cmds()
        };
        let mut p = ServicePolicy::new(cfg.clone(), vec![srv(1, 1), srv(2, 1)]);
        p.evaluate();
        let e = down(&mut p, 2);
        assert!(!e.quorum_up);
        // Server 2 stays failed after the reload; new server 3 starts live.
        let e = p.reconfigure(cfg.clone(), vec![srv(1, 1), srv(2, 1), srv(3, 1)]);
        assert_eq!(pool(&e), vec![(1, 1, false), (3, 1, false)]);
        assert_eq!(e.transition, Some(QuorumTransition::Up));
        // A removed server's health is forgotten; re-added it starts fresh.
        p.reconfigure(cfg.clone(), vec![srv(1, 1), srv(3, 1)]);
        let e = p.reconfigure(cfg, vec![srv(1, 1), srv(2, 1), srv(3, 1)]);
        assert_eq!(pool(&e), vec![(1, 1, false), (2, 1, false), (3, 1, false)]);
        // Events for unknown servers change nothing.
        let before = p.clone().evaluate();
        assert_eq!(p.on_health(addr(50), false, None), before);
        assert_eq!(p.quorum_up(), Some(true));
    }

    #[test]
    fn weight_zero_servers_count_nothing() {
        let mut p = ServicePolicy::new(cmds(), vec![srv(1, 0)]);
        let e = p.evaluate();
        assert_eq!(pool(&e), vec![(1, 0, false)]);
        assert!(!e.quorum_up, "live weight 0 never makes quorum 1");
    }
}
