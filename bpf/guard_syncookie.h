/* guard_syncookie.h — step 7 of the guard on a protected port: SYN cookies in XDP in front of
 * netfilter's synproxy.  Included once, by guard.bpf.c, after its struct packet.
 *
 * The pattern is the kernel's XDP synproxy (tools/testing/selftests/bpf/progs/
 * xdp_synproxy_kern.c, netdev 0x15 "Accelerating synproxy with XDP"):
 *   - a TCP packet conntrack already knows (a confirmed entry) is none of this step's business;
 *   - a SYN is answered here, from the frame itself turned around: a SYN-ACK whose sequence
 *     number is a SYN cookie (bpf_tcp_raw_gen_syncookie_ipv4/6: the kernel's own secret and
 *     algorithm, __cookie_v4_init_sequence), sent back out of the interface (XDP_TX); no state
 *     anywhere, so a spoofed flood costs one rewritten frame per SYN;
 *   - the client's ACK is checked here (bpf_tcp_raw_check_syncookie_ipv4/6) and a good one
 *     passes to the stack, where conntrack finds no entry (nf_conntrack_tcp_loose = 0 makes it
 *     INVALID) and the nftables `synproxy` statement checks the same cookie again, opens the
 *     connection to the server, and from then on translates sequence numbers and timestamps;
 *   - anything else to a protected port that conntrack does not know is dropped.
 * The SYN-ACK carries the client's window scale, SACK and ECN in its timestamp the way
 * synproxy decodes them (enum guard_tscookie); without a timestamp it offers the MSS only.
 * Window 0, as synproxy's own SYN-ACK: the client waits for synproxy's window update.
 *
 * Checksums of the SYN are not verified: a sender on a veth or with checksum offload leaves
 * only the pseudo-header sum in the frame (CHECKSUM_PARTIAL), which XDP cannot tell from a
 * corrupt one; a corrupt SYN costs one SYN-ACK and no state.
 */
#ifndef GUARD_SYNCOOKIE_H
#define GUARD_SYNCOOKIE_H

#include <linux/bpf.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/netfilter/nf_conntrack_common.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "common.h"
#include "guard_common.h"
#include "guard_structs.h"
#include "guard_maps.h"

#define TCP_FLAG_FIN_ 0x01
#define TCP_FLAG_SYN_ 0x02
#define TCP_FLAG_RST_ 0x04
#define TCP_FLAG_ACK_ 0x10
#define TCP_FLAG_ECE_ 0x40
#define TCP_FLAG_CWR_ 0x80

#ifndef barrier_var
#define barrier_var(var) asm volatile("" : "+r"(var)) /* as bpf_helpers.h >= 1.2 defines it */
#endif
#define SYNACK_MAX_OPTIONS 20 /* MSS 4 + SACK-permitted/NOPs 2 + timestamp 10 + NOP, window scale 4 */

/* The conntrack kfuncs (net/netfilter/nf_conntrack_bpf.c).  struct nf_conn is the kernel's:
 * preserve_access_index has libbpf relocate `status` against vmlinux BTF (CO-RE).  Weak: on a
 * kernel without them (conntrack a module not loaded, or not built) the object still loads, their
 * addresses are 0 and step 7 leaves the ports alone; user space refuses syn_cookies there
 * (pathsteer.guard.synproxy.conntrack_kfuncs_present). */
struct nf_conn {
	unsigned long status;
} __attribute__((preserve_access_index));

/* struct bpf_ct_opts as of 6.x (16 bytes, NF_BPF_CT_OPTS_SZ): passed with its size. */
struct guard_ct_opts {
	__s32 netns_id;
	__s32 error;
	__u8 l4proto;
	__u8 dir;
	__u16 ct_zone_id;
	__u8 ct_zone_dir;
	__u8 reserved[3];
};

#define GUARD_CT_CURRENT_NETNS (-1) /* BPF_F_CURRENT_NETNS */

extern struct nf_conn *bpf_xdp_ct_lookup(struct xdp_md *xdp_ctx, struct bpf_sock_tuple *bpf_tuple, __u32 tuple__sz,
					 struct guard_ct_opts *opts, __u32 opts__sz) __ksym __weak;
extern void bpf_ct_release(struct nf_conn *ct) __ksym __weak;

