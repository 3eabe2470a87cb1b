# Shared by scripts/demo, scripts/bench and scripts/test-all (sourced, not
# run): start at the repository root, check the toolchain, install the
# Debian packages, build as the invoking user, run the lab as root.

# The packages every script needs: build-essential links the binaries,
# clang/llvm/libbpf-dev build the XDP programs; the lab needs iproute2 and
# ethtool to build its namespaces, nginx-light for the real servers and curl
# for the client. A script adds its own (the bench its load generators and
# the paths it compares, the tests their tools).
RVS_PACKAGES=(build-essential pkg-config clang llvm libbpf-dev iproute2 ethtool procps nginx-light curl)
# What scripts/test-all adds: wrk, tcpdump, nftables, haproxy and ping for
# the end-to-end tests, python3 for their helpers and python3-scapy to
# dissect GUE and GRE captures, systemd-analyze for the
# unit, prometheus's promtool for the alert rules, keepalived and bird2
# for the high-availability and scale-out tests, and openssl for the TLS
# health checks' test certificates.
RVS_TEST_PACKAGES=(wrk tcpdump nftables haproxy iputils-ping python3 python3-scapy systemd prometheus keepalived bird2 openssl)

# The calling script, by an absolute path: it is re-run after the `cd` below.
RVS_SCRIPT="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"

# Re-runs the calling script as root through sudo unless it already runs as
# root, keeping PATH (sudo's secure_path would drop rustup's ~/.cargo/bin)
# and the invoking user's cargo and rustup homes, so what root runs with
# cargo uses the toolchain and the build the user has.
# Call it as `rvs_as_root "$@"`.
rvs_as_root() {
    if [ "$(id -u)" -ne 0 ]; then
        exec sudo -E env "PATH=$PATH" \
            "CARGO_HOME=${CARGO_HOME:-$HOME/.cargo}" \
            "RUSTUP_HOME=${RUSTUP_HOME:-$HOME/.rustup}" \
            "$RVS_SCRIPT" "$@"
    fi
}

# The user who ran the script through sudo; empty when root ran it.
rvs_invoking_user() {
    if [ -n "${SUDO_USER:-}" ] && [ "$SUDO_USER" != root ]; then
        echo "$SUDO_USER"
    fi
}

# Runs a command as the invoking user, so target/ and ~/.cargo stay theirs.
rvs_as_user() {
    local user
    user="$(rvs_invoking_user)"
    if [ -n "$user" ]; then
        # `sudo ./scripts/x` without -E: PATH lost rustup's directory.
        local home
        home="$(getent passwd "$user" | cut -d: -f6)"
        sudo -u "$user" -H env "PATH=$home/.cargo/bin:$PATH" \
            ${CARGO_HOME:+"CARGO_HOME=$CARGO_HOME"} \
            ${RUSTUP_HOME:+"RUSTUP_HOME=$RUSTUP_HOME"} "$@"
    else
        "$@"
    fi
}

# cargo as root (the tests need namespaces and XDP) with the invoking
# user's toolchain and cargo home, so it reuses the build rvs_as_user made.
rvs_cargo_as_root() {
    local user home
    user="$(rvs_invoking_user)"
    if [ -n "$user" ]; then
        home="$(getent passwd "$user" | cut -d: -f6)"
        env "PATH=$home/.cargo/bin:$PATH" \
            "CARGO_HOME=${CARGO_HOME:-$home/.cargo}" \
            "RUSTUP_HOME=${RUSTUP_HOME:-$home/.rustup}" cargo "$@"
    else
        cargo "$@"
    fi
}

# Stops with the one command to run when there is no Rust toolchain.
rvs_need_toolchain() {
    if ! rvs_as_user sh -c 'command -v cargo' >/dev/null 2>&1; then
        echo "error: no Rust toolchain (cargo) in PATH. Install it as the user who builds, then re-run:" >&2
        echo "  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y && . \"\$HOME/.cargo/env\"" >&2
        exit 1
    fi
}

# Installs whichever of RVS_PACKAGES and the packages given are missing,
# without starting their services on this machine (nginx and haproxy run
# only inside the lab's namespaces): a policy-rc.d that refuses every start
# is in place for the install, and removed after if we put it there.
rvs_need_packages() {
    local need_pkgs=() p policy=/usr/sbin/policy-rc.d placed=0
    for p in "${RVS_PACKAGES[@]}" "$@"; do
        dpkg -s "$p" >/dev/null 2>&1 || need_pkgs+=("$p")
    done
    if [ "${#need_pkgs[@]}" -eq 0 ]; then
        return 0
    fi
    echo "== installing: ${need_pkgs[*]}"
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\n# RVS scripts: install packages without starting services.\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        placed=1
    fi
    apt-get update -qq
    local status=0
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null || status=$?
    if [ "$placed" -eq 1 ]; then
        rm -f "$policy"
    fi
    return "$status"
}

# Builds what the lab runs (rvsd, rvsadm, rvs-decap, rvs-lab) in release
# mode, as the invoking user, with cargo's progress shown.
rvs_build_release() {
    echo "== building (release)"
    rvs_as_user cargo build --release -p rvsd -p rvsadm -p rvs-decap -p rvs-lab
}

cd "$(dirname "${BASH_SOURCE[0]}")/.."
rvs_need_toolchain
