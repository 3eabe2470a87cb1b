//! Migration of keepalived's LVS configuration (`virtual_server` blocks with
//! their real servers and health checks) to rvsd's TOML configuration.
//!
//! Three stages, each testable alone: [`parse`] reads keepalived.conf's block
//! syntax (with includes) into a tree, [`keepalived`] extracts the LVS model
//! as keepalived states it, [`convert`] applies keepalived's defaults and
//! fills in rvsd's own schema types (docs/rvsd.md), which are serialized.
//! Everything that cannot be carried over becomes a [`Note`] naming the
//! keepalived line.

pub mod convert;
pub mod firewall;
pub mod keepalived;
pub mod parse;
mod render;
pub mod vrrp;

use std::path::Path;

pub use convert::Options;
pub use parse::{Loc, Note, ParseError};

/// The result of a migration: the file to write and what the operator must
/// know about it.
#[derive(Debug, Clone)]
pub struct Migration {
    /// The complete rvsd configuration, header comment included.
    pub toml: String,
    /// What was not carried over (or differently), in file order.
    pub notes: Vec<Note>,
    /// The VRRP-only keepalived.conf to keep running beside rvsd, with
    /// notify hooks calling rvsadm ([`vrrp`]); `None` without VRRP.
    pub vrrp: Option<String>,
}

/// Migrates the keepalived configuration at `path` (following includes).
///
/// An error means nothing should be written: the message names the file and
/// line to fix.
pub fn migrate_file(path: &Path, opts: &Options) -> Result<Migration, ParseError> {
    let mut notes = Vec::new();
    let tree = parse::parse_file(path, &mut notes)?;
    finish(&tree, opts, notes)
}

/// Migrates configuration text held in memory (includes resolve against the
/// current directory).
pub fn migrate_str(text: &str, opts: &Options) -> Result<Migration, ParseError> {
    let mut notes = Vec::new();
    let tree = parse::parse_str(text, &mut notes)?;
    finish(&tree, opts, notes)
}

fn finish(
    tree: &[parse::Node],
    opts: &Options,
    mut notes: Vec<Note>,
) -> Result<Migration, ParseError> {
    let mut k = keepalived::extract(tree, &mut notes)?;
    k.sync_daemon = vrrp::sync_settings(tree)?;
    let toml = convert::to_toml(&k, opts, &mut notes)?;
    let vrrp = vrrp::vrrp_only(
        tree,
        k.sync_daemon.as_ref(),
        vrrp::DEFAULT_RVSADM,
        &mut notes,
    );
    Ok(Migration { toml, notes, vrrp })
}