/* The reply's TCP header and options, built on the stack. */
struct synack_tcp {
	struct tcphdr th;
	__u8 options[SYNACK_MAX_OPTIONS];
};

/* The pseudo-headers of the TCP checksum (RFC 793 §3.1, RFC 8200 §8.1). */
struct pseudo_v4 {
	__be32 saddr, daddr;
	__u8 zero, proto;
	__be16 len;
};

struct pseudo_v6 {
	__u8 saddr[16], daddr[16];
	__be32 len;
	__u8 zero[3], next;
};

static __always_inline __u16 csum_fold32(__s64 sum)
{
	__u32 s = (__u32)sum;

	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (__u16)~s;
}

/* Is dport protected on the interface the frame came in on? */
static __always_inline int cookie_port(struct xdp_md *ctx, __u16 dport)
{
	__u32 word = dport >> 5, ifindex = ctx->ingress_ifindex;
	__u32 *bits = bpf_map_lookup_elem(&syncookie_ports, &word);

	if (!bits || !(*bits & (1U << (dport & 31))))
		return 0;
	return bpf_map_lookup_elem(&syncookie_ifaces, &ifindex) != 0;
}

/* 1 when conntrack holds a confirmed entry for the packet's flow (either direction). */
static __always_inline int conntrack_knows(struct xdp_md *ctx, const struct packet *p)
{
	struct guard_ct_opts opts = { .netns_id = GUARD_CT_CURRENT_NETNS, .l4proto = IPPROTO_TCP };
	struct bpf_sock_tuple tuple = {};
	struct nf_conn *ct;
	__u32 size;
	int known;

	if (p->family == GUARD_AF_INET) {
		__builtin_memcpy(&tuple.ipv4.saddr, p->src, 4);
		__builtin_memcpy(&tuple.ipv4.daddr, p->dst, 4);
		tuple.ipv4.sport = bpf_htons(p->sport);
		tuple.ipv4.dport = bpf_htons(p->dport);
		size = sizeof(tuple.ipv4);
	} else {
		__builtin_memcpy(tuple.ipv6.saddr, p->src, 16);
		__builtin_memcpy(tuple.ipv6.daddr, p->dst, 16);
		tuple.ipv6.sport = bpf_htons(p->sport);
		tuple.ipv6.dport = bpf_htons(p->dport);
		size = sizeof(tuple.ipv6);
	}
	ct = bpf_xdp_ct_lookup(ctx, &tuple, size, &opts, sizeof(opts));
	if (!ct)
		return 0; /* -ENOENT; any other error: treated as unknown, the cookie decides */
	known = (ct->status & IPS_CONFIRMED) != 0;
	bpf_ct_release(ct);
	return known;
}

/* The client's options that the timestamp cookie keeps. */
struct syn_options {
	__u8 wscale;  /* GUARD_TSCOOKIE_WSCALE_MASK when absent */
	__u8 sack;
	__u8 has_ts;
	__be32 tsval; /* the client's, network order: our tsecr */
};

/* bpf_loop's context: the SYN's TCP header (zero-padded to 64 bytes, so that an index masked
 * with 63 is always in bounds), where the walk is, what it found. */
struct option_walk {
	__u8 tcp[64];
	__u32 off, len;
	struct syn_options o;
};

/* One option per call; 1 stops the walk (end of options, EOL, or malformed: as
 * tcp_parse_options, the rest is ignored).  A callback of bpf_loop rather than a loop: the
 * verifier checks the callback once with the offset unknown, where an open loop over a
 * header of unknown length made it explore every option layout (E2BIG). */
