//! Compiles `bpf/bench_xdp.c` (the bench's generator and sink XDP programs)
//! into `$OUT_DIR/bench_xdp.o`, embedded by `src/bench/xdp.rs`.
//!
//! The BPF side is C because this toolchain has no `rust-src` (aya-ebpf
//! cannot be built); clang and libbpf-dev's headers are the only needs.

use std::env;
use std::path::{Path, PathBuf};
use std::process::{exit, Command};

const SOURCE: &str = "bpf/bench_xdp.c";
const HELPERS: &str = "/usr/include/bpf/bpf_helpers.h";
const ARCH_INCLUDE: &str = "/usr/include/x86_64-linux-gnu";

fn fail(msg: &str) -> ! {
    eprintln!("error: rvs-lab build: {msg}");
    println!("cargo::warning=rvs-lab build: {msg}");
    exit(1);
}

fn main() {
    println!("cargo::rerun-if-changed={SOURCE}");
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
    let object = out_dir.join("bench_xdp.o");
    let mut cmd = Command::new(&clang);
    cmd.args(["-O2", "-g", "-Wall", "-Werror", "-target", "bpf"]);
    if Path::new(ARCH_INCLUDE).exists() {
        cmd.arg(format!("-I{ARCH_INCLUDE}"));
    }
    cmd.arg("-c").arg(SOURCE).arg("-o").arg(&object);
    match cmd.status() {
        Ok(status) if status.success() => {}
        Ok(status) => fail(&format!(
            "clang failed ({status}) compiling {SOURCE}; if it cannot find asm/types.h, \
             install the architecture headers (`apt-get install -y libc6-dev linux-libc-dev`)"
        )),
        Err(e) => fail(&format!("could not run {clang}: {e}")),
    }
}
