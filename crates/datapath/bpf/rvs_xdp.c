// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * RVS XDP program: one program, attached to every interface of the
 * director, all maps shared (docs/fastpath.md is the contract).
 *
 *   conns[5-tuple] hit (IPv4: its set of conn_slots4, else conns4;
 *       IPv6: conns6), Forward entry, frame fully understood
 *       -> rewrite (DR / NAT in / NAT out / FullNAT in and out /
 *          IPIP, GUE or GRE), count, last_seen,
 *          XDP_TX (egress == ingress) or redirect through tx_ports
 *   conns hit, anything else (ToEngine entry, a TCP segment or SCTP packet of
 *       a class the entry does not forward (docs/fastpath.md), IPv4 options,
 *       bad IPv4 checksum, TTL <= 1 on a NAT or FullNAT reply, tunnel over the MTU,
 *       invalid next hop, egress without a tx port, malformed L4)
 *       -> AF_XDP (the engine decides, exactly as without a fast path)
 *   miss, destination (addr, proto, port | 0) is a service  -> AF_XDP
 *   later fragment of a datagram in frags4 / frags6          -> AF_XDP
 *   miss, malformed or fragment, destination is a VIP        -> AF_XDP
 *       (the engine counts and drops; the kernel must not answer for a VIP)
 *   ICMP error quoting a TCP/UDP/SCTP packet whose reversed flow is in conns,
 *       or sent to a VIP                                    -> AF_XDP
 *       (the engine relays it to whoever sent the quoted packet, or counts
 *       and drops it; crates/engine/src/icmp.rs)
 *   everything else (ARP, ping, ssh, the director's own traffic, replies
 *       from a real server that belong to no tracked connection, e.g. the
 *       director's health checks)                            -> XDP_PASS
 *
 * "AF_XDP" is xsks[iface slot * 256 + rx queue]; with no socket there the
 * frame is dropped and counted as to_user_failed (passing it would let the
 * kernel answer for a VIP with RST / port unreachable).
 *
 * Every frame lands in exactly one verdict counter of its ingress interface
 * (passed, to_user, to_user_failed, fast_tx, fast_redirect); parse_errors
 * counts unparseable IP/L4 headers on top.
 *
 * The checks before forwarding are those the engine makes when it parses a
 * frame (crates/wire check_len, crates/engine parse): a frame the engine
 * would drop or treat differently never takes the fast path. All checks
 * run before the first byte is rewritten, so "to user space" always hands
 * over the frame as it arrived.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

/*
 * Sizes: rvs_engine::limits (crates/engine/src/limits.rs) defines each once;
 * build.rs passes them here with -D, and the loader sizes the maps from
 * the same constants. No number of this file may say otherwise.
 */
#if !defined(MAX_IFACES) || !defined(QUEUES_PER_IFACE) || !defined(MAX_SERVICES) ||      \
	!defined(MAX_VIPS) || !defined(MAX_NEXT_HOPS) || !defined(MAX_DEST_SLOTS) ||      \
	!defined(SMALL_IFINDEX) || !defined(FRAGMENT_STEERING) || !defined(CONN_WAYS)
#error "the sizes come from rvs_engine::limits through build.rs"
#endif
/* Counters of frames arriving on an interface missing from `ifaces`. */
#define SPARE_SLOT MAX_IFACES
/* Placeholders: the loader sets 2 x the connection capacity, and the slots. */
#define DEFAULT_CONNS 65536
#define DEFAULT_CONN_SLOTS 65536

#define ETH_P_8021Q_ 0x8100
#define ETH_P_8021AD_ 0x88A8
#define IP_DF_ 0x4000
#define IP_MF_ 0x2000
#define IP_OFFSET_ 0x1FFF
#define NEXTHDR_FRAGMENT_ 44
#define IPPROTO_IPIP_ 4
#define IPPROTO_IPV6_ 41
#define IPPROTO_GRE_ 47
#define IPPROTO_ICMPV6_ 58
#define IPPROTO_SCTP_ 132
#define SCTP_HEADER_LEN 12
#define ICMP_HEADER_LEN 8
#define TCP_FIN_ 0x01
#define TCP_SYN_ 0x02
#define TCP_RST_ 0x04
#define TCP_ACK_ 0x10
/*
 * Bits of conn_entry.tcp_segments: IPVS's classes of a TCP segment (RST if
 * set, else SYN, else FIN, else ACK), in the kernel's row order.
 */
#define SEG_SYN 0x01
#define SEG_FIN 0x02
#define SEG_ACK 0x04
#define SEG_RST 0x08
/*
 * Not a TCP class: an SCTP packet whose first chunk IPVS classes as its
 * DATA event (every chunk type but those of sctp_chunk_class() below).
 */
#define SEG_SCTP_DATA 0x10
/* Outer TTL of IPIP, as the engine's fwd/tun.rs (the kernel default). */
#define TUNNEL_TTL 64
/*
 * last_seen is stored only when the stored value is older than this, so
 * that a busy flow does not dirty (and bounce between CPUs) the entry's
 * cache line on every frame; expiry works in whole seconds over timeouts
 * of 10 s and more, so one second of slack is invisible.
 */
#define LAST_SEEN_SLACK_NS 1000000000ULL

/*
 * What a tunnel writes after the outer IP header (the kernel's
 * IP_VS_CONN_F_TUNNEL_TYPE_* numbers): nothing, UDP and a 4-byte GUE
 * version 0 header, or a GRE header (4 bytes, 8 with a checksum). The
 * entry's `csum` says whether GUE's UDP checksum or GRE's is filled.
 */
enum tun_encap {
	ENCAP_IPIP = 0,
	ENCAP_GUE = 1,
	ENCAP_GRE = 2,
};

/* Bytes between the outer header and the inner packet; -1: unknown. */
static __always_inline int encap_len(__u8 encap, __u8 csum)
{
	switch (encap) {
	case ENCAP_IPIP:
		return 0;
	case ENCAP_GUE:
		return 12;
	case ENCAP_GRE:
		return csum ? 8 : 4;
	default:
		return -1;
	}
}

enum conn_action {
	ACT_TO_ENGINE = 0,
	ACT_ROUTE = 1,
	ACT_MASQ_IN = 2,
	ACT_MASQ_OUT = 3,
	ACT_TUNNEL = 4,
	/*
	 * FullNAT: both ends rewritten (IPv4: `fnat` below; IPv6: the new
	 * destination in `addr`, the source in conn_entry6's tail); the reply
	 * direction (OUT) is routed like a NAT reply (TTL first).
	 */
	ACT_FNAT_IN = 5,
	ACT_FNAT_OUT = 6,
	/*
	 * A tunnel over IPv6: `tun` as for ACT_TUNNEL but for its two IPv4
	 * addresses; the outer addresses are in conn_entry6's tail.
	 */
	ACT_TUNNEL6 = 7,
};

/*
 * One direction of a tracked IPv4 connection: the frame's own 5-tuple, in
 * 16 bytes (hashing and comparing 40 bytes per frame, and the larger
 * element, cost measurably more at 64 k flows).
 */
struct conn_key4 {
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 pad[3];
};

/*
 * Parsing state of any frame; for IPv6 also the key of `conns6` (the
 * frame's own 5-tuple).
 */
struct conn_key {
	__u8 family; /* 4 or 6 */
	__u8 proto;  /* IPPROTO_TCP / IPPROTO_UDP */
	__be16 sport;
	__be16 dport;
	__u16 pad;
	__u8 saddr[16]; /* IPv4 in the first 4 bytes, rest zero */
	__u8 daddr[16];
};

struct conn_entry {
	/*
	 * bpf_ktime_get_coarse_ns() of the last forwarded frame
	 * (CLOCK_MONOTONIC at tick resolution: reading the TSC per frame cost
	 * more than the rest of the bookkeeping).
	 */
	__u64 last_seen;
	__u32 next_hop; /* index into next_hops */
	__u32 dest;     /* index into dest_stats */
	__u8 action;    /* enum conn_action */
	/*
	 * SEG_* bits: the TCP segments this entry forwards, those on which
	 * the engine's state table would change nothing in the connection's
	 * state (ACKs once established; a NAT server's SYN+ACK in SYN_RECV).
	 */
	__u8 tcp_segments;
	__be16 port; /* NAT: the new port */
	/*
	 * RFC 1624 deltas D = fold(sum ~old words + sum new words), host
	 * order, for the IPv4 header checksum (address) and the TCP/UDP
	 * checksum (pseudo-header address + port): check' = ~fold(~check + D).
	 * Constant per entry: the old address and port are the key's.
	 */
	__u16 ip_delta;
	__u16 l4_delta;
	union {
		__u8 addr[16]; /* NAT: the new address (IPv4 in the first 4) */
		struct {
			__be32 daddr; /* the new destination */
			__be32 saddr; /* the new source */
			__be16 sport; /* the new source port (`port` is the destination's) */
			__u8 pad[6];
		} fnat;
		struct {
			__be32 src; /* outer source: the director */
			__be32 dst; /* outer destination: the real server */
			__u16 mtu;  /* egress MTU, host order */
			__u8 encap; /* enum tun_encap: what follows the outer header */
			__u8 csum;  /* 1: GUE's UDP checksum or GRE's is filled */
			__be16 gue_sport; /* GUE: UDP ports, chosen by the engine */
			__be16 gue_dport;
		} tun;
	};
};

/*
 * One way of a set of `conn_slots4`: an IPv4 entry and its key in one cache
 * line (the value array of an mmapable array map is page-aligned), so a hit
 * costs one miss where the hash map's bucket, element header and value
 * cost three.
 *
 * The writer (rvsd, through mmap; one at a time) keeps `seq` odd while it
 * writes the slot and even otherwise; a reader copies the entry and takes
 * it only if `seq` was even and unchanged around the copy. A free way's
 * key is all zero (no frame has that key).
 */
struct conn_slot4 {
	__u64 seq;
	union {
		struct conn_key4 k;
		__u64 w[2];
	} key;
	struct conn_entry entry;
};

/*
 * The value of conns6: an entry and what two IPv6 ends need beyond its 16
 * address bytes. FullNAT: the new source and its port (`e.addr` is the new
 * destination and `e.port` its port). A tunnel: the outer source and
 * destination.
 */
struct conn_entry6 {
	struct conn_entry e;
	__u8 src6[16];
	__u8 dst6[16];
	__be16 sport6;
	__u8 pad[6];
};

struct next_hop {
	__u32 ifindex;
	__u8 src_mac[6];
	__u8 dst_mac[6];
	/*
	 * 1 + the egress interface's slot in tx_ports; 0: not usable (MAC
	 * unknown, or not an interface of ours): frames go to the engine.
	 */
	__u32 tx_port;
};

struct dest_counters {
	__u64 in_pkts;
	__u64 in_bytes;
	__u64 out_pkts;
	__u64 out_bytes;
};

struct if_counters {
	__u64 passed;
	__u64 to_user;
	__u64 to_user_failed;
	__u64 fast_tx;
	__u64 fast_redirect;
	__u64 parse_errors;
};

/* Key of `frags4`: an IPv4 datagram (RFC 791's identification tuple). */
struct frag_key4 {
	__be32 saddr;
	__be32 daddr;
	__be16 id;
	__u8 proto;
	__u8 pad;
};

/* Key of `frags6`: an IPv6 datagram (source, destination, identification). */
struct frag_key6 {
	__u8 saddr[16];
	__u8 daddr[16];
	__be32 id;
	__u8 proto;
	__u8 pad[3];
};

/* Key of `services` (destination address, protocol, port). */
struct l4_key {
	__u8 family;
	__u8 proto;
	__be16 port;
	__u8 addr[16];
};

/* Key of `vip_addrs`. */
struct addr_key {
	__u8 family;
	__u8 pad[3];
	__u8 addr[16];
};

/*
 * IPv4 entries: sets of CONN_WAYS slots, the set picked by conn_hash4()
 * among the sets in use (conn_geometry).
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, DEFAULT_CONN_SLOTS);
	__type(key, __u32);
	__type(value, struct conn_slot4);
} conn_slots4 SEC(".maps");

/*
 * The sets of conn_slots4 in use - 1 (a power of two - 1). rvsd keeps the
 * entries in a prefix of the table that it doubles as they grow: a frame
 * costs the misses of its slot, fewer in a dense prefix than anywhere in a
 * table sized for max_connections (crates/datapath/src/conn_table.rs).
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} conn_geometry SEC(".maps");

/* IPv4 entries whose set was full when the engine wrote them. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, DEFAULT_CONNS);
	__type(key, struct conn_key4);
	__type(value, struct conn_entry);
} conns4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, DEFAULT_CONNS);
	__type(key, struct conn_key);
	__type(value, struct conn_entry6);
} conns6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_NEXT_HOPS);
	__type(key, __u32);
	__type(value, struct next_hop);
} next_hops SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_DEST_SLOTS);
	__type(key, __u32);
	__type(value, struct dest_counters);
} dest_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, MAX_SERVICES);
	__type(key, struct l4_key);
	__type(value, __u32);
} services SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, MAX_VIPS);
	__type(key, struct addr_key);
	__type(value, __u32);
} vip_addrs SEC(".maps");

/*
 * IPv4 datagrams whose first fragment belonged to a tracked connection:
 * their later fragments (no ports) go to the engine too. Written here, by
 * the program, when it hands such a first fragment over.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, FRAGMENT_STEERING);
	__type(key, struct frag_key4);
	__type(value, __u8);
} frags4 SEC(".maps");

/* The same for IPv6 datagrams (fragment header right after the fixed one). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, FRAGMENT_STEERING);
	__type(key, struct frag_key6);
	__type(value, __u8);
} frags6 SEC(".maps");

/* ifindex -> interface slot (0..MAX_IFACES-1). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_IFACES);
	__type(key, __u32);
	__type(value, __u32);
} ifaces SEC(".maps");

/*
 * The same for ifindex < SMALL_IFINDEX, as slot + 1 (0: not ours): an
 * array lookup, which the verifier inlines, on every frame instead of a
 * hash lookup; larger ifindexes fall back to `ifaces`.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SMALL_IFINDEX);
	__type(key, __u32);
	__type(value, __u32);
} ifslots SEC(".maps");

/*
 * Interface slot -> ifindex: the interfaces the fast path may redirect to
 * (an array, so the redirect costs no hash lookup).
 */
struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP);
	__uint(max_entries, MAX_IFACES);
	__type(key, __u32);
	__type(value, struct bpf_devmap_val);
} tx_ports SEC(".maps");

