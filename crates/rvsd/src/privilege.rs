//! Least privilege: what rvsd keeps once it is set up, who it runs as, and
//! who its scripts run as (issue 13; docs/rvsd.md, "Privileges").
//!
//! rvsd starts with what setup needs (root, or the unit's ambient
//! capabilities): loading the XDP program and creating its maps (CAP_BPF,
//! CAP_PERFMON, CAP_NET_ADMIN), attaching it (CAP_NET_ADMIN), binding AF_XDP
//! sockets (CAP_NET_RAW) and locking their memory (CAP_IPC_LOCK). Once
//! all of that is done, while rvsd still has a single thread (capabilities
//! belong to threads, so every thread started later inherits the result),
//! [`drop_privileges`] keeps only [`KEPT`]:
//!
//! - **CAP_NET_ADMIN**: asking the kernel to resolve a next hop
//!   (`RTM_NEWNEIGH` with `NTF_USE`, `kernel::ask_resolution`, at every new
//!   real server and at the worker's request), and detaching the XDP
//!   program when rvsd stops (netlink when the kernel attached it without a
//!   BPF link).
//! - **CAP_NET_RAW**: PING_CHECK's raw ICMP socket, opened for every
//!   attempt (a ping socket needs no capability, but only where
//!   `net.ipv4.ping_group_range` includes rvsd's group, by default nowhere).
//!
//! Not kept, because nothing at run time needs them (tested: edits,
//! reloads, real servers flapping, health checks, the fast path's map
//! updates): CAP_BPF (a bpf() command on a map rvsd already holds open needs
//! no capability since Linux 6.5; before that, with
//! `kernel.unprivileged_bpf_disabled` set, every bpf() call did, so
//! [`drop_privileges`] then finds out by trying a map read without it and
//! keeps CAP_BPF only if that fails), CAP_PERFMON, CAP_IPC_LOCK,
//! CAP_SYS_ADMIN, CAP_SETUID/CAP_SETGID (used once, below), CAP_SETPCAP.
//! They leave the effective, permitted and inheritable sets and the
//! bounding set (when rvsd may change it: CAP_SETPCAP); the ambient set is
//! cleared and `no_new_privs` set, so no later exec can gain anything.
//!
//! With `user` (and `group`) in the file rvsd switches to that user in the
//! same step, supplementary groups cleared, keeping [`KEPT`]
//! (`PR_SET_KEEPCAPS` across `setresuid`).
//!
//! Scripts (MISC_CHECK, quorum_up/down) never run in rvsd: a runner
//! process ([`spawn_script_runner`], `rvsd --script-runner UID:GID`) is
//! started before the drop and takes `script_user`'s identity with no
//! capability at all ([`become_script_user`]).

use std::collections::HashSet;
use std::os::unix::process::CommandExt;
use std::process::{Child, Stdio};

use anyhow::{anyhow, bail, Context};
use caps::{CapSet, Capability};
use nix::unistd::{Gid, Group, Uid, User};
use rvs_vocab::schema;

/// The capabilities rvsd keeps at run time, and why: see the module
/// documentation.
pub(crate) const KEPT: [Capability; 2] = [Capability::CAP_NET_ADMIN, Capability::CAP_NET_RAW];

/// A user and group, resolved from their names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Identity {
    pub(crate) user: String,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
}

/// Who rvsd, its scripts and its socket's readers are, from the file.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// Whom rvsd becomes after setup; `None`: it stays who it is.
    pub(crate) user: Option<Identity>,
    /// Whom scripts run as.
    pub(crate) script: Identity,
    /// The control socket's read-only group.
    pub(crate) socket_group: Option<rvs_api::ReadOnlyGroup>,
}

fn group_id(name: &str, key: &str) -> anyhow::Result<u32> {
    match Group::from_name(name) {
        Ok(Some(g)) => Ok(g.gid.as_raw()),
        Ok(None) => {
            bail!("{key} = {name:?}: no such group (create it, e.g. addgroup --system {name})")
        }
        Err(e) => bail!("{key} = {name:?}: looking the group up: {e}"),
    }
}