static long syn_option(__u32 index, void *data)
{
	struct option_walk *w = data;
	__u32 off = w->off;
	__u8 kind, len;

	if (off >= w->len || off >= TCP_MAX_HEADER)
		return 1;
	kind = w->tcp[off & 63];
	if (kind == TCPOPT_EOL)
		return 1;
	if (kind == TCPOPT_NOP) {
		w->off = off + 1;
		return 0;
	}
	if (off + 1 >= w->len)
		return 1;
	len = w->tcp[(off + 1) & 63];
	if (len < 2 || off + len > w->len)
		return 1;
	if (kind == TCPOPT_WINDOW && len == 3) {
		__u8 ws = w->tcp[(off + 2) & 63];

		w->o.wscale = ws < GUARD_TSCOOKIE_MAX_WSCALE ? ws : GUARD_TSCOOKIE_MAX_WSCALE;
	} else if (kind == TCPOPT_SACK_PERM && len == 2) {
		w->o.sack = 1;
	} else if (kind == TCPOPT_TIMESTAMP && len == TCPOLEN_TIMESTAMP) {
		w->o.has_ts = 1;
		w->o.tsval = bpf_htonl((__u32)w->tcp[(off + 2) & 63] << 24 | (__u32)w->tcp[(off + 3) & 63] << 16 |
				       (__u32)w->tcp[(off + 4) & 63] << 8 | (__u32)w->tcp[(off + 5) & 63]);
	}
	w->off = off + len;
	return 0;
}

/* The SYN-ACK's options; returns their length (4, 16 or 20 bytes). */
static __always_inline __u32 synack_options(__u8 *opt, const struct guard_settings *s, __u16 mss,
					    const struct syn_options *o, __u8 ecn, __u64 now)
{
	__u32 tsval;

	opt[0] = TCPOPT_MSS;
	opt[1] = 4;
	opt[2] = mss >> 8;
	opt[3] = mss & 0xff;
	if (!o->has_ts)
		return 4; /* no room for the other options' cookie: synproxy offers the MSS only, too */
	/* synproxy_init_timestamp_cookie: the ms clock with its low bits replaced */
	tsval = (__u32)(now / 1000000) & ~((1U << GUARD_TSCOOKIE_BITS) - 1);
	tsval |= o->wscale;
	if (o->sack)
		tsval |= GUARD_TSCOOKIE_SACK;
	if (ecn)
		tsval |= GUARD_TSCOOKIE_ECN;
	opt[4] = o->sack ? TCPOPT_SACK_PERM : TCPOPT_NOP;
	opt[5] = o->sack ? 2 : TCPOPT_NOP;
	opt[6] = TCPOPT_TIMESTAMP;
	opt[7] = TCPOLEN_TIMESTAMP;
	tsval = bpf_htonl(tsval);
	__builtin_memcpy(&opt[8], &tsval, 4);
	__builtin_memcpy(&opt[12], &o->tsval, 4); /* tsecr: the client's tsval */
	if (o->wscale == GUARD_TSCOOKIE_WSCALE_MASK)
		return 16; /* RFC 7323 §2.2: no window scale unless the client sent one */
	opt[16] = TCPOPT_NOP;
	opt[17] = TCPOPT_WINDOW;
	opt[18] = 3;
	opt[19] = s->cookie_wscale;
	return 20;
}

/* Global functions (not static): the verifier checks each once, on its own, rather than once
 * for every way the guard's earlier steps can reach it.
 *
 * Turns the SYN in the frame into the SYN-ACK: the IP header rebuilt without options or
 * extension headers, then the TCP header; the frame cut or grown to fit; MACs swapped.
 * Returns the verdict: TX_SYNCOOKIE, or PASS when the frame could not be resized (the frame is
 * still the SYN: the stack and the server get it as without cookies), DROP_COOKIE when the
 * kernel refused the cookie or a write failed half-way. */