/* slot * 256 + rx queue -> AF_XDP socket. */
struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, MAX_IFACES * QUEUES_PER_IFACE);
	__type(key, __u32);
	__type(value, __u32);
} xsks SEC(".maps");

/* Per interface slot, plus SPARE_SLOT. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_IFACES + 1);
	__type(key, __u32);
	__type(value, struct if_counters);
} if_stats SEC(".maps");

/* Set by the loader (.rodata): the hash seed of conn_slots4. */
const volatile __u64 conn_hash_seed = 0;
/*
 * x^(8 * 2^k) modulo CRC32c's polynomial, bit-reflected, k = 0..15: what
 * carries a CRC over 2^k zero bytes. Set by the loader
 * (crates/datapath/src/crc32c_shift.rs computes them).
 */
const volatile __u32 crc32c_zeros[16] = {};

static __always_inline int pass(struct if_counters *cnt)
{
	cnt->passed += 1;
	return XDP_PASS;
}

static __always_inline int to_user(struct xdp_md *ctx, struct if_counters *cnt, __u32 slot)
{
	__u32 queue = ctx->rx_queue_index;
	__u32 key;

	/* An unknown interface or a queue beyond the map has no socket. */
	if (slot >= MAX_IFACES || queue >= QUEUES_PER_IFACE)
		goto failed;
	key = slot * QUEUES_PER_IFACE + queue;
	/* Fallback action XDP_DROP when no socket is registered there. */
	if (bpf_redirect_map(&xsks, key, XDP_DROP) == XDP_REDIRECT) {
		cnt->to_user += 1;
		return XDP_REDIRECT;
	}
failed:
	cnt->to_user_failed += 1;
	return XDP_DROP;
}