fn identity(user: &str, group: Option<&str>, keys: (&str, &str)) -> anyhow::Result<Identity> {
    let u = match User::from_name(user) {
        Ok(Some(u)) => u,
        Ok(None) => bail!(
            "{} = {user:?}: no such user (create it, e.g. adduser --system {user})",
            keys.0
        ),
        Err(e) => bail!("{} = {user:?}: looking the user up: {e}", keys.0),
    };
    let gid = match group {
        Some(g) => group_id(g, keys.1)?,
        None => u.gid.as_raw(),
    };
    Ok(Identity {
        user: user.to_string(),
        uid: u.uid.as_raw(),
        gid,
    })
}

/// The default script user: keepalived's `keepalived_script` where it
/// exists (a migrated director keeps its scripts' owner), else `nobody`.
pub(crate) const DEFAULT_SCRIPT_USERS: [&str; 2] = ["keepalived_script", "nobody"];

/// Resolves the file's `user`, `group`, `script_user`, `script_group` and
/// `socket_group`; every name must exist.
pub(crate) fn plan(file: &schema::Config) -> anyhow::Result<Plan> {
    if file.group.is_some() && file.user.is_none() {
        bail!("group = {:?} needs user = \"…\" beside it", file.group);
    }
    if file.script_group.is_some() && file.script_user.is_none() {
        bail!(
            "script_group = {:?} needs script_user = \"…\" beside it",
            file.script_group
        );
    }
    let user = file
        .user
        .as_deref()
        .map(|u| identity(u, file.group.as_deref(), ("user", "group")))
        .transpose()?;
    let script = match file.script_user.as_deref() {
        Some(u) => identity(u, file.script_group.as_deref(), ("script_user", "script_group"))?,
        None => DEFAULT_SCRIPT_USERS
            .iter()
            .find_map(|u| identity(u, None, ("script_user", "script_group")).ok())
            .ok_or_else(|| {
                anyhow!("no script user: neither keepalived_script nor nobody exists; set script_user = \"…\"")
            })?,
    };
    let socket_group = file
        .socket_group
        .as_deref()
        .map(|name| {
            Ok::<_, anyhow::Error>(rvs_api::ReadOnlyGroup {
                gid: group_id(name, "socket_group")?,
                name: name.to_string(),
            })
        })
        .transpose()?;
    Ok(Plan {
        user,
        script,
        socket_group,
    })
}

/// Starts the script runner (this binary, `--script-runner UID:GID`) with
/// piped stdin and stdout; it takes the script user's identity itself.
pub(crate) fn spawn_script_runner(script: &Identity) -> anyhow::Result<Child> {
    std::process::Command::new("/proc/self/exe")
        .arg("--script-runner")
        .arg(format!("{}:{}", script.uid, script.gid))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        // Its own process group: a Ctrl-C at rvsd's terminal is for rvsd,
        // which then still runs omega's quorum_down through the runner.
        .process_group(0)
        .spawn()
        .context("starting the script runner")
}

/// What [`drop_privileges`] kept.
#[derive(Debug)]
pub(crate) struct Kept {
    pub(crate) caps: Vec<Capability>,
    /// The bounding set could be narrowed (CAP_SETPCAP was there).
    pub(crate) bounding: bool,
}

fn names(set: &HashSet<Capability>) -> Vec<String> {
    let mut v: Vec<String> = set.iter().map(|c| c.to_string()).collect();
    v.sort();
    v
}

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count())
}