__attribute__((noinline)) int syncookie_synack(struct xdp_md *ctx, const struct guard_settings *s,
					       const struct packet *p, __u64 now)
{
	struct option_walk w = {};
	struct synack_tcp out = {};
	__u64 tcp_len; /* 64-bit: a 32-bit one is compared on a zero-extended copy */
	__u32 ip_len, out_len, l3;
	__u8 macs[12], swapped[12];
	__s64 value, sum;
	__u16 mss;
	__u8 ecn;

	/* cannot happen (parse_l4 checked doff); the checks are for the verifier, one at a time so
	 * that clang does not fold them into one range test on a copy of the register */
	if (!s || !p)
		return GUARD_DROP_COOKIE; /* a global function's pointers may be NULL for the verifier */
	tcp_len = p->tcp_len;
	l3 = p->l3;
	if (tcp_len > TCP_MAX_HEADER || l3 > 64)
		return GUARD_DROP_COOKIE;
	barrier_var(tcp_len);
	if (tcp_len < sizeof(struct tcphdr))
		return GUARD_DROP_COOKIE;
	if (bpf_xdp_load_bytes(ctx, p->l4, w.tcp, tcp_len))
		return GUARD_DROP_COOKIE;
	w.off = sizeof(struct tcphdr);
	w.len = tcp_len;
	w.o.wscale = GUARD_TSCOOKIE_WSCALE_MASK;
	bpf_loop(TCP_MAX_HEADER - sizeof(struct tcphdr), syn_option, &w, 0); /* each call takes >= 1 byte */
	ecn = (p->tcp_flags & (TCP_FLAG_ECE_ | TCP_FLAG_CWR_)) == (TCP_FLAG_ECE_ | TCP_FLAG_CWR_);

	if (p->family == GUARD_AF_INET) {
		struct iphdr ip = { .version = 4, .ihl = 5, .protocol = IPPROTO_TCP };

		__builtin_memcpy(&ip.saddr, p->src, 4);
		__builtin_memcpy(&ip.daddr, p->dst, 4);
		value = bpf_tcp_raw_gen_syncookie_ipv4(&ip, (struct tcphdr *)w.tcp, tcp_len);
		mss = s->cookie_mss4;
		ip_len = sizeof(struct iphdr);
	} else {
		struct ipv6hdr ip6 = { .version = 6, .nexthdr = IPPROTO_TCP };

		__builtin_memcpy(&ip6.saddr, p->src, 16);
		__builtin_memcpy(&ip6.daddr, p->dst, 16);
		value = bpf_tcp_raw_gen_syncookie_ipv6(&ip6, (struct tcphdr *)w.tcp, tcp_len);
		mss = s->cookie_mss6;
		ip_len = sizeof(struct ipv6hdr);
	}
	if (value < 0)
		return GUARD_DROP_COOKIE; /* -EINVAL: header length; -EOPNOTSUPP: no CONFIG_SYN_COOKIES */

	/* The TCP header of the reply. */
	out.th.source = bpf_htons(p->dport);
	out.th.dest = bpf_htons(p->sport);
	out.th.seq = bpf_htonl((__u32)value);
	out.th.ack_seq = bpf_htonl(bpf_ntohl(((struct tcphdr *)w.tcp)->seq) + 1);
	out.th.syn = 1;
	out.th.ack = 1;
	out.th.ece = ecn && w.o.has_ts;
	out_len = sizeof(struct tcphdr) + synack_options(out.options, s, mss, &w.o, ecn, now);
	out.th.doff = out_len / 4;
	/* window 0 (as synproxy_send_client_synack): the client waits for synproxy's update */

	if (p->family == GUARD_AF_INET) {
		struct iphdr ip = { .version = 4, .ihl = 5, .protocol = IPPROTO_TCP };
		struct pseudo_v4 ph = { .proto = IPPROTO_TCP };

		ip.tot_len = bpf_htons(ip_len + out_len);
		ip.frag_off = bpf_htons(0x4000); /* DF */
		ip.ttl = s->cookie_ttl;
		__builtin_memcpy(&ip.saddr, p->dst, 4);
		__builtin_memcpy(&ip.daddr, p->src, 4);
		sum = bpf_csum_diff(0, 0, (__be32 *)&ip, sizeof(ip), 0);
		ip.check = csum_fold32(sum);
		ph.saddr = ip.saddr;
		ph.daddr = ip.daddr;
		ph.len = bpf_htons(out_len);
		sum = bpf_csum_diff(0, 0, (__be32 *)&ph, sizeof(ph), 0);
		/* zero bytes past out_len add nothing to a one's complement sum */
		sum = bpf_csum_diff(0, 0, (__be32 *)&out, sizeof(out), (__u32)sum);
		out.th.check = csum_fold32(sum);
		if (bpf_xdp_adjust_tail(ctx, (int)(l3 + ip_len + out_len) - (int)bpf_xdp_get_buff_len(ctx)))
			return GUARD_PASS;
		if (bpf_xdp_store_bytes(ctx, l3, &ip, sizeof(ip)))
			return GUARD_DROP_COOKIE;
	} else {
		struct ipv6hdr ip6 = { .version = 6, .nexthdr = IPPROTO_TCP };
		struct pseudo_v6 ph = { .next = IPPROTO_TCP };

		ip6.payload_len = bpf_htons(out_len);
		ip6.hop_limit = s->cookie_ttl;
		__builtin_memcpy(&ip6.saddr, p->dst, 16);
		__builtin_memcpy(&ip6.daddr, p->src, 16);
		__builtin_memcpy(ph.saddr, p->dst, 16);
		__builtin_memcpy(ph.daddr, p->src, 16);
		ph.len = bpf_htonl(out_len);
		sum = bpf_csum_diff(0, 0, (__be32 *)&ph, sizeof(ph), 0);
		sum = bpf_csum_diff(0, 0, (__be32 *)&out, sizeof(out), (__u32)sum);
		out.th.check = csum_fold32(sum);
		if (bpf_xdp_adjust_tail(ctx, (int)(l3 + ip_len + out_len) - (int)bpf_xdp_get_buff_len(ctx)))
			return GUARD_PASS;
		if (bpf_xdp_store_bytes(ctx, l3, &ip6, sizeof(ip6)))
			return GUARD_DROP_COOKIE;
	}
	if (out_len > sizeof(out) || bpf_xdp_store_bytes(ctx, l3 + ip_len, &out, out_len))
		return GUARD_DROP_COOKIE;
	if (bpf_xdp_load_bytes(ctx, 0, macs, sizeof(macs)))
		return GUARD_DROP_COOKIE;
	__builtin_memcpy(swapped, macs + 6, 6);
	__builtin_memcpy(swapped + 6, macs, 6);
	if (bpf_xdp_store_bytes(ctx, 0, swapped, sizeof(swapped)))
		return GUARD_DROP_COOKIE;
	return GUARD_TX_SYNCOOKIE;
}