static __always_inline int is_vip(__u8 family, const __u8 *addr16)
{
	struct addr_key k = {};

	k.family = family;
	__builtin_memcpy(k.addr, addr16, 16);
	return bpf_map_lookup_elem(&vip_addrs, &k) != NULL;
}

/* Malformed or a fragment: the engine's if it is for a VIP, else the kernel's. */
static __always_inline int vip_or_pass(struct xdp_md *ctx, struct if_counters *cnt, __u32 slot,
				       const struct conn_key *key)
{
	if (is_vip(key->family, key->daddr))
		return to_user(ctx, cnt, slot);
	return pass(cnt);
}

static __always_inline __u16 fold(__u32 s)
{
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (__u16)s;
}

/* One's complement sum of `n` 16-bit words at `p`, as read (network order). */
#define SUM_WORDS(p, n)                                   \
	({                                                \
		const __u16 *w_ = (const __u16 *)(p);     \
		__u32 s_ = 0;                             \
		int i_;                                   \
		_Pragma("unroll") for (i_ = 0; i_ < (n); i_++) \
			s_ += w_[i_];                     \
		s_;                                       \
	})

/* RFC 1624 eqn. 3 with a precomputed delta: ~fold(~check + D). Host order. */
static __always_inline __u16 csum_add_delta(__u16 check, __u16 delta)
{
	return (__u16)~fold((__u32)(__u16)~check + delta);
}

/* RFC 1624 eqn. 3 for one 16-bit word (the TTL/protocol word). */
static __always_inline __u16 csum_replace16(__u16 check, __u16 old, __u16 new)
{
	return (__u16)~fold((__u32)(__u16)~check + (__u16)~old + new);
}

/* The 20-byte header sums to -0 when its checksum is right. */
static __always_inline int ipv4_csum_ok(const struct iphdr *ip)
{
	return fold(SUM_WORDS(ip, 10)) == 0xffff;
}

/* Rewrite the TCP/UDP checksum at `check` (network order in the packet). */
/*
 * The TCP or UDP checksum field of the segment at `l4`, or 0 when its
 * header is cut short.
 */
static __always_inline __be16 *l4_check_field(__u8 proto, void *l4, void *data_end)
{
	if (proto == IPPROTO_TCP) {
		struct tcphdr *tcp = l4;

		return (void *)(tcp + 1) > data_end ? 0 : &tcp->check;
	} else {
		struct udphdr *udp = l4;

		return (void *)(udp + 1) > data_end ? 0 : &udp->check;
	}
}

/* TTL down by one on a routed IPv4 packet; `c` its header checksum (host
 * order), returned updated (RFC 1624 on the TTL/protocol word). */
static __always_inline __u16 ipv4_ttl_down(struct iphdr *ip, __u16 c)
{
	__u16 old = ((__u16)ip->ttl << 8) | ip->protocol;

	ip->ttl -= 1;
	return csum_replace16(c, old, old - 0x0100);
}

static __always_inline void l4_csum_update(__u8 proto, __be16 *check, __u16 delta)
{
	__u16 c = bpf_ntohs(*check);

	if (proto == IPPROTO_UDP) {
		/* No checksum stays no checksum; a computed 0 is sent as 0xffff. */
		if (c == 0)
			return;
		c = csum_add_delta(c, delta);
		if (c == 0)
			c = 0xffff;
	} else {
		c = csum_add_delta(c, delta);
	}
	*check = bpf_htons(c);
}

/* CRC32c's (Castagnoli's) polynomial, bit-reflected, as SCTP uses it. */
#define CRC32C_POLY 0x82f63b78

/* One step of a bit-reflected CRC: the state times x. */
static __always_inline __u32 crc32c_times_x(__u32 s)
{
	return (s >> 1) ^ (CRC32C_POLY & -(s & 1));
}

/* a * b modulo the polynomial, both bit-reflected (bit 31 is x^0). */
static __always_inline __u32 crc32c_mul(__u32 a, __u32 b)
{
	__u32 r = 0;
	int i;

#pragma nounroll
	for (i = 0; i < 32; i++) {
		r ^= b & -((a >> (31 - i)) & 1);
		b = crc32c_times_x(b);
	}
	return r;
}

/*
 * What an SCTP packet's CRC32c changes by when its first 4 bytes (the
 * ports) change by `delta` (old XOR new, read as a bit-reflected CRC reads
 * bytes: the first lowest) and `n` bytes follow them. A CRC is linear, so
 * that is the raw CRC of `delta` followed by `n` zero bytes: the 4 bytes'
 * CRC carried over those zeros by the factors in crc32c_zeros.
 *
 * A global function, so the verifier walks its loops once, not once per
 * place forward() is inlined.
 */
__attribute__((noinline)) __u32 crc32c_port_change(__u32 delta, __u32 n)
{
	__u32 s = delta;
	int i;

#pragma nounroll
	for (i = 0; i < 32; i++)
		s = crc32c_times_x(s);
#pragma nounroll
	for (i = 0; i < 16; i++)
		if (n & (1u << i))
			s = crc32c_mul(crc32c_zeros[i], s);
	return s;
}

/*
 * An SCTP packet of `len` bytes at `l4` whose ports changed by `delta`
 * (old XOR new, as the bytes lie): its CRC32c updated without reading the
 * packet again. Equal to a full recompute for a packet whose CRC was
 * right; one that was wrong stays wrong by as much (the engine, as the
 * kernel, would recompute it right). -1 when the checksum field is cut
 * short.
 */
static __always_inline int sctp_crc_update(__u8 *l4, void *data_end, const __u8 *delta,
					   __u32 len)
{
	__u8 *c = l4 + 8;
	__u32 d, crc;

	if ((void *)(c + 4) > data_end)
		return -1;
	d = delta[0] | (__u32)delta[1] << 8 | (__u32)delta[2] << 16 | (__u32)delta[3] << 24;
	if (!d)
		return 0;
	crc = c[0] | (__u32)c[1] << 8 | (__u32)c[2] << 16 | (__u32)c[3] << 24;
	crc ^= crc32c_port_change(d, len - 4);
	c[0] = crc;
	c[1] = crc >> 8;
	c[2] = crc >> 16;
	c[3] = crc >> 24;
	return 0;
}

/*
 * A tunnel: trim Ethernet padding, grow the head by `over` bytes (20 for
 * the outer IPv4 header plus the encapsulation's, a constant at each call
 * site), move the L2 header to the front and write the outer IPv4 header
 * and the encapsulation after it. Returns 0 on success; on failure the
 * frame is as it arrived (padding aside, which the engine ignores).
 */
