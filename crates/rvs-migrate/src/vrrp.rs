//! The VRRP-only keepalived.conf a migrated director keeps running: RVS
//! balances, keepalived still moves the virtual addresses.
//!
//! What keepalived did for IPVS's sync daemon itself (`lvs_sync_daemon`:
//! start the master daemon on becoming MASTER, the backup daemon
//! otherwise) becomes notify hooks calling `rvsadm`: rvsd runs a backup
//! daemon all the time (its file's `[[sync_daemon]]`, written by
//! [`crate::convert`]), `notify_master` starts the master daemon and
//! `notify_backup` / `notify_fault` stop it. One rvsadm command per hook,
//! so keepalived runs it without a shell. The hooks go on each
//! `vrrp_sync_group` (its instances move together), or on each
//! `vrrp_instance` outside any group. Everything else of the VRRP blocks
//! is written back as it was; `virtual_server` blocks and the LVS keys of
//! `global_defs` are left out (rvsd has them now).

use crate::parse::{Loc, Node, Note, ParseError};

/// Where rvsadm is, for the hooks (the Debian package's path).
pub const DEFAULT_RVSADM: &str = "/usr/sbin/rvsadm";
/// The master's `--sync-refresh-period` the hooks set: a director that
/// restarts learns every live connection within it (plus 1 s).
pub const SYNC_REFRESH_PERIOD: u32 = 10;
/// The `preempt_delay` written where an instance preempts without one:
/// longer than a refresh, so a returning preferred master takes the
/// addresses back only once it knows the connections made without it.
pub const PREEMPT_DELAY: u32 = 15;

/// The sync daemon the hooks start, from keepalived's `lvs_sync_daemon`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncSettings {
    /// `--mcast-interface`.
    pub interface: String,
    /// `--syncid` (keepalived's default: the instance's virtual_router_id).
    pub syncid: u8,
    /// More `rvsadm --start-daemon` options (`--sync-maxlen` …), in order.
    pub extra: Vec<(String, String)>,
    /// Where `lvs_sync_daemon` is.
    pub loc: Loc,
}

/// Top-level blocks that belong to VRRP and are written back.
const VRRP_BLOCKS: &[&str] = &[
    "vrrp_script",
    "vrrp_track_process",
    "track_file",
    "vrrp_track_file",
    "vrrp_sync_group",
    "vrrp_instance",
];

/// `global_defs` keys that belong to IPVS (rvsd's file has them now).
const LVS_GLOBALS: &[&str] = &[
    "lvs_sync_daemon",
    "lvs_timeouts",
    "lvs_flush",
    "lvs_flush_onstop",
];

/// Instance keys of the old sync-daemon syntax.
const LVS_INSTANCE_KEYS: &[&str] = &["lvs_sync_daemon_interface"];

/// The hooks this module writes.
const HOOKS: &[&str] = &["notify_master", "notify_backup", "notify_fault"];

