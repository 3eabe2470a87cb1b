//! Compiles the XDP program in `bpf/` into `$OUT_DIR/<name>.o`, embedded by
//! the crate: `rvs_xdp.c` (the shared-map program with the fast path,
//! `src/program.rs`).
//!
//! The BPF side is C because this toolchain has no `rust-src` (aya-ebpf
//! cannot be built); clang and libbpf-dev's headers are the only needs.
//!
//! The program's sizes are the engine's (`rvs_engine::limits`, compiled
//! into this script from its source file), passed to clang as `-D` defines:
//! the C file has none of its own.

use std::env;
use std::path::{Path, PathBuf};
use std::process::{exit, Command};

// Plain constants only, so it compiles here as in the engine.
#[allow(dead_code, unreachable_pub)] // reason: the engine's module; this script uses some of it.
#[path = "../engine/src/limits.rs"]
mod limits;

const SOURCES: &[&str] = &["bpf/rvs_xdp.c"];
const LIMITS: &str = "../engine/src/limits.rs";

/// The C name of each size and its value.
fn defines() -> [(&'static str, u32); 9] {
    [
        ("MAX_IFACES", limits::MAX_INTERFACES),
        ("QUEUES_PER_IFACE", limits::MAX_QUEUES_PER_INTERFACE),
        ("MAX_SERVICES", limits::MAX_SERVICES),
        ("MAX_VIPS", limits::MAX_VIPS),
        ("MAX_NEXT_HOPS", limits::MAX_NEXT_HOPS),
        ("MAX_DEST_SLOTS", limits::MAX_DEST_SLOTS),
        ("SMALL_IFINDEX", limits::SMALL_IFINDEX),
        ("FRAGMENT_STEERING", limits::FRAGMENT_STEERING),
        ("CONN_WAYS", limits::CONN_WAYS),
    ]
}
const HELPERS: &str = "/usr/include/bpf/bpf_helpers.h";

fn fail(msg: &str) -> ! {
    eprintln!("error: rvs-datapath build: {msg}");
    println!("cargo::warning=rvs-datapath build: {msg}");
    exit(1);
}

fn main() {
    for source in SOURCES {
        println!("cargo::rerun-if-changed={source}");
    }
    println!("cargo::rerun-if-changed={LIMITS}");
    println!("cargo::rerun-if-env-changed=CLANG");

    let clang = env::var("CLANG").unwrap_or_else(|_| "clang".to_string());
    match Command::new(&clang).arg("--version").output() {
        Ok(out) if out.status.success() => {}
        _ => fail(&format!(
            "`{clang}` not found or not working; the XDP program is compiled with clang. \
             Install it: `apt-get install -y clang llvm` (or set CLANG=/path/to/clang)"
        )),
    }
    if !Path::new(HELPERS).exists() {
        fail(&format!(
            "{HELPERS} not found; the XDP program needs libbpf's headers. \
             Install them: `apt-get install -y libbpf-dev`"
        ));
    }

    let out_dir = PathBuf::from(env::var_os("OUT_DIR").unwrap_or_else(|| fail("OUT_DIR not set")));
    for source in SOURCES {
        compile(&clang, source, &out_dir);
    }
}

fn compile(clang: &str, source: &str, out_dir: &Path) {
    let stem = Path::new(source)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_else(|| fail(&format!("bad source name {source}")));
    let object = out_dir.join(format!("{stem}.o"));
    let mut cmd = Command::new(clang);
    cmd.args(["-O2", "-g", "-Wall", "-Werror", "-target", "bpf"]);
    for (name, value) in defines() {
        cmd.arg(format!("-D{name}={value}U"));
    }
    // <asm/types.h> and friends live in the target's multiarch directory.
    if let Some(dir) = arch_include() {
        cmd.arg(format!("-I{}", dir.display()));
    }
    cmd.arg("-c").arg(source).arg("-o").arg(&object);
    match cmd.status() {
        Ok(status) if status.success() => {}
        Ok(status) => fail(&format!(
            "clang failed ({status}) compiling {source}; if it cannot find asm/types.h, \
             install the architecture headers (`apt-get install -y libc6-dev linux-libc-dev`)"
        )),
        Err(e) => fail(&format!("could not run {clang}: {e}")),
    }
}

/// Debian's multiarch include directory for the architecture being built
/// for (`/usr/include/<triplet>`), where the kernel's `asm/` headers are.
fn arch_include() -> Option<PathBuf> {
    let arch = env::var("CARGO_CFG_TARGET_ARCH").ok()?;
    let triplet = match arch.as_str() {
        "x86_64" => "x86_64-linux-gnu",
        "aarch64" => "aarch64-linux-gnu",
        "arm" => "arm-linux-gnueabihf",
        "x86" => "i386-linux-gnu",
        "powerpc64" if env::var("CARGO_CFG_TARGET_ENDIAN").ok()? == "little" => {
            "powerpc64le-linux-gnu"
        }
        "riscv64" => "riscv64-linux-gnu",
        "s390x" => "s390x-linux-gnu",
        "loongarch64" => "loongarch64-linux-gnu",
        _ => return None,
    };
    let dir = Path::new("/usr/include").join(triplet);
    if dir.exists() {
        Some(dir)
    } else {
        println!(
            "cargo::warning=rvs-datapath build: {} not found; if clang cannot find <asm/types.h>, install linux-libc-dev for {arch}",
            dir.display()
        );
        None
    }
}