/*
 * Makes room for `over` bytes of new headers between the L2 header and the
 * inner packet (Ethernet padding after it dropped first) and moves the L2
 * header to the front: 0, or -1 when the frame cannot take them (then the
 * caller hands it to the engine). `inner_len` is the inner header's size,
 * which must follow the room.
 */
static __always_inline int open_room(struct xdp_md *ctx, __u32 l2_len, __u32 ip_len,
				     const int over, const int inner_len)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	int pad = (int)((long)data_end - (long)(data + l2_len)) - (int)ip_len;

	if (pad > 0 && bpf_xdp_adjust_tail(ctx, -pad))
		return -1;
	if (bpf_xdp_adjust_head(ctx, -over))
		return -1;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	/* Room for the largest L2 header (two tags), the new headers and the
	 * inner header. */
	if (data + 22 + over + inner_len > data_end) {
		bpf_xdp_adjust_head(ctx, over);
		return -1;
	}
	/* Copies run front to back and never overlap what they still read. */
	if (l2_len == 14) {
		__builtin_memcpy(data, data + over, 14);
	} else if (l2_len == 18) {
		__builtin_memcpy(data, data + over, 18);
	} else {
		__builtin_memcpy(data, data + over, 20);
		__builtin_memcpy(data + 20, data + over + 20, 2);
	}
	return 0;
}

/*
 * The one's complement sum of the inner packet (`ip_len` bytes at `l3`,
 * its L4 header at `l4`), which a GUE or GRE checksum covers, from its
 * headers alone, as the kernel's local checksum offload (lco_csum()) does:
 * a TCP or UDP segment whose checksum is right sums to the complement of
 * its pseudo-header, and an IPv4 header whose checksum is right (checked
 * before) to -0. Equal to the sum of the bytes for every packet whose
 * checksums are right; a packet whose inner checksum is wrong gets an
 * outer checksum that is wrong too, so the real server drops it one layer
 * sooner than the engine's frame. -1 where it does not hold (UDP without a
 * checksum, SCTP's CRC): that frame is the engine's.
 */
static __always_inline __s64 inner_sum(void *l3, void *l4, void *data_end, __u8 family,
				       __u8 proto, __u32 ip_len)
{
	__be16 *check;
	__u32 s;

	if (proto != IPPROTO_TCP && proto != IPPROTO_UDP)
		return -1;
	check = l4_check_field(proto, l4, data_end);
	if (!check || (proto == IPPROTO_UDP && *check == 0))
		return -1;
	if (family == 4) {
		struct iphdr *ip = l3;

		if ((void *)(ip + 1) > data_end)
			return -1;
		s = SUM_WORDS(&ip->saddr, 4) + bpf_htons(proto) + bpf_htons(ip_len - 20);
		return (__u16)~fold(s);
	} else {
		struct ipv6hdr *ip6 = l3;

		if ((void *)(ip6 + 1) > data_end)
			return -1;
		s = SUM_WORDS(&ip6->saddr, 16) + bpf_htons(proto) + bpf_htons(ip_len - 40);
		return (__u32)(__u16)~fold(s) + SUM_WORDS(ip6, 20);
	}
}

/*
 * What follows the outer header at `at` (`extra` bytes: 12 for GUE, 4 or 8
 * for GRE, 0 for IPIP, checked by the caller): UDP and a GUE version 0
 * header carrying `inner_proto` (4 or 41), or GRE version 0 carrying
 * `ethertype`. With `e->tun.csum` the UDP checksum (over the outer
 * pseudo-header, whose addresses sum to `addr_sum`) or GRE's is filled
 * from `inner` (inner_sum()); without, GUE's is 0 (--tun-nocsum).
 */
static __always_inline void write_encap(__u8 *at, const struct conn_entry *e, __u32 ip_len,
					const int extra, __u8 inner_proto, __u16 ethertype,
					__u32 addr_sum, __u32 inner)
{
	if (extra == 12) {
		struct udphdr *udp = (void *)at;
		__u16 c;

		udp->source = e->tun.gue_sport;
		udp->dest = e->tun.gue_dport;
		udp->len = bpf_htons(ip_len + 12);
		udp->check = 0;
		at[8] = 0;
		at[9] = inner_proto;
		at[10] = 0;
		at[11] = 0;
		if (e->tun.csum) {
			c = ~fold(addr_sum + bpf_htons(IPPROTO_UDP) + udp->len +
				  SUM_WORDS(at, 6) + inner);
			/* RFC 768: a computed 0 is sent as all ones. */
			udp->check = c ? c : 0xffff;
		}
	} else if (extra == 4 || extra == 8) {
		at[0] = extra == 8 ? 0x80 : 0; /* C: a checksum follows */
		at[1] = 0;
		at[2] = ethertype >> 8;
		at[3] = ethertype & 0xff;
		if (extra == 8) {
			__u16 *check = (__u16 *)(at + 4);

			check[0] = 0;
			check[1] = 0; /* reserved */
			check[0] = ~fold(SUM_WORDS(at, 4) + inner);
		}
	}
}

static __always_inline int encapsulate_n(struct xdp_md *ctx, __u32 l2_len, __u32 ip_len,
					 const struct conn_entry *e, const int over, __u32 inner)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct iphdr *inner_ip = data + l2_len;
	struct iphdr *outer;
	__u16 df, id;
	__u8 tos;

	if ((void *)(inner_ip + 1) > data_end)
		return -1;
	tos = inner_ip->tos;
	df = bpf_ntohs(inner_ip->frag_off) & IP_DF_;
	/* As the kernel's ip_select_ident: 0 when DF is set. */
	id = df ? 0 : bpf_ntohs(inner_ip->id);
	if (open_room(ctx, l2_len, ip_len, over, 20))
		return -1;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	outer = data + l2_len;
	if ((void *)outer + over > data_end)
		return -1; /* cannot happen: checked above */
	outer->version = 4;
	outer->ihl = 5;
	outer->tos = tos;
	outer->tot_len = bpf_htons(ip_len + over);
	outer->id = bpf_htons(id);
	outer->frag_off = bpf_htons(df);
	outer->ttl = TUNNEL_TTL;
	outer->protocol = over == 20 + 12			? IPPROTO_UDP :
			  over == 20 + 4 || over == 20 + 8 ? IPPROTO_GRE_ :
							     IPPROTO_IPIP_;
	outer->check = 0;
	outer->saddr = e->tun.src;
	outer->daddr = e->tun.dst;
	outer->check = (__u16)~fold(SUM_WORDS(outer, 10));
	write_encap((__u8 *)(outer + 1), e, ip_len, over - 20, IPPROTO_IPIP_, ETH_P_IP,
		    SUM_WORDS(&outer->saddr, 4), inner);
	return 0;
}

/* The tunnel of `e`, each kind with its own constant head room. */
static __always_inline int encapsulate(struct xdp_md *ctx, __u32 l2_len, __u32 ip_len,
				       const struct conn_entry *e, __u32 inner)
{
	switch (e->tun.encap) {
	case ENCAP_IPIP:
		return encapsulate_n(ctx, l2_len, ip_len, e, 20, inner);
	case ENCAP_GUE:
		return encapsulate_n(ctx, l2_len, ip_len, e, 20 + 12, inner);
	case ENCAP_GRE:
		if (e->tun.csum)
			return encapsulate_n(ctx, l2_len, ip_len, e, 20 + 8, inner);
		return encapsulate_n(ctx, l2_len, ip_len, e, 20 + 4, inner);
	default:
		return -1;
	}
}