/* The third packet of the handshake: 1 when its acknowledgment number is a valid cookie. */
__attribute__((noinline)) int syncookie_ack_valid(struct xdp_md *ctx, const struct packet *p)
{
	struct tcphdr th;

	if (!p)
		return 0;
	if (bpf_xdp_load_bytes(ctx, p->l4, &th, sizeof(th)))
		return 0;
	if (p->family == GUARD_AF_INET) {
		struct iphdr ip = { .version = 4, .ihl = 5, .protocol = IPPROTO_TCP };

		__builtin_memcpy(&ip.saddr, p->src, 4);
		__builtin_memcpy(&ip.daddr, p->dst, 4);
		return bpf_tcp_raw_check_syncookie_ipv4(&ip, &th) == 0;
	} else {
		struct ipv6hdr ip6 = { .version = 6, .nexthdr = IPPROTO_TCP };

		__builtin_memcpy(&ip6.saddr, p->src, 16);
		__builtin_memcpy(&ip6.daddr, p->dst, 16);
		return bpf_tcp_raw_check_syncookie_ipv6(&ip6, &th) == 0;
	}
}

/* Step 7 on a protected port; GUARD_VERDICT_COUNT when the port is not protected here. */
static __always_inline int syncookie_verdict(struct xdp_md *ctx, const struct guard_settings *s,
					     const struct packet *p, __u64 now)
{
	__u8 flags = p->tcp_flags & (TCP_FLAG_SYN_ | TCP_FLAG_ACK_ | TCP_FLAG_RST_ | TCP_FLAG_FIN_);

	if (!s->cookie_enabled || p->proto != IPPROTO_TCP || !p->has_ports || !cookie_port(ctx, p->dport))
		return GUARD_VERDICT_COUNT;
	/* bpf_ksym_exists() of libbpf >= 1.2: an unresolved weak kfunc's address is 0, and the
	 * verifier drops the calls behind this test as dead code */
	if ((unsigned long)&bpf_xdp_ct_lookup == 0 || (unsigned long)&bpf_ct_release == 0)
		return GUARD_VERDICT_COUNT;
	if (conntrack_knows(ctx, p))
		return GUARD_PASS;
	if (flags == TCP_FLAG_SYN_)
		return syncookie_synack(ctx, s, p, now);
	if (flags == TCP_FLAG_ACK_)
		return syncookie_ack_valid(ctx, p) ? GUARD_PASS_COOKIE : GUARD_DROP_COOKIE;
	return GUARD_DROP_COOKIE;
}

#endif /* GUARD_SYNCOOKIE_H */