/// Keeps only [`KEPT`] (plus CAP_BPF where `bpf_probe` shows this kernel
/// needs it for maps rvsd holds open) in every set, switching to `user`
/// on the way; sets `no_new_privs`. Must run while rvsd has one thread.
pub(crate) fn drop_privileges(
    user: Option<&Identity>,
    bpf_probe: Option<&dyn Fn() -> bool>,
) -> anyhow::Result<Kept> {
    let n = threads();
    if n != 1 {
        bail!("dropping capabilities with {n} threads: they belong to each thread, so rvsd drops them before it starts any (a bug)");
    }
    let err = |what: &'static str| move |e: caps::errors::CapsError| anyhow!("{what}: {e}");
    let permitted = caps::read(None, CapSet::Permitted).map_err(err("reading capabilities"))?;
    let effective = caps::read(None, CapSet::Effective).map_err(err("reading capabilities"))?;
    let mut keep: HashSet<Capability> = KEPT
        .iter()
        .copied()
        .filter(|c| permitted.contains(c))
        .collect();
    for c in KEPT.iter().filter(|c| !permitted.contains(c)) {
        tracing::warn!(capability = %c, "rvsd started without {c}: next-hop resolution requests (CAP_NET_ADMIN) or raw ICMP ping checks (CAP_NET_RAW) may fail");
    }
    // Maps held open: does this kernel still want CAP_BPF for them?
    let bpf = [Capability::CAP_BPF, Capability::CAP_SYS_ADMIN];
    if let Some(probe) = bpf_probe {
        if bpf.iter().any(|c| effective.contains(c)) {
            let without: HashSet<Capability> = effective
                .iter()
                .copied()
                .filter(|c| !bpf.contains(c))
                .collect();
            caps::set(None, CapSet::Effective, &without).map_err(err("lowering CAP_BPF"))?;
            let fine = probe();
            caps::set(None, CapSet::Effective, &effective).map_err(err("raising CAP_BPF"))?;
            if !fine {
                let c = if permitted.contains(&Capability::CAP_BPF) {
                    Capability::CAP_BPF
                } else {
                    Capability::CAP_SYS_ADMIN
                };
                tracing::info!(capability = %c, "this kernel wants {c} for bpf() on open maps (before Linux 6.5, with unprivileged_bpf_disabled): keeping it");
                keep.insert(c);
            }
        }
    }
    // The bounding set first: narrowing it needs CAP_SETPCAP, dropped below.
    let bounding = effective.contains(&Capability::CAP_SETPCAP);
    if bounding {
        let now = caps::read(None, CapSet::Bounding).map_err(err("reading the bounding set"))?;
        for c in now.iter().filter(|c| !keep.contains(c)) {
            caps::drop(None, CapSet::Bounding, *c).map_err(err("narrowing the bounding set"))?;
        }
    }
    caps::clear(None, CapSet::Ambient).map_err(err("clearing the ambient set"))?;
    if let Some(u) = user {
        switch_user(u)?;
    }
    caps::set(None, CapSet::Effective, &keep).map_err(err("setting the effective set"))?;
    caps::set(None, CapSet::Permitted, &keep).map_err(err("setting the permitted set"))?;
    caps::clear(None, CapSet::Inheritable).map_err(err("clearing the inheritable set"))?;
    nix::sys::prctl::set_no_new_privs().context("setting no_new_privs")?;
    let after = caps::read(None, CapSet::Permitted).map_err(err("reading capabilities"))?;
    if after != keep {
        bail!(
            "capabilities after the drop are {:?}, not {:?}",
            names(&after),
            names(&keep)
        );
    }
    let mut caps: Vec<Capability> = keep.into_iter().collect();
    caps.sort_by_key(|c| c.index());
    Ok(Kept { caps, bounding })
}

/// Becomes `u` (gid, then uid; no supplementary group) keeping the
/// permitted set across the change.
fn switch_user(u: &Identity) -> anyhow::Result<()> {
    let (uid, gid) = (Uid::from_raw(u.uid), Gid::from_raw(u.gid));
    caps::securebits::set_keepcaps(true).map_err(|e| anyhow!("PR_SET_KEEPCAPS: {e}"))?;
    nix::unistd::setgroups(&[]).context("clearing the supplementary groups (needs CAP_SETGID)")?;
    nix::unistd::setresgid(gid, gid, gid)
        .with_context(|| format!("switching to group {} (needs CAP_SETGID)", u.gid))?;
    nix::unistd::setresuid(uid, uid, uid)
        .with_context(|| format!("switching to user {} (needs CAP_SETUID)", u.user))?;
    caps::securebits::set_keepcaps(false).map_err(|e| anyhow!("PR_SET_KEEPCAPS: {e}"))?;
    Ok(())
}