/// Reads `lvs_sync_daemon IF [[inst] NAME] [id N] [maxlen L] [port P]
/// [ttl T] [group G]` from `global_defs`, or an instance's old
/// `lvs_sync_daemon_interface IF`; `None` when neither is there.
pub fn sync_settings(tree: &[Node]) -> Result<Option<SyncSettings>, ParseError> {
    let instances: Vec<&Node> = tree.iter().filter(|n| n.key == "vrrp_instance").collect();
    let vrid_of = |name: Option<&str>| -> Option<u8> {
        let inst = match name {
            Some(name) => instances
                .iter()
                .find(|i| i.args.first().map(String::as_str) == Some(name))?,
            None => instances.first()?,
        };
        inst.children()
            .iter()
            .find(|c| c.key == "virtual_router_id")?
            .args
            .first()?
            .parse()
            .ok()
    };
    let bad = |loc: &Loc, msg: String| ParseError::Syntax {
        loc: loc.clone(),
        msg,
    };
    for g in tree.iter().filter(|n| n.key == "global_defs") {
        let Some(c) = g.children().iter().find(|c| c.key == "lvs_sync_daemon") else {
            continue;
        };
        let mut args = c.args.iter().map(String::as_str);
        let interface = args
            .next()
            .ok_or_else(|| bad(&c.loc, "lvs_sync_daemon needs an INTERFACE".into()))?
            .to_owned();
        let (mut instance, mut syncid, mut extra) = (None, None, Vec::new());
        while let Some(word) = args.next() {
            let mut value = |what: &str| {
                args.next()
                    .map(str::to_owned)
                    .ok_or_else(|| bad(&c.loc, format!("lvs_sync_daemon: {word} needs {what}")))
            };
            match word {
                "inst" => instance = Some(value("an instance name")?),
                "id" => {
                    let v = value("a sync id")?;
                    syncid = Some(v.parse::<u8>().map_err(|_| {
                        bad(&c.loc, format!("lvs_sync_daemon: id '{v}' is not 0..=255"))
                    })?);
                }
                "maxlen" => extra.push(("--sync-maxlen".into(), value("a length")?)),
                "port" => extra.push(("--mcast-port".into(), value("a port")?)),
                "ttl" => extra.push(("--mcast-ttl".into(), value("a TTL")?)),
                "group" => extra.push(("--mcast-group".into(), value("an address")?)),
                name if instance.is_none() => instance = Some(name.to_owned()),
                other => {
                    return Err(bad(
                        &c.loc,
                        format!(
                        "lvs_sync_daemon: '{other}' is not inst, id, maxlen, port, ttl or group"
                    ),
                    ))
                }
            }
        }
        let syncid = syncid.or_else(|| vrid_of(instance.as_deref())).unwrap_or(0);
        return Ok(Some(SyncSettings {
            interface,
            syncid,
            extra,
            loc: c.loc.clone(),
        }));
    }
    for inst in &instances {
        if let Some(c) = inst
            .children()
            .iter()
            .find(|c| c.key == "lvs_sync_daemon_interface")
        {
            let interface = c.args.first().cloned().ok_or_else(|| {
                bad(
                    &c.loc,
                    "lvs_sync_daemon_interface needs an INTERFACE".into(),
                )
            })?;
            return Ok(Some(SyncSettings {
                interface,
                syncid: vrid_of(inst.args.first().map(String::as_str)).unwrap_or(0),
                extra: Vec::new(),
                loc: c.loc.clone(),
            }));
        }
    }
    Ok(None)
}

