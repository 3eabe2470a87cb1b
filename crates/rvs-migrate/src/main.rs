//! `rvs-migrate`: converts a keepalived configuration into rvsd's TOML.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "rvs-migrate",
    about = "Migrate load-balancer configuration to RVS"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Convert keepalived.conf (its virtual_server blocks) into rvsd TOML.
    Keepalived {
        /// The keepalived configuration, e.g. /etc/keepalived/keepalived.conf.
        config: PathBuf,
        /// Write here instead of standard output (replaced atomically).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Interfaces rvsd attaches to, comma separated (default: those of
        /// the vrrp_instance blocks).
        #[arg(long, value_delimiter = ',')]
        interfaces: Option<Vec<String>>,
        /// Also write the VRRP-only keepalived.conf to keep running beside
        /// rvsd: the vrrp_* blocks of the input, with notify hooks calling
        /// rvsadm to switch the connection sync role.
        #[arg(long, value_name = "FILE")]
        vrrp_output: Option<PathBuf>,
        /// The output of iptables-save (or ip6tables-save; give both): the
        /// MARK rules of mangle PREROUTING become [[fwmark]] rules for the
        /// fwmark services.
        #[arg(long = "iptables-save", value_name = "FILE")]
        iptables_save: Vec<PathBuf>,
        /// The output of `nft list ruleset`: the `meta mark set` rules of
        /// prerouting chains become [[fwmark]] rules for the fwmark services.
        #[arg(long, value_name = "FILE")]
        nft: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rvs-migrate: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let Cmd::Keepalived {
        config,
        output,
        interfaces,
        vrrp_output,
        iptables_save,
        nft,
    } = Cli::parse().cmd;
    // Read before anything is written: a malformed file stops it all.
    let mut firewall = Vec::new();
    for path in &iptables_save {
        firewall.push(rvs_migrate::firewall::read_iptables_save(path)?);
    }
    for path in &nft {
        firewall.push(rvs_migrate::firewall::read_nft(path)?);
    }
    let opts = rvs_migrate::Options {
        interfaces: interfaces.map(|v| v.into_iter().filter(|s| !s.is_empty()).collect()),
        source_name: config.display().to_string(),
        firewall,
    };
    let m = rvs_migrate::migrate_file(&config, &opts)?;
    match &output {
        Some(path) => write_atomically(path, &m.toml)?,
        None => std::io::stdout()
            .write_all(m.toml.as_bytes())
            .context("writing to standard output")?,
    }
    if let Some(path) = &vrrp_output {
        let text = m.vrrp.as_deref().with_context(|| {
            format!(
                "{} has no vrrp_instance: there is no VRRP-only configuration to write",
                config.display()
            )
        })?;
        write_atomically(path, text)?;
        eprintln!("rvs-migrate: wrote {} (VRRP only)", path.display());
    }
    if !m.notes.is_empty() {
        eprintln!("rvs-migrate: not carried over, or carried over differently:");
        for n in &m.notes {
            eprintln!("  {n}");
        }
    }
    if let Some(path) = &output {
        eprintln!(
            "rvs-migrate: wrote {} ({} note(s))",
            path.display(),
            m.notes.len()
        );
    }
    Ok(())
}

/// Writes next to the target and renames, so a failure never leaves a
/// partial configuration behind.
fn write_atomically(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .context("the output path names no file")?
        .to_string_lossy();
    let tmp = dir.join(format!(".{name}.rvs-migrate.{}", std::process::id()));
    let res = (|| -> anyhow::Result<()> {
        let mut f =
            std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        f.write_all(text.as_bytes())
            .and_then(|()| f.sync_all())
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}