/// The script runner's first step: become `uid:gid` (`spec`) with no
/// capability in any set, the bounding set emptied where possible, and
/// `no_new_privs`, so that a script can never gain what rvsd had.
pub(crate) fn become_script_user(spec: &str) -> anyhow::Result<()> {
    let (uid, gid) = spec
        .split_once(':')
        .and_then(|(u, g)| Some((u.parse::<u32>().ok()?, g.parse::<u32>().ok()?)))
        .ok_or_else(|| anyhow!("--script-runner wants UID:GID, not {spec:?}"))?;
    let err = |what: &'static str| move |e: caps::errors::CapsError| anyhow!("{what}: {e}");
    let effective = caps::read(None, CapSet::Effective).map_err(err("reading capabilities"))?;
    let bounding = effective.contains(&Capability::CAP_SETPCAP);
    if bounding {
        let now = caps::read(None, CapSet::Bounding).map_err(err("reading the bounding set"))?;
        for c in now {
            caps::drop(None, CapSet::Bounding, c).map_err(err("emptying the bounding set"))?;
        }
    } else if uid == 0 {
        // Root regains the bounding set at every exec.
        bail!("script_user root needs CAP_SETPCAP to run scripts without capabilities");
    }
    caps::clear(None, CapSet::Ambient).map_err(err("clearing the ambient set"))?;
    let (u, g) = (Uid::from_raw(uid), Gid::from_raw(gid));
    if nix::unistd::getuid() != u || nix::unistd::getgid() != g {
        nix::unistd::setgroups(&[g])
            .context("setting the script user's groups (rvsd needs CAP_SETGID)")?;
        nix::unistd::setresgid(g, g, g)
            .with_context(|| format!("switching to group {gid} (rvsd needs CAP_SETGID)"))?;
        nix::unistd::setresuid(u, u, u)
            .with_context(|| format!("switching to user {uid} (rvsd needs CAP_SETUID)"))?;
    }
    for set in [CapSet::Effective, CapSet::Permitted, CapSet::Inheritable] {
        caps::clear(None, set).map_err(err("clearing capabilities"))?;
    }
    nix::sys::prctl::set_no_new_privs().context("setting no_new_privs")?;
    Ok(())
}

/// `rvsd --script-runner UID:GID`: becomes the script user, then runs
/// rvsd's scripts until rvsd closes its stdin. The exit status.
pub(crate) fn script_runner_main(spec: &str) -> i32 {
    if let Err(e) = become_script_user(spec) {
        eprintln!("rvsd script runner: {e:#}");
        return 1;
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("rvsd script runner: {e}");
            return 1;
        }
    };
    match rt.block_on(rvs_health::script::serve(
        tokio::io::stdin(),
        tokio::io::stdout(),
    )) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("rvsd script runner: {e}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> schema::Config {
        schema::Config::parse(text).unwrap()
    }

    #[test]
    fn names_are_resolved_and_defaults_follow_keepalived() {
        let p = plan(&file("")).unwrap();
        assert!(p.user.is_none() && p.socket_group.is_none());
        let expected = if User::from_name("keepalived_script")
            .ok()
            .flatten()
            .is_some()
        {
            "keepalived_script"
        } else {
            "nobody"
        };
        assert_eq!(p.script.user, expected);
        let p = plan(&file(
            "user = \"nobody\"\ngroup = \"root\"\nscript_user = \"root\"\nsocket_group = \"root\"\n",
        ))
        .unwrap();
        let nobody = User::from_name("nobody").unwrap().unwrap();
        assert_eq!(
            p.user,
            Some(Identity {
                user: "nobody".into(),
                uid: nobody.uid.as_raw(),
                gid: 0
            })
        );
        assert_eq!((p.script.uid, p.script.gid), (0, 0));
        assert_eq!(
            p.socket_group.map(|g| (g.gid, g.name)),
            Some((0, "root".into()))
        );
    }

    #[test]
    fn unknown_names_and_lone_groups_are_refused_by_key() {
        let cases = [
            (
                "user = \"rvs-no-such-user\"",
                "user = \"rvs-no-such-user\": no such user",
            ),
            (
                "script_user = \"rvs-no-such-user\"",
                "script_user = \"rvs-no-such-user\": no such user",
            ),
            (
                "socket_group = \"rvs-no-such-group\"",
                "socket_group = \"rvs-no-such-group\": no such group",
            ),
            (
                "user = \"nobody\"\ngroup = \"rvs-no-such-group\"",
                "group = \"rvs-no-such-group\": no such group",
            ),
            ("group = \"root\"", "needs user = "),
            ("script_group = \"root\"", "needs script_user = "),
        ];
        for (text, want) in cases {
            let e = format!("{:#}", plan(&file(text)).unwrap_err());
            assert!(e.contains(want), "{text}: {e}");
        }
    }
}