/*
 * IPv6 in IPv6 (`over` 40), or GUE (40 + 12) or GRE (40 + 4, 40 + 8 with a
 * checksum) over IPv6, between the L2 header and the inner packet, as the
 * engine's fwd/tun.rs writes them: traffic class copied from the inner
 * header, flow label 0, hop limit TUNNEL_TTL.
 */
static __always_inline int encapsulate6_n(struct xdp_md *ctx, __u32 l2_len, __u32 ip_len,
					  const struct conn_entry *e, const __u8 *src,
					  const __u8 *dst, const int over, __u32 inner)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ipv6hdr *inner_ip = data + l2_len;
	struct ipv6hdr *outer;
	__u8 tclass;

	if ((void *)(inner_ip + 1) > data_end)
		return -1;
	tclass = (inner_ip->priority << 4) | (inner_ip->flow_lbl[0] >> 4);
	if (open_room(ctx, l2_len, ip_len, over, 40))
		return -1;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	outer = data + l2_len;
	if ((void *)outer + over > data_end)
		return -1; /* cannot happen: checked above */
	outer->version = 6;
	outer->priority = tclass >> 4;
	outer->flow_lbl[0] = (tclass & 0x0f) << 4;
	outer->flow_lbl[1] = 0;
	outer->flow_lbl[2] = 0;
	outer->payload_len = bpf_htons(ip_len + over - 40);
	outer->nexthdr = over == 40 + 12			 ? IPPROTO_UDP :
			 over == 40 + 4 || over == 40 + 8 ? IPPROTO_GRE_ :
							    IPPROTO_IPV6_;
	outer->hop_limit = TUNNEL_TTL;
	__builtin_memcpy(&outer->saddr, src, 16);
	__builtin_memcpy(&outer->daddr, dst, 16);
	write_encap((__u8 *)(outer + 1), e, ip_len, over - 40, IPPROTO_IPV6_, ETH_P_IPV6,
		    SUM_WORDS(&outer->saddr, 16), inner);
	return 0;
}

/* The IPv6 tunnel of `e`, each kind with its own constant head room. */
static __always_inline int encapsulate6(struct xdp_md *ctx, __u32 l2_len, __u32 ip_len,
					const struct conn_entry *e, const __u8 *src,
					const __u8 *dst, __u32 inner)
{
	switch (e->tun.encap) {
	case ENCAP_IPIP:
		return encapsulate6_n(ctx, l2_len, ip_len, e, src, dst, 40, inner);
	case ENCAP_GUE:
		return encapsulate6_n(ctx, l2_len, ip_len, e, src, dst, 40 + 12, inner);
	case ENCAP_GRE:
		if (e->tun.csum)
			return encapsulate6_n(ctx, l2_len, ip_len, e, src, dst, 40 + 8, inner);
		return encapsulate6_n(ctx, l2_len, ip_len, e, src, dst, 40 + 4, inner);
	default:
		return -1;
	}
}

/* Result of lookup_conn(). */
enum conn_lookup {
	CONN_MISS = 0,
	CONN_HIT = 1,
	/* The entry is being rewritten: the engine decides this frame. */
	CONN_BUSY = 2,
};

/*
 * A found entry: a consistent copy, and where the program stamps its
 * last_seen (racing a rewrite there is harmless: the writer stamps too).
 */
struct conn_found {
	struct conn_entry e;
	__u64 *last_seen;
	/* IPv6 only: conn_entry6's tail. */
	__u8 src6[16];
	__u8 dst6[16];
	__be16 sport6;
};

/*
 * 0, computed at run time from `v`: a load through `p + zero_after(v)` is
 * ordered after the load of `v` on every CPU (an address dependency), where
 * a compiler barrier alone would order it only on x86. The clobber is that
 * compiler barrier: no load is moved or repeated across it.
 */
static __always_inline __u64 zero_after(__u64 v)
{
	asm volatile("%[v] &= 0" : [v] "+r"(v) : : "memory");
	return v;
}

/*
 * The set of an IPv4 key: a multiply-xorshift mix of its two words under a
 * per-load seed, so that nobody can aim flows at one set. The datapath's
 * conn_table.rs computes the same function.
 */
static __always_inline __u32 conn_hash4(__u64 w0, __u64 w1)
{
	__u64 h = (w0 ^ conn_hash_seed) * 0x9E3779B97F4A7C15ULL;

	h = (h ^ (h >> 32) ^ w1) * 0xBF58476D1CE4E5B9ULL;
	h = (h ^ (h >> 29)) * 0x94D049BB133111EBULL;
	return (__u32)(h ^ (h >> 32));
}

static __always_inline int copy_found(struct conn_entry *e, struct conn_found *f)
{
	if (!e)
		return CONN_MISS;
	__builtin_memcpy(&f->e, e, sizeof(f->e));
	f->last_seen = &e->last_seen;
	return CONN_HIT;
}

/* The IPv4 entry of `k`: its set in conn_slots4, else the overflow map. */
static __always_inline int lookup_conn4(const struct conn_key4 *k, struct conn_found *f)
{
	__u64 w0, w1, seq, check;
	__u32 set, i, zero = 0, *mask;

	__builtin_memcpy(&w0, k, 8);
	__builtin_memcpy(&w1, (const __u8 *)k + 8, 8);
	mask = bpf_map_lookup_elem(&conn_geometry, &zero);
	if (!mask)
		return copy_found(bpf_map_lookup_elem(&conns4, k), f);
	/*
	 * A mask read while rvsd doubles the sets finds the entry all the
	 * same: rvsd copies it before it publishes the mask and frees the old
	 * copy after.
	 */
	set = conn_hash4(w0, w1) & *(volatile __u32 *)mask;
#pragma unroll
	for (i = 0; i < CONN_WAYS; i++) {
		__u32 idx = set * CONN_WAYS + i;
		struct conn_slot4 *s = bpf_map_lookup_elem(&conn_slots4, &idx);
		__u64 *words;

		if (!s)
			break;
		seq = *(volatile __u64 *)&s->seq;
		s = (void *)s + zero_after(seq);
		if (*(volatile __u64 *)&s->key.w[0] != w0 || *(volatile __u64 *)&s->key.w[1] != w1)
			continue;
		/* A torn key that matches: the writer is at work on this flow. */
		if (seq & 1)
			return CONN_BUSY;
		__builtin_memcpy(&f->e, &s->entry, sizeof(f->e));
		words = (__u64 *)&f->e;
		check = words[0] ^ words[1] ^ words[2] ^ words[3] ^ words[4];
		s = (void *)s + zero_after(check);
		if (*(volatile __u64 *)&s->seq != seq)
			return CONN_BUSY;
		f->last_seen = &s->entry.last_seen;
		return CONN_HIT;
	}
	return copy_found(bpf_map_lookup_elem(&conns4, k), f);
}

/* The connection entry of the frame whose 5-tuple is in `key`, if any. */
static __always_inline int lookup_conn(const struct conn_key *key, struct conn_found *f)
{
	struct conn_key4 k4 = {};

	if (key->family == 6) {
		struct conn_entry6 *e6 = bpf_map_lookup_elem(&conns6, key);

		if (!e6)
			return CONN_MISS;
		__builtin_memcpy(f->src6, e6->src6, 16);
		__builtin_memcpy(f->dst6, e6->dst6, 16);
		f->sport6 = e6->sport6;
		return copy_found(&e6->e, f);
	}
	__builtin_memcpy(&k4.saddr, key->saddr, 4);
	__builtin_memcpy(&k4.daddr, key->daddr, 4);
	k4.sport = key->sport;
	k4.dport = key->dport;
	k4.proto = key->proto;
	return lookup_conn4(&k4, f);
}