/// The VRRP-only keepalived.conf for `tree`, with hooks calling `rvsadm`
/// to switch the sync role of `sync` (no sync daemon: no hooks, noted).
/// `None` when the input has no `vrrp_instance`.
pub fn vrrp_only(
    tree: &[Node],
    sync: Option<&SyncSettings>,
    rvsadm: &str,
    notes: &mut Vec<Note>,
) -> Option<String> {
    if !tree.iter().any(|n| n.key == "vrrp_instance") {
        return None;
    }
    let grouped: Vec<&str> = tree
        .iter()
        .filter(|n| n.key == "vrrp_sync_group")
        .flat_map(|g| g.children().iter().filter(|c| c.key == "group"))
        .flat_map(|g| g.children().iter().map(|m| m.key.as_str()))
        .collect();
    let hooks: Option<[(&str, String); 3]> = sync.map(|s| {
        let mut start = format!(
            "{rvsadm} --start-daemon master --mcast-interface {} --syncid {} \
             --sync-refresh-period {SYNC_REFRESH_PERIOD}",
            s.interface, s.syncid
        );
        for (k, v) in &s.extra {
            start.push_str(&format!(" {k} {v}"));
        }
        let stop = format!("{rvsadm} --stop-daemon master");
        [
            ("notify_master", start),
            ("notify_backup", stop.clone()),
            ("notify_fault", stop),
        ]
    });
    if sync.is_none() {
        if let Some(first) = tree.iter().find(|n| n.key == "vrrp_instance") {
            notes.push(Note {
                loc: first.loc.clone(),
                msg: "no lvs_sync_daemon: the VRRP-only keepalived.conf has no rvsadm hooks; \
                      add [[sync_daemon]] tables and notify hooks for connection sync"
                    .into(),
            });
        }
    }
    let mut out = String::from(
        "# VRRP-only keepalived configuration written by rvs-migrate: rvsd balances\n\
         # (its file has the virtual servers); keepalived moves the addresses and,\n\
         # through the notify hooks, switches rvsd's connection sync role.\n",
    );
    for n in tree {
        let keep = match n.key.as_str() {
            "global_defs" => {
                let mut kept: Vec<Node> = n
                    .children()
                    .iter()
                    .filter(|c| !LVS_GLOBALS.contains(&c.key.as_str()))
                    .cloned()
                    .collect();
                // The hooks are scripts run as root (rvsd's socket is
                // root's); keepalived runs no script as root without
                // enable_script_security, and with it, scripts without a
                // user run as script_user: root, as they ran before.
                if hooks.is_some() {
                    for (key, args) in [
                        ("enable_script_security", vec![]),
                        ("script_user", vec!["root".to_owned()]),
                    ] {
                        if !kept.iter().any(|c| c.key == key) {
                            notes.push(Note {
                                loc: n.loc.clone(),
                                msg: format!(
                                    "VRRP-only keepalived.conf: {} added for the rvsadm hooks",
                                    std::iter::once(key.to_owned())
                                        .chain(args.iter().cloned())
                                        .collect::<Vec<_>>()
                                        .join(" ")
                                ),
                            });
                            kept.push(Node {
                                key: key.into(),
                                args,
                                block: None,
                                loc: n.loc.clone(),
                            });
                        }
                    }
                }
                Some(Node {
                    block: Some(kept),
                    ..n.clone()
                })
            }
            k if VRRP_BLOCKS.contains(&k) => {
                let gets_hooks = match k {
                    "vrrp_sync_group" => true,
                    "vrrp_instance" => n
                        .args
                        .first()
                        .is_none_or(|name| !grouped.contains(&name.as_str())),
                    _ => false,
                };
                let mut children: Vec<Node> = Vec::new();
                for c in n.children() {
                    if LVS_INSTANCE_KEYS.contains(&c.key.as_str()) {
                        continue;
                    }
                    if gets_hooks && hooks.is_some() && HOOKS.contains(&c.key.as_str()) {
                        notes.push(Note {
                            loc: c.loc.clone(),
                            msg: format!(
                                "{} {} replaced by the rvsadm hook; run your script from a `notify` script instead",
                                c.key,
                                c.args.join(" ")
                            ),
                        });
                        continue;
                    }
                    children.push(c.clone());
                }
                // A preempting instance gets a preempt_delay (see the
                // constant) unless it has one or does not preempt.
                let starts_master = children.iter().any(|c| {
                    c.key == "state" && c.args.first().map(String::as_str) == Some("MASTER")
                });
                let preempts = k == "vrrp_instance"
                    && hooks.is_some()
                    && !children
                        .iter()
                        .any(|c| c.key == "nopreempt" || c.key == "preempt_delay");
                if preempts && starts_master {
                    // keepalived ignores preempt_delay with state MASTER.
                    notes.push(Note {
                        loc: n.loc.clone(),
                        msg: format!(
                            "vrrp_instance {}: state MASTER takes the addresses back at once when \
                             this director returns, before it knows the connections made without \
                             it; prefer state BACKUP with preempt_delay {PREEMPT_DELAY} (or nopreempt)",
                            n.args.join(" ")
                        ),
                    });
                } else if preempts {
                    notes.push(Note {
                        loc: n.loc.clone(),
                        msg: format!(
                            "vrrp_instance {}: preempt_delay {PREEMPT_DELAY} added, so a returning \
                             director learns the connections (--sync-refresh-period \
                             {SYNC_REFRESH_PERIOD}) before it takes the addresses back",
                            n.args.join(" ")
                        ),
                    });
                    children.push(Node {
                        key: "preempt_delay".into(),
                        args: vec![PREEMPT_DELAY.to_string()],
                        block: None,
                        loc: n.loc.clone(),
                    });
                }
                if gets_hooks {
                    if let Some(hooks) = &hooks {
                        for (key, command) in hooks {
                            children.push(Node {
                                key: (*key).to_owned(),
                                args: vec![command.clone(), "root".into()],
                                block: None,
                                loc: n.loc.clone(),
                            });
                        }
                    }
                }
                Some(Node {
                    block: Some(children),
                    ..n.clone()
                })
            }
            _ => None,
        };
        if let Some(node) = keep {
            out.push('\n');
            render(&node, 0, &mut out);
        }
    }
    Some(out)
}

/// Writes `n` in keepalived's syntax, quoting words with spaces.
fn render(n: &Node, depth: usize, out: &mut String) {
    let indent = "    ".repeat(depth);
    out.push_str(&indent);
    out.push_str(&n.key);
    for a in &n.args {
        out.push(' ');
        if a.is_empty() || a.chars().any(|c| c.is_whitespace() || c == '#' || c == '!') {
            out.push('"');
            out.push_str(&a.replace('\\', "\\\\").replace('"', "\\\""));
            out.push('"');
        } else {
            out.push_str(a);
        }
    }
    match &n.block {
        Some(children) => {
            out.push_str(" {\n");
            for c in children {
                render(c, depth + 1, out);
            }
            out.push_str(&indent);
            out.push_str("}\n");
        }
        None => out.push('\n'),
    }
}
