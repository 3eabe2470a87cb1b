//! The Debian package `scripts/package-deb` builds: its control data, its
//! files and their modes, the conffile, the alternatives that make rvsadm
//! answer as ipvsadm, man pages that render cleanly, and completions that
//! know the schedulers rvsd has (read with dpkg-deb, no install).

use std::path::{Path, PathBuf};
use std::process::Command;

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Builds the package (debug binaries: what is checked is the layout) and
/// returns its path, in `dir`.
fn build_package(dir: &Path) -> PathBuf {
    let out = run(Command::new(repository().join("scripts/package-deb"))
        .args(["--profile", "debug", "--out"])
        .arg(dir));
    let deb = PathBuf::from(out.trim());
    assert!(deb.exists(), "the script printed {out:?}");
    deb
}

/// groff's warnings for a man page (empty when it renders cleanly).
fn groff_warnings(page: &str) -> String {
    let mut child = Command::new("groff")
        .args(["-man", "-ww", "-z", "-Tutf8"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("groff runs");
    std::io::Write::write_all(child.stdin.as_mut().expect("stdin"), page.as_bytes())
        .expect("write the page");
    let out = child.wait_with_output().expect("groff ends");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn gunzip(path: &Path) -> String {
    run(Command::new("gzip").arg("-dc").arg(path))
}

#[test]
fn the_debian_package_has_what_an_operator_needs() {
    let dir = tempfile::tempdir().expect("temp dir");
    let deb = build_package(dir.path());

    let control = run(Command::new("dpkg-deb").args(["-f"]).arg(&deb));
    for field in [
        "Package: rvs",
        "Version: ",
        "Architecture: ",
        "Depends: ",
        "Description: ",
    ] {
        assert!(control.contains(field), "no {field:?} in:\n{control}");
    }
    let listing = run(Command::new("dpkg-deb").arg("-c").arg(&deb));
    for (mode, path) in [
        ("-rwxr-xr-x", "./usr/sbin/rvsd"),
        ("-rwxr-xr-x", "./usr/sbin/rvsadm"),
        ("-rwxr-xr-x", "./usr/sbin/rvs-decap"),
        ("-rwxr-xr-x", "./usr/bin/rvs-migrate"),
        ("-rwxr-xr-x", "./usr/lib/rvs/ipvsadm-save"),
        ("-rwxr-xr-x", "./usr/lib/rvs/ipvsadm-restore"),
        ("-rw-r--r--", "./lib/systemd/system/rvsd.service"),
        ("-rw-r--r--", "./etc/rvs/rvsd.toml"),
        ("-rw-r--r--", "./usr/share/man/man8/rvsd.8.gz"),
        ("-rw-r--r--", "./usr/share/man/man8/rvsadm.8.gz"),
        (
            "-rw-r--r--",
            "./usr/share/bash-completion/completions/rvsadm",
        ),
        ("-rw-r--r--", "./usr/share/bash-completion/completions/rvsd"),
        ("-rw-r--r--", "./usr/share/zsh/vendor-completions/_rvsd"),
        (
            "-rw-r--r--",
            "./usr/share/fish/vendor_completions.d/rvsd.fish",
        ),
        ("-rw-r--r--", "./usr/share/doc/rvs/copyright"),
    ] {
        let line = listing
            .lines()
            .find(|l| l.ends_with(&format!(" {path}")))
            .unwrap_or_else(|| panic!("{path} not in the package:\n{listing}"));
        assert!(line.starts_with(mode), "{path}: {line}");
        assert!(
            line.contains("root/root"),
            "{path} not owned by root: {line}"
        );
    }

    // Control files: the conffile and the alternatives.
    let ctrl = dir.path().join("control");
    run(Command::new("dpkg-deb").arg("-e").arg(&deb).arg(&ctrl));
    let conffiles = std::fs::read_to_string(ctrl.join("conffiles")).expect("conffiles");
    assert_eq!(conffiles.trim(), "/etc/rvs/rvsd.toml");
    let postinst = std::fs::read_to_string(ctrl.join("postinst")).expect("postinst");
    for link in [
        "--install /usr/sbin/ipvsadm ipvsadm /usr/sbin/rvsadm",
        "--slave /usr/sbin/ipvsadm-save ipvsadm-save /usr/lib/rvs/ipvsadm-save",
        "--slave /usr/sbin/ipvsadm-restore ipvsadm-restore /usr/lib/rvs/ipvsadm-restore",
    ] {
        assert!(
            postinst.contains(link),
            "postinst lacks {link:?}:\n{postinst}"
        );
    }
    // The unit's User=rvs exists once the package is configured.
    assert!(
        postinst.contains("adduser --system --group --no-create-home --home /nonexistent"),
        "postinst makes no system user:\n{postinst}"
    );
    assert!(
        postinst.contains("--gecos \"RVS director\" rvs"),
        "{postinst}"
    );
    assert!(
        control.contains("adduser"),
        "postinst needs adduser:\n{control}"
    );
    let prerm = std::fs::read_to_string(ctrl.join("prerm")).expect("prerm");
    assert!(prerm.contains("update-alternatives --remove ipvsadm /usr/sbin/rvsadm"));

    // Files: man pages render without warnings, the wrappers call rvsadm,
    // the completions know every scheduler.
    let files = dir.path().join("files");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&files));
    for page in ["rvsd.8.gz", "rvsadm.8.gz"] {
        let text = gunzip(&files.join("usr/share/man/man8").join(page));
        assert!(text.contains(".TH"), "{page} is not a man page");
        let warnings = groff_warnings(&text);
        assert!(warnings.is_empty(), "{page}: {warnings}");
    }
    let rvsd_page = gunzip(&files.join("usr/share/man/man8/rvsd.8.gz"));
    assert!(
        rvsd_page.contains("check\\-config"),
        "rvsd.8 lacks --check-config"
    );
    let save = std::fs::read_to_string(files.join("usr/lib/rvs/ipvsadm-save")).unwrap();
    assert!(save.contains("exec /usr/sbin/rvsadm -S"), "{save}");
    let restore = std::fs::read_to_string(files.join("usr/lib/rvs/ipvsadm-restore")).unwrap();
    assert!(restore.contains("exec /usr/sbin/rvsadm -R"), "{restore}");
    let completion =
        std::fs::read_to_string(files.join("usr/share/bash-completion/completions/rvsadm"))
            .unwrap();
    let listed = completion
        .lines()
        .find(|l| l.contains("compgen -W \"rr "))
        .expect("the scheduler list");
    for name in rvs_vocab::sched::NAMES {
        assert!(
            listed.split(['"', ' ']).any(|w| w == name),
            "completion lacks scheduler {name}: {listed}"
        );
    }
    let unit = std::fs::read_to_string(files.join("lib/systemd/system/rvsd.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/sbin/rvsd "), "{unit}");
    assert!(unit.contains("\nUser=rvs\n"), "{unit}");
}