/*
 * ICMP errors, as IPVS takes them (ICMPv4 destination unreachable, source
 * quench, time exceeded; every ICMPv6 error): one that quotes a TCP/UDP
 * packet of a tracked connection (its flow reversed is a conns key: the
 * direction the error travels) or is sent to a VIP goes to the engine;
 * everything else (echo, errors about the director's own traffic or about
 * protocols IPVS does not balance) stays with the kernel. `icmp` is the
 * ICMP header, `key` the outer addresses.
 */
static __always_inline int icmp_steer(struct xdp_md *ctx, struct if_counters *cnt, __u32 slot,
				      const struct conn_key *key, void *icmp, void *data_end)
{
	struct conn_key q = {};
	struct conn_found found;
	__be16 *ports;
	__u8 type;

	if (icmp + ICMP_HEADER_LEN > data_end)
		return pass(cnt);
	type = *(__u8 *)icmp;
	if (key->family == 4) {
		struct iphdr *inner = icmp + ICMP_HEADER_LEN;
		__u32 ihl;

		if (type != 3 && type != 4 && type != 11)
			return pass(cnt);
		if ((void *)(inner + 1) > data_end)
			return pass(cnt);
		ihl = inner->ihl * 4;
		if (ihl < sizeof(*inner))
			return pass(cnt);
		q.proto = inner->protocol;
		__builtin_memcpy(q.saddr, &inner->daddr, 4);
		__builtin_memcpy(q.daddr, &inner->saddr, 4);
		ports = (void *)inner + ihl;
	} else {
		struct ipv6hdr *inner = icmp + ICMP_HEADER_LEN;

		if (type < 1 || type > 4)
			return pass(cnt);
		if ((void *)(inner + 1) > data_end)
			return pass(cnt);
		q.proto = inner->nexthdr;
		__builtin_memcpy(q.saddr, &inner->daddr, 16);
		__builtin_memcpy(q.daddr, &inner->saddr, 16);
		ports = (void *)(inner + 1);
	}
	if (q.proto != IPPROTO_TCP && q.proto != IPPROTO_UDP && q.proto != IPPROTO_SCTP_)
		return pass(cnt);
	if ((void *)(ports + 2) > data_end)
		return vip_or_pass(ctx, cnt, slot, key);
	q.family = key->family;
	q.sport = ports[1];
	q.dport = ports[0];
	if (lookup_conn(&q, &found) != CONN_MISS)
		return to_user(ctx, cnt, slot);
	return vip_or_pass(ctx, cnt, slot, key);
}

/*
 * A conns hit on a well-formed frame: forward it or hand it to the engine.
 * `l2_len` is 14, 18 or 22; `ip_len` the IP total length.
 */
/* The transport protocols services use: connections and first packets. */
static __always_inline int l4_tracked(__u8 proto)
{
	return proto == IPPROTO_TCP || proto == IPPROTO_UDP || proto == IPPROTO_SCTP_;
}

/* The SEG_* class of a TCP segment with header flags `flags`; 0 for none. */
static __always_inline __u8 tcp_segment_class(__u8 flags)
{
	if (flags & TCP_RST_)
		return SEG_RST;
	if (flags & TCP_SYN_)
		return SEG_SYN;
	if (flags & TCP_FIN_)
		return SEG_FIN;
	if (flags & TCP_ACK_)
		return SEG_ACK;
	return 0;
}

/*
 * SEG_SCTP_DATA for a chunk type IPVS's SCTP table classes as DATA; 0 for
 * INIT, INIT ACK, ABORT, SHUTDOWN, SHUTDOWN ACK, ERROR, COOKIE ECHO,
 * COOKIE ACK and SHUTDOWN COMPLETE, which change an association's state.
 */
static __always_inline __u8 sctp_chunk_class(__u8 type)
{
	switch (type) {
	case 1: case 2: case 6: case 7: case 8: case 9: case 10: case 11: case 14:
		return 0;
	default:
		return SEG_SCTP_DATA;
	}
}

