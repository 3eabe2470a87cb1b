//! The lab's TUN-mode wiring with the real decapsulator: an IPIP-wrapped SYN
//! sent from the director to rs1 is answered by rs1's nginx, and the SYN-ACK
//! reaches the client through the router with the VIP as source, never
//! through the director.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use rvs_lab::{
    rs_ip, unique_prefix, DirectorKind, Lab, LabSpec, Mode, CLIENT_IP, LINKTYPE_ETHERNET, VIP,
};
use socket2::{Domain, Protocol, Socket, Type};

mod common;
use common::tcp_syn;
use rvs_netns::run_in;

#[test]
fn tun_lab_real_server_answers_tunnelled_syn_directly() {
    let lab = Lab::build(LabSpec {
        prefix: unique_prefix(),
        mode: Mode::Tun,
        servers: 2,
        director: DirectorKind::None,
        decap_bin: Some(env!("CARGO_BIN_EXE_rvs-decap").into()),
        queues: 1,
        directors: 1,
        vip_route: rvs_lab::VipRoute::FirstDirector,
    })
    .unwrap();
    let prefix = lab.prefix().to_owned();

    let sender = run_in(&lab.ns("dir"), || {
        Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(4))).expect("raw IPIP socket")
    });
    let cap_client = lab
        .capture(
            "client",
            "eth0",
            "tcp and src host 10.0.100.1 and src port 80",
            1,
            Duration::from_secs(5),
        )
        .unwrap();
    let cap_dir = lab
        .capture(
            "dir",
            "back",
            "tcp and src host 10.0.100.1",
            1,
            Duration::from_secs(3),
        )
        .unwrap();

    let syn = tcp_syn(CLIENT_IP, VIP, 40002, 80);
    let rs1 = SocketAddr::V4(SocketAddrV4::new(rs_ip(1), 0));
    for _ in 0..3 {
        sender.send_to(&syn, &rs1.into()).unwrap();
        std::thread::sleep(Duration::from_millis(200));
    }

    let pcap = cap_client.packets().unwrap();
    assert_eq!(pcap.linktype, LINKTYPE_ETHERNET);
    let f = pcap
        .frames
        .first()
        .expect("no SYN-ACK from the VIP reached the client");
    let ip = &f[14..];
    assert_eq!(Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]), VIP);
    assert_eq!(Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]), CLIENT_IP);
    let tcp = &ip[usize::from(ip[0] & 0x0f) * 4..];
    assert_eq!(u16::from_be_bytes([tcp[2], tcp[3]]), 40002);
    assert_eq!(tcp[13] & 0x12, 0x12, "SYN-ACK");
    let via_dir = cap_dir.packets().unwrap();
    assert!(via_dir.frames.is_empty(), "reply went through the director");

    drop(lab);
    let left = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&left.stdout).contains(&format!("{prefix}-")));
}
