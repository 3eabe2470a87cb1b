# Shared by scripts/demo, scripts/bench and scripts/test-all (sourced, not
# run): start at the repository root, run as root, have the Debian packages.

# The packages every script needs: clang/llvm/libbpf-dev build the XDP
# programs, the rest are the lab's and the tests' tools.
RVS_PACKAGES=(clang llvm libbpf-dev nginx-light curl wrk tcpdump iproute2 nftables haproxy ethtool iputils-ping procps python3)

# The calling script, by an absolute path: it is re-run after the `cd` below.
RVS_SCRIPT="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"

# Re-runs the calling script with sudo (keeping the environment) unless it
# already runs as root. Call it as `rvs_as_root "$@"`.
rvs_as_root() {
    if [ "$(id -u)" -ne 0 ]; then
        exec sudo -E "$RVS_SCRIPT" "$@"
    fi
}

# Installs whichever of RVS_PACKAGES and the packages given are missing.
rvs_need_packages() {
    local need_pkgs=() p
    for p in "${RVS_PACKAGES[@]}" "$@"; do
        dpkg -s "$p" >/dev/null 2>&1 || need_pkgs+=("$p")
    done
    if [ "${#need_pkgs[@]}" -gt 0 ]; then
        echo "== installing: ${need_pkgs[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
    fi
}

# Builds what the lab runs (rvsd, rvsadm, rvs-decap, rvs-lab) in release mode.
rvs_build_release() {
    echo "== building (release)"
    cargo build --release -q -p rvsd -p rvsadm -p rvs-decap -p rvs-lab
}

cd "$(dirname "${BASH_SOURCE[0]}")/.."