static __always_inline int forward(struct xdp_md *ctx, struct if_counters *cnt, __u32 slot,
				   const struct conn_found *f, __u32 l2_len, __u8 family, __u8 proto,
				   __u32 ip_len)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	const struct conn_entry *e = &f->e;
	__u8 action = e->action;
	struct next_hop *hop;
	struct dest_counters *dc;
	struct ethhdr *eth;
	__u32 hop_id, egress, dest;
	__u64 now, last;
	void *l3, *l4;
	__u32 inner = 0; /* a tunnel checksum's inner sum (inner_sum()) */
	int tx;

	if (action == ACT_TO_ENGINE || action > ACT_TUNNEL6)
		return to_user(ctx, cnt, slot);
	if (l2_len > 22)
		return to_user(ctx, cnt, slot);
	l3 = data + l2_len;
	if (family == 4) {
		struct iphdr *ip = l3;

		if ((void *)(ip + 1) > data_end)
			return to_user(ctx, cnt, slot);
		/* Options and bad checksums are the engine's. */
		if (ip->ihl != 5 || !ipv4_csum_ok(ip))
			return to_user(ctx, cnt, slot);
		if ((action == ACT_MASQ_OUT || action == ACT_FNAT_OUT) && ip->ttl <= 1)
			return to_user(ctx, cnt, slot);
		if (action == ACT_TUNNEL6)
			return to_user(ctx, cnt, slot);
		if (action == ACT_TUNNEL &&
		    (encap_len(e->tun.encap, e->tun.csum) < 0 ||
		     ip_len + 20 + encap_len(e->tun.encap, e->tun.csum) > e->tun.mtu))
			return to_user(ctx, cnt, slot);
		l4 = l3 + sizeof(struct iphdr);
	} else {
		struct ipv6hdr *ip6 = l3;

		if ((void *)(ip6 + 1) > data_end)
			return to_user(ctx, cnt, slot);
		if (action == ACT_MASQ_OUT && ip6->hop_limit <= 1)
			return to_user(ctx, cnt, slot);
		if (action == ACT_FNAT_OUT && ip6->hop_limit <= 1)
			return to_user(ctx, cnt, slot);
		/* An IPv4 tunnel carries IPv4 only (the engine refuses the rest). */
		if (action == ACT_TUNNEL)
			return to_user(ctx, cnt, slot);
		if (action == ACT_TUNNEL6 &&
		    (encap_len(e->tun.encap, e->tun.csum) < 0 ||
		     ip_len + 40 + encap_len(e->tun.encap, e->tun.csum) > e->tun.mtu))
			return to_user(ctx, cnt, slot);
		l4 = l3 + sizeof(struct ipv6hdr);
	}
	if (proto == IPPROTO_TCP) {
		struct tcphdr *tcp = l4;

		if ((void *)(tcp + 1) > data_end)
			return to_user(ctx, cnt, slot);
		/*
		 * Every TCP state change is made by the engine: only segments of
		 * a class the entry lists pass (a segment without SYN, FIN, ACK
		 * or RST is in none: IPVS moves the connection to CLOSE).
		 */
		if (!(tcp_segment_class(((__u8 *)tcp)[13]) & e->tcp_segments))
			return to_user(ctx, cnt, slot);
	} else if (proto == IPPROTO_UDP) {
		if (l4 + sizeof(struct udphdr) > data_end)
			return to_user(ctx, cnt, slot);
	} else if (proto == IPPROTO_SCTP_) {
		__u8 *chunk = l4 + SCTP_HEADER_LEN;

		/* The first chunk's header, within the IP length. */
		if ((void *)(chunk + 4) > data_end ||
		    ip_len < (__u32)((long)l4 - (long)l3) + SCTP_HEADER_LEN + 4)
			return to_user(ctx, cnt, slot);
		if (!(sctp_chunk_class(chunk[0]) & e->tcp_segments))
			return to_user(ctx, cnt, slot);
	} else {
		return to_user(ctx, cnt, slot);
	}
	if ((action == ACT_TUNNEL || action == ACT_TUNNEL6) && e->tun.csum) {
		__s64 s = inner_sum(l3, l4, data_end, family, proto, ip_len);

		if (s < 0)
			return to_user(ctx, cnt, slot);
		inner = s;
	}

	hop_id = e->next_hop;
	hop = bpf_map_lookup_elem(&next_hops, &hop_id);
	if (!hop || !hop->tx_port)
		return to_user(ctx, cnt, slot);
	egress = hop->ifindex;
	tx = egress == ctx->ingress_ifindex;
	/* Sets the redirect target now; a later to_user() overrides it. */
	if (!tx && bpf_redirect_map(&tx_ports, hop->tx_port - 1, 0) != XDP_REDIRECT)
		return to_user(ctx, cnt, slot);

	/* Every check passed: from here on the frame is rewritten. */
	if (action == ACT_MASQ_IN || action == ACT_MASQ_OUT ||
	    action == ACT_FNAT_IN || action == ACT_FNAT_OUT) {
		int fnat = action == ACT_FNAT_IN || action == ACT_FNAT_OUT;
		int reply = action == ACT_MASQ_OUT || action == ACT_FNAT_OUT;
		__be16 *ports = l4, *check = 0;
		__u8 old_ports[4];

		if ((void *)(ports + 2) > data_end)
			return to_user(ctx, cnt, slot);
		__builtin_memcpy(old_ports, ports, 4);
		/* SCTP's CRC32c is updated below, once the ports are written. */
		if (proto != IPPROTO_SCTP_) {
			check = l4_check_field(proto, l4, data_end);
			if (!check)
				return to_user(ctx, cnt, slot);
		}
		if (family == 4) {
			struct iphdr *ip = l3;
			__u16 c;

			if ((void *)(ip + 1) > data_end)
				return to_user(ctx, cnt, slot);
			c = bpf_ntohs(ip->check);
			/* A routed reply: TTL first, as the engine does. */
			if (reply)
				c = ipv4_ttl_down(ip, c);
			if (fnat) {
				ip->saddr = e->fnat.saddr;
				ip->daddr = e->fnat.daddr;
			} else if (reply) {
				__builtin_memcpy(&ip->saddr, e->addr, 4);
			} else {
				__builtin_memcpy(&ip->daddr, e->addr, 4);
			}
			ip->check = bpf_htons(csum_add_delta(c, e->ip_delta));
			if (fnat)
				ports[0] = e->fnat.sport;
		} else {
			struct ipv6hdr *ip6 = l3;

			if ((void *)(ip6 + 1) > data_end)
				return to_user(ctx, cnt, slot);
			if (reply)
				ip6->hop_limit -= 1;
			if (fnat) {
				__builtin_memcpy(&ip6->saddr, f->src6, 16);
				__builtin_memcpy(&ip6->daddr, e->addr, 16);
				ports[0] = f->sport6;
			} else if (reply) {
				__builtin_memcpy(&ip6->saddr, e->addr, 16);
			} else {
				__builtin_memcpy(&ip6->daddr, e->addr, 16);
			}
		}
		/* NAT rewrites the server's port, FullNAT the destination's. */
		ports[fnat || !reply ? 1 : 0] = e->port;
		if (check) {
			l4_csum_update(proto, check, e->l4_delta);
		} else {
			/* SCTP (a CRC covers the ports, not the addresses). */
			__u8 *p = (__u8 *)ports, delta[4];
			int i;

#pragma unroll
			for (i = 0; i < 4; i++)
				delta[i] = old_ports[i] ^ p[i];
			if (sctp_crc_update(l4, data_end, delta,
					    ip_len - (__u32)((long)l4 - (long)l3)))
				return to_user(ctx, cnt, slot); /* cannot happen: checked above */
		}
	} else if (action == ACT_TUNNEL) {
		if (encapsulate(ctx, l2_len, ip_len, e, inner))
			return to_user(ctx, cnt, slot);
		data = (void *)(long)ctx->data;
		data_end = (void *)(long)ctx->data_end;
	} else if (action == ACT_TUNNEL6) {
		if (encapsulate6(ctx, l2_len, ip_len, e, f->src6, f->dst6, inner))
			return to_user(ctx, cnt, slot);
		data = (void *)(long)ctx->data;
		data_end = (void *)(long)ctx->data_end;
	}

	eth = data;
	if ((void *)(eth + 1) > data_end)
		return to_user(ctx, cnt, slot); /* cannot happen: checked above */
	__builtin_memcpy(eth->h_dest, hop->dst_mac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, hop->src_mac, ETH_ALEN);

	/* IP bytes before encapsulation, as the engine counts them. */
	dest = e->dest;
	dc = bpf_map_lookup_elem(&dest_stats, &dest);
	if (dc) {
		if (action == ACT_MASQ_OUT || action == ACT_FNAT_OUT) {
			dc->out_pkts += 1;
			dc->out_bytes += ip_len;
		} else {
			dc->in_pkts += 1;
			dc->in_bytes += ip_len;
		}
	}
	now = bpf_ktime_get_coarse_ns();
	last = *(volatile __u64 *)f->last_seen;
	if (now > last + LAST_SEEN_SLACK_NS)
		*(volatile __u64 *)f->last_seen = now;

	if (tx) {
		cnt->fast_tx += 1;
		return XDP_TX;
	}
	cnt->fast_redirect += 1;
	return XDP_REDIRECT;
}

