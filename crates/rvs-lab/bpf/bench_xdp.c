// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The two ends of `rvs-lab bench`'s packet loads, outside the path measured.
 *
 * rvs_lab_gen — the generator. Run with BPF_PROG_TEST_RUN and
 *   BPF_F_TEST_XDP_LIVE_FRAMES on the router's `rt-dir`: every run writes
 *   one whole UDP frame (the template in `gen_config`) and returns XDP_TX,
 *   which the kernel turns into a redirect out of `rt-dir`, i.e. straight
 *   into the director's `front` RX ring. No socket, no routing, no
 *   checksum: the generator costs far less per frame than any director.
 *   Live frames are recycled pages that the path may have changed (TTL,
 *   NAT), so the whole header is rewritten every time, then the UDP source
 *   port is set to base + (n mod flows), n counting this CPU's frames.
 *   With interval_ns set it sends at most one frame per interval and drops
 *   the runs in between (a paced warm-up).
 *
 * rvs_lab_sink — the sink. Attached to the router's `p-dir` (the peer of
 *   the director's `back`): counts and drops what the director delivers for
 *   the bench's UDP service — UDP to SINK_PORT, bare or inside IPIP (TUN
 *   mode) — and passes everything else (ARP, HTTP, health checks) to the
 *   bridge as before.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

/* Frame the generator writes: 60 bytes (64 on the wire with the FCS). */
#define FRAME_LEN 60
#define UDP_OFF (sizeof(struct ethhdr) + sizeof(struct iphdr))
/* The bench's UDP service port (discard). */
#define SINK_PORT 9

struct gen_config {
	__u64 interval_ns; /* 0: as fast as possible; else at most one frame per interval */
	__u32 flows;       /* >= 1 */
	__u16 base_port;   /* host order */
	__u16 pad;
	__u8 frame[64];    /* the first FRAME_LEN bytes are the frame */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct gen_config);
} gen_config SEC(".maps");

struct gen_state {
	__u64 sent;    /* frames handed to the kernel for transmission */
	__u64 next_ns; /* pacing: no frame before this time */
};

/* Per CPU: every generator thread of a CPU shares it (a program run is not
 * preempted, so the updates do not interleave). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct gen_state);
} gen_state SEC(".maps");

/* Frames the sink counted and dropped, per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} sink_count SEC(".maps");

SEC("xdp")
int rvs_lab_gen(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 zero = 0;

	if (data + FRAME_LEN > data_end)
		return XDP_ABORTED;
	struct gen_config *cfg = bpf_map_lookup_elem(&gen_config, &zero);
	struct gen_state *st = bpf_map_lookup_elem(&gen_state, &zero);
	if (!cfg || !st)
		return XDP_ABORTED;
	if (cfg->interval_ns) {
		/* Paced (the warm-up): frames before their time are dropped here,
		 * which costs the generator's CPU only. */
		__u64 now = bpf_ktime_get_ns();
		if (now < st->next_ns)
			return XDP_DROP;
		st->next_ns = now + cfg->interval_ns;
	}
	__builtin_memcpy(data, cfg->frame, FRAME_LEN);
	__u32 flows = cfg->flows ? cfg->flows : 1;
	__u64 n = st->sent;
	st->sent = n + 1;
	struct udphdr *udp = data + UDP_OFF;
	udp->source = bpf_htons((__u16)(cfg->base_port + (__u32)(n % flows)));
	return XDP_TX;
}

/* Whether the IPv4 packet at `ip` is UDP to SINK_PORT. */
static __always_inline int udp_to_sink(struct iphdr *ip, void *data_end)
{
	if ((void *)(ip + 1) > data_end || ip->protocol != IPPROTO_UDP)
		return 0;
	struct udphdr *udp = (void *)ip + ip->ihl * 4;
	if (ip->ihl < 5 || (void *)(udp + 1) > data_end)
		return 0;
	return udp->dest == bpf_htons(SINK_PORT);
}

SEC("xdp")
int rvs_lab_sink(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	__u32 zero = 0;

	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	struct iphdr *ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end)
		return XDP_PASS;
	int hit;
	if (ip->protocol == IPPROTO_IPIP) {
		if (ip->ihl < 5)
			return XDP_PASS;
		struct iphdr *inner = (void *)ip + ip->ihl * 4;
		hit = udp_to_sink(inner, data_end);
	} else {
		hit = udp_to_sink(ip, data_end);
	}
	if (!hit)
		return XDP_PASS;
	__u64 *count = bpf_map_lookup_elem(&sink_count, &zero);
	if (count)
		*count += 1;
	return XDP_DROP;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
