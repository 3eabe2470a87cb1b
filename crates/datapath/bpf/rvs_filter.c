// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * RVS per-interface XDP filter (XdpFilter, src/filter.rs), kept until rvsd
 * uses XdpDatapath and bpf/rvs_xdp.c. Its only job is to decide which frames go
 * to the user-space workers (AF_XDP) and which stay with the kernel.
 *
 *   - destination (addr, proto, port) is a service          -> xsks[rx queue]
 *   - source (addr, proto, port) is a NAT real server        -> xsks[rx queue]
 *   - destination is a VIP but the L4 header is truncated,
 *     malformed, or the packet is a non-first IPv4 fragment
 *     (or an IPv6 fragment)                                 -> xsks[rx queue]
 *     (user space counts and drops these; the kernel must not answer them)
 *   - everything else (ARP, ping to a VIP, ssh to the director,
 *     the director's own traffic)                            -> XDP_PASS
 *
 * A service packet whose queue has no socket registered is dropped and
 * counted as redirect_failed: passing it would let the kernel answer for the
 * VIP with RST / port unreachable.
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

#define MAX_QUEUES 64
#define MAX_SERVICES 4096
#define MAX_VIPS 1024
#define MAX_NAT_RETURN 65536

#define ETH_P_8021Q_ 0x8100
#define ETH_P_8021AD_ 0x88A8
#define IP_MF_ 0x2000
#define IP_OFFSET_ 0x1FFF
#define NEXTHDR_FRAGMENT_ 44

/* Key of `services` (destination) and `nat_return` (source). */
struct l4_key {
	__u8 family; /* 4 or 6 */
	__u8 proto;  /* IPPROTO_TCP / IPPROTO_UDP */
	__be16 port; /* network order */
	__u8 addr[16]; /* IPv4 in the first 4 bytes, rest zero */
};

/* Key of `vip_addrs`. */
struct addr_key {
	__u8 family;
	__u8 pad[3];
	__u8 addr[16];
};

enum stat_index {
	STAT_REDIRECTED = 0,
	STAT_PASSED = 1,
	STAT_REDIRECT_FAILED = 2,
	STAT_PARSE_ERRORS = 3,
	STAT_MAX = 4,
};

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, MAX_QUEUES);
	__type(key, __u32);
	__type(value, __u32);
} xsks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_SERVICES);
	__type(key, struct l4_key);
	__type(value, __u32);
} services SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_VIPS);
	__type(key, struct addr_key);
	__type(value, __u32);
} vip_addrs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_NAT_RETURN);
	__type(key, struct l4_key);
	__type(value, __u32);
} nat_return SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

static __always_inline void count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &idx);

	if (v)
		*v += 1;
}

static __always_inline int pass(void)
{
	count(STAT_PASSED);
	return XDP_PASS;
}

static __always_inline int redirect(struct xdp_md *ctx)
{
	/* Fallback action XDP_DROP when no socket is registered for the queue. */
	long ret = bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_DROP);

	if (ret == XDP_REDIRECT) {
		count(STAT_REDIRECTED);
		return XDP_REDIRECT;
	}
	count(STAT_REDIRECT_FAILED);
	return XDP_DROP;
}

static __always_inline int is_vip(__u8 family, const void *addr, __u32 len)
{
	struct addr_key k = {};

	k.family = family;
	__builtin_memcpy(k.addr, addr, 16);
	if (len == 4)
		__builtin_memset(&k.addr[4], 0, 12);
	return bpf_map_lookup_elem(&vip_addrs, &k) != NULL;
}

/*
 * Classify the L4 part. `l4` points at the TCP/UDP header, `l4_len` is the
 * length the IP header claims for it. Returns an XDP action.
 */
