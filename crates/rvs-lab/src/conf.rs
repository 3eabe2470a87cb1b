//! Configuration files the lab writes for nginx, HAProxy and nftables.

use std::fmt::Write;
use std::net::Ipv4Addr;
use std::path::Path;

/// Size of the `/big` page, for bulk-throughput runs.
pub const BIG_PAGE_BYTES: usize = 1 << 20;

/// nginx for one real server: everything (pid, logs, temp files) under `dir`
/// so several instances and the system nginx never collide.
pub(crate) fn nginx(dir: &Path, name: &str, optional_temp: &[&str]) -> String {
    let d = dir.display();
    let mut temp = format!("    client_body_temp_path {d}/tmp/body;\n");
    for m in optional_temp {
        let _ = writeln!(temp, "    {m}_temp_path {d}/tmp/{m};");
    }
    format!(
        "daemon off;
master_process on;
worker_processes 1;
worker_rlimit_nofile 16384;
user root root;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{
    worker_connections 8192;
}}
http {{
    access_log off;
{temp}    default_type text/plain;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    keepalive_timeout 65;
    server {{
        listen 0.0.0.0:80 default_server;
        listen [::]:80 default_server;
        root {d}/html;
        location = / {{
            return 200 \"{name}\\n\";
        }}
        # The peer as the server sees it (FullNAT: a local address and port).
        location = /peer {{
            return 200 \"$remote_addr $remote_port\\n\";
        }}
        location = /big {{
            default_type application/octet-stream;
            try_files /big =404;
        }}
    }}
}}
"
    )
}

/// HAProxy `mode tcp` round robin from the VIP to the servers.
pub(crate) fn haproxy(vip: Ipv4Addr, servers: &[Ipv4Addr]) -> String {
    let mut s = format!(
        // No global maxconn: HAProxy then derives it from the file limit
        // it may raise to, instead of failing where the hard limit is low.
        "global
defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend vip
    bind {vip}:80
    default_backend rs
backend rs
    balance roundrobin
"
    );
    for (i, ip) in servers.iter().enumerate() {
        let _ = writeln!(s, "    server rs{} {ip}:80", i + 1);
    }
    s
}

/// nftables DNAT of everything for the VIP to the servers in strict rotation
/// (`numgen inc`), in a table of its own.
pub(crate) fn nft_dnat(vip: Ipv4Addr, servers: &[Ipv4Addr]) -> String {
    let map: Vec<String> = servers
        .iter()
        .enumerate()
        .map(|(i, ip)| format!("{i} : {ip}"))
        .collect();
    format!(
        "table ip rvslab {{
    chain prerouting {{
        type nat hook prerouting priority dstnat; policy accept;
        ip daddr {vip} dnat to numgen inc mod {} map {{ {} }}
    }}
}}
",
        servers.len(),
        map.join(", ")
    )
}