static __always_inline int rvs_frame(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct conn_key key = {};
	struct l4_key svc = {};
	struct frag_key4 fk = {};
	struct frag_key6 fk6 = {};
	struct if_counters *cnt;
	struct conn_found found;
	__u32 ifindex = ctx->ingress_ifindex;
	__u32 slot = SPARE_SLOT, l2_len, ip_len, l4_len;
	__u32 *slotp;
	__u16 h_proto;
	__u8 proto;
	int frag = 0, first_frag = 0, ports_ok, valid;
	void *cur, *l4;
	int i;

	if (ifindex < SMALL_IFINDEX) {
		slotp = bpf_map_lookup_elem(&ifslots, &ifindex);
		if (slotp && *slotp && *slotp <= MAX_IFACES)
			slot = *slotp - 1;
	} else {
		slotp = bpf_map_lookup_elem(&ifaces, &ifindex);
		if (slotp && *slotp < MAX_IFACES)
			slot = *slotp;
	}
	cnt = bpf_map_lookup_elem(&if_stats, &slot);
	if (!cnt)
		return XDP_PASS; /* cannot happen: slot <= SPARE_SLOT */

	if ((void *)(eth + 1) > data_end)
		return pass(cnt);
	h_proto = eth->h_proto;
	cur = eth + 1;
	l2_len = sizeof(*eth);
#pragma unroll
	for (i = 0; i < 2; i++) {
		struct vlan { __be16 tci; __be16 proto; } *vh = cur;

		if (h_proto != bpf_htons(ETH_P_8021Q_) && h_proto != bpf_htons(ETH_P_8021AD_))
			break;
		if ((void *)(vh + 1) > data_end)
			return pass(cnt);
		h_proto = vh->proto;
		cur = vh + 1;
		l2_len += sizeof(*vh);
	}

	if (h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = cur;
		__u32 ihl, avail;
		__u16 frag_off;

		if ((void *)(ip + 1) > data_end) {
			/* Not even an IP header: nothing to match. */
			cnt->parse_errors += 1;
			return pass(cnt);
		}
		key.family = 4;
		__builtin_memcpy(key.saddr, &ip->saddr, 4);
		__builtin_memcpy(key.daddr, &ip->daddr, 4);
		ihl = ip->ihl * 4;
		ip_len = bpf_ntohs(ip->tot_len);
		avail = (__u32)((long)data_end - (long)ip);
		/* The engine's ipv4 check_len. */
		if (ip->version != 4 || ihl < sizeof(*ip) || ip_len < ihl || ip_len > avail) {
			cnt->parse_errors += 1;
			return vip_or_pass(ctx, cnt, slot, &key);
		}
		proto = ip->protocol;
		frag_off = bpf_ntohs(ip->frag_off);
		if (proto == IPPROTO_ICMP && !(frag_off & (IP_MF_ | IP_OFFSET_)))
			return icmp_steer(ctx, cnt, slot, &key, (void *)ip + ihl, data_end);
		if (!l4_tracked(proto))
			return pass(cnt);
		if (frag_off & (IP_MF_ | IP_OFFSET_)) {
			/* Only fragments need their datagram's key. */
			fk.saddr = ip->saddr;
			fk.daddr = ip->daddr;
			fk.id = ip->id;
			fk.proto = proto;
		}
		if (frag_off & IP_OFFSET_) {
			/* Later fragment: no ports; its datagram's first fragment decides. */
			if (bpf_map_lookup_elem(&frags4, &fk))
				return to_user(ctx, cnt, slot);
			return vip_or_pass(ctx, cnt, slot, &key);
		}
		if (frag_off & IP_MF_)
			frag = first_frag = 1;
		l4 = (void *)ip + ihl;
		l4_len = ip_len - ihl;
	} else if (h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = cur;
		__u32 avail;

		if ((void *)(ip6 + 1) > data_end) {
			cnt->parse_errors += 1;
			return pass(cnt);
		}
		key.family = 6;
		__builtin_memcpy(key.saddr, &ip6->saddr, 16);
		__builtin_memcpy(key.daddr, &ip6->daddr, 16);
		l4_len = bpf_ntohs(ip6->payload_len);
		ip_len = sizeof(*ip6) + l4_len;
		avail = (__u32)((long)data_end - (long)ip6);
		/* The engine's ipv6 check_len. */
		if (ip6->version != 6 || ip_len > avail) {
			cnt->parse_errors += 1;
			return vip_or_pass(ctx, cnt, slot, &key);
		}
		proto = ip6->nexthdr;
		l4 = ip6 + 1;
		if (proto == NEXTHDR_FRAGMENT_) {
			/* The fragment header right after the fixed one. */
			struct frag6 {
				__u8 nexthdr;
				__u8 reserved;
				__be16 off;
				__be32 id;
			} *fh = l4;
			__u16 off;

			if ((void *)(fh + 1) > data_end || l4_len < sizeof(*fh))
				return vip_or_pass(ctx, cnt, slot, &key);
			proto = fh->nexthdr;
			if (!l4_tracked(proto))
				return pass(cnt);
			__builtin_memcpy(fk6.saddr, &ip6->saddr, 16);
			__builtin_memcpy(fk6.daddr, &ip6->daddr, 16);
			fk6.id = fh->id;
			fk6.proto = proto;
			off = bpf_ntohs(fh->off);
			if (off & 0xfff8) {
				/* Later fragment: its datagram's first fragment decides. */
				if (bpf_map_lookup_elem(&frags6, &fk6))
					return to_user(ctx, cnt, slot);
				return vip_or_pass(ctx, cnt, slot, &key);
			}
			/* A first (or atomic) fragment: the engine's, never forwarded here. */
			frag = first_frag = 1;
			l4 = fh + 1;
			l4_len -= sizeof(*fh);
		} else if (proto == IPPROTO_ICMPV6_) {
			return icmp_steer(ctx, cnt, slot, &key, ip6 + 1, data_end);
		} else if (!l4_tracked(proto)) {
			return pass(cnt);
		}
	} else {
		return pass(cnt);
	}
	key.proto = proto;

	/* Ports, and the engine's tcp / udp / sctp check_len within the IP length. */
	ports_ok = l4 + 4 <= data_end && l4_len >= 4;
	valid = 0;
	if (ports_ok) {
		__be16 *ports = l4;

		key.sport = ports[0];
		key.dport = ports[1];
		if (proto == IPPROTO_UDP) {
			struct udphdr *udp = l4;

			if ((void *)(udp + 1) <= data_end && l4_len >= sizeof(*udp)) {
				__u32 ulen = bpf_ntohs(udp->len);

				valid = ulen >= sizeof(*udp) && ulen <= l4_len;
			}
		} else if (proto == IPPROTO_SCTP_) {
			/* The common header: ports, verification tag, checksum. */
			valid = l4 + SCTP_HEADER_LEN <= data_end && l4_len >= SCTP_HEADER_LEN;
		} else {
			struct tcphdr *tcp = l4;

			if ((void *)(tcp + 1) <= data_end && l4_len >= sizeof(*tcp)) {
				__u32 doff = tcp->doff * 4;

				valid = doff >= sizeof(*tcp) && doff <= l4_len;
			}
		}
	}

	if (frag) {
		/*
		 * Fragments are the engine's (never forwarded here): a first
		 * fragment of a tracked connection, and then its datagram's later
		 * fragments (frags4; IPv4 only).
		 */
		if (first_frag && ports_ok && lookup_conn(&key, &found) != CONN_MISS) {
			__u8 one = 1;

			if (key.family == 4)
				bpf_map_update_elem(&frags4, &fk, &one, BPF_ANY);
			else
				bpf_map_update_elem(&frags6, &fk6, &one, BPF_ANY);
			return to_user(ctx, cnt, slot);
		}
		return vip_or_pass(ctx, cnt, slot, &key);
	}
	if (!valid)
		cnt->parse_errors += 1;
	if (!ports_ok)
		return vip_or_pass(ctx, cnt, slot, &key);

	switch (lookup_conn(&key, &found)) {
	case CONN_HIT:
		if (!valid)
			return to_user(ctx, cnt, slot);
		return forward(ctx, cnt, slot, &found, l2_len, key.family, proto, ip_len);
	case CONN_BUSY:
		return to_user(ctx, cnt, slot);
	}
	if (!valid)
		return vip_or_pass(ctx, cnt, slot, &key);

	/* No connection: a first packet to a service goes to the engine. */
	svc.family = key.family;
	svc.proto = proto;
	svc.port = key.dport;
	__builtin_memcpy(svc.addr, key.daddr, 16);
	if (bpf_map_lookup_elem(&services, &svc))
		return to_user(ctx, cnt, slot);
	/* Port 0: every port of the address (persistent port-0 services,
	 * firewall-mark rules without ports). */
	svc.port = 0;
	if (bpf_map_lookup_elem(&services, &svc))
		return to_user(ctx, cnt, slot);
	return pass(cnt);
}

SEC("xdp")
int rvs_xdp(struct xdp_md *ctx)
{
	return rvs_frame(ctx);
}

/*
 * The same program under a second name, sharing every map. rvsd moves an
 * interface's link to it (and later back) when the interface gains RX
 * queues: an atomic update that makes the driver give the program to the
 * new queues too. veth gives an attached program only to the queues it has
 * at the time, and an update to the program already attached changes
 * nothing.
 */
SEC("xdp")
int rvs_xdp_twin(struct xdp_md *ctx)
{
	return rvs_frame(ctx);
}

char _license[] SEC("license") = "Dual BSD/GPL";