static __always_inline int classify_l4(struct xdp_md *ctx, void *l4, void *data_end,
				       __u32 l4_len, __u8 family, __u8 proto,
				       const void *saddr, const void *daddr, __u32 alen)
{
	struct l4_key k = {};
	__be16 sport, dport;

	if (proto == IPPROTO_UDP) {
		struct udphdr *udp = l4;

		if ((void *)(udp + 1) > data_end || l4_len < sizeof(*udp))
			goto malformed;
		sport = udp->source;
		dport = udp->dest;
	} else {
		struct tcphdr *tcp = l4;
		__u32 doff;

		if ((void *)(tcp + 1) > data_end || l4_len < sizeof(*tcp))
			goto malformed;
		doff = tcp->doff * 4;
		if (doff < sizeof(*tcp) || doff > l4_len)
			goto malformed;
		sport = tcp->source;
		dport = tcp->dest;
	}

	k.family = family;
	k.proto = proto;
	k.port = dport;
	__builtin_memcpy(k.addr, daddr, 16);
	if (alen == 4)
		__builtin_memset(&k.addr[4], 0, 12);
	if (bpf_map_lookup_elem(&services, &k))
		return redirect(ctx);
	/* Port 0: every port of the address (persistent port-0 services,
	 * firewall-mark rules without ports). */
	k.port = 0;
	if (bpf_map_lookup_elem(&services, &k))
		return redirect(ctx);

	k.port = sport;
	__builtin_memcpy(k.addr, saddr, 16);
	if (alen == 4)
		__builtin_memset(&k.addr[4], 0, 12);
	if (bpf_map_lookup_elem(&nat_return, &k))
		return redirect(ctx);
	/* NAT real servers without a port (they keep the client's port). */
	k.port = 0;
	if (bpf_map_lookup_elem(&nat_return, &k))
		return redirect(ctx);
	return pass();

malformed:
	count(STAT_PARSE_ERRORS);
	if (is_vip(family, daddr, alen))
		return redirect(ctx);
	return pass();
}

SEC("xdp")
int rvs_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	void *cur;
	__u16 h_proto;
	int i;

	if ((void *)(eth + 1) > data_end)
		return pass();
	h_proto = eth->h_proto;
	cur = eth + 1;

#pragma unroll
	for (i = 0; i < 2; i++) {
		struct vlan { __be16 tci; __be16 proto; } *vh = cur;

		if (h_proto != bpf_htons(ETH_P_8021Q_) && h_proto != bpf_htons(ETH_P_8021AD_))
			break;
		if ((void *)(vh + 1) > data_end)
			return pass();
		h_proto = vh->proto;
		cur = vh + 1;
	}

	if (h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = cur;
		/* Addresses copied into 16-byte buffers: the key layout wants them. */
		__u8 saddr[16] = {}, daddr[16] = {};
		__u32 ihl, tot_len;

		if ((void *)(ip + 1) > data_end) {
			/* Not even an IP header: nothing to match. */
			count(STAT_PARSE_ERRORS);
			return pass();
		}
		__builtin_memcpy(saddr, &ip->saddr, 4);
		__builtin_memcpy(daddr, &ip->daddr, 4);
		ihl = ip->ihl * 4;
		tot_len = bpf_ntohs(ip->tot_len);
		if (ip->version != 4 || ihl < sizeof(*ip) || tot_len < ihl)
			goto bad4;
		if (ip->frag_off & bpf_htons(IP_OFFSET_)) {
			/* Non-first fragment: no L4 header to match. */
			if (is_vip(4, daddr, 4))
				return redirect(ctx);
			return pass();
		}
		if (ip->protocol != IPPROTO_TCP && ip->protocol != IPPROTO_UDP)
			return pass();
		if (ihl > 60)
			goto bad4;
		if ((void *)ip + ihl > data_end)
			goto bad4;
		return classify_l4(ctx, (void *)ip + ihl, data_end, tot_len - ihl, 4,
				   ip->protocol, saddr, daddr, 4);
bad4:
		count(STAT_PARSE_ERRORS);
		if (is_vip(4, daddr, 4))
			return redirect(ctx);
		return pass();
	}

	if (h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = cur;
		__u8 nexthdr;

		if ((void *)(ip6 + 1) > data_end) {
			count(STAT_PARSE_ERRORS);
			return pass();
		}
		nexthdr = ip6->nexthdr;
		if (nexthdr == NEXTHDR_FRAGMENT_) {
			if (is_vip(6, &ip6->daddr, 16))
				return redirect(ctx);
			return pass();
		}
		if (nexthdr != IPPROTO_TCP && nexthdr != IPPROTO_UDP)
			return pass();
		return classify_l4(ctx, ip6 + 1, data_end, bpf_ntohs(ip6->payload_len), 6,
				   nexthdr, &ip6->saddr, &ip6->daddr, 16);
	}

	return pass();
}

char _license[] SEC("license") = "Dual BSD/GPL";
