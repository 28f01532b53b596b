// SPDX-License-Identifier: GPL-2.0
/* guard.bpf.c — the XDP guard: drops hostile traffic before the stack sees it.
 *
 * Checks, in this order; the first that decides gives the verdict (enum guard_verdict):
 *   1. not IPv4/IPv6 after at most GUARD_MAX_VLAN_TAGS 802.1Q/802.1ad tags (ARP, LLDP, a
 *      third tag, a frame shorter than Ethernet) ............................ PASS_NOT_IP
 *      a VLAN tag cut short, or the fixed IP header (20 / 40 bytes) not in the
 *      frame, so the source cannot be read ..................................... DROP_MALFORMED
 *   2. source in allow_v4/allow_v6 ............................................. PASS_ALLOW
 *      (nothing below can drop an allowed source: not even a malformed packet)
 *   3. source in deny_v4/deny_v6 (config, manual and automatic blocks) ......... DROP_DENY
 *   4. source accounting in `sources` (IPv4 address, IPv6 /64): the auto-block meter
 *      (a heavy-hitter event when the source runs above the threshold), then the
 *      per-source token bucket ................................................. DROP_RATE
 *   5. header sanity ........................................................... DROP_MALFORMED
 *      IPv4: version 4, IHL >= 5, IHL*4 <= total length <= bytes in the frame; a TCP
 *      fragment at offset 1 (the RFC 1858 overlap attack).
 *      IPv6: version 6, 40 + payload length <= bytes in the frame; extension headers
 *      (hop-by-hop, routing, destination options, fragment, AH) each complete and within
 *      the payload, at most GUARD_MAX_EXT_HEADERS of them.
 *      TCP (20 bytes, data offset >= 5, options present) and UDP (8 bytes) headers
 *      complete in an unfragmented packet or a first fragment (RFC 1858 tiny fragments).
 *      Checksums are not verified: the stack does that.
 *   6. port rules, first match in index order .......................... DROP_RULE / PASS_RULE
 *      Non-first fragments carry no ports: they match only rules for any port.
 *   7. TCP to a port protected by SYN cookies, on an interface that has them, and not in
 *      conntrack (guard_syncookie.h): a SYN is answered with a SYN-ACK cookie .. TX_SYNCOOKIE
 *      an ACK with a valid cookie goes on to netfilter's synproxy ............. PASS_COOKIE
 *      anything else (a bad cookie, a stray RST/FIN/SYN-ACK) ................... DROP_COOKIE
 *      (a flow conntrack knows: PASS).  Other TCP SYNs (SYN without ACK) over their
 *      destination's SYN rate .................................................. DROP_SYN
 *   8. ........................................................................ PASS
 * Lengths are the whole frame's (all buffers of a multi-buffer frame); headers must lie in the
 * first buffer, else they count as truncated.  Ethernet padding after the IP packet is ignored.  Non-first fragments get steps 1-4 and
 * 6 (port-less) and then pass: the stack reassembles them and a first fragment that was
 * dropped makes the datagram incomplete anyway.
 *
 * Concurrency: `sources` and `syn_dests` entries are shared by all CPUs; their token buckets
 * are GCRA states (one u64 "theoretical arrival time" each) updated by compare-and-swap, so
 * no two CPUs can spend the same token; after GUARD_CAS_TRIES lost races on one bucket the
 * packet counts as over the rate or SYN limit (but not as over the auto-block threshold).  Counters are per CPU (plain adds: BPF programs run with
 * migration disabled) except the per-source/per-destination counters (atomic adds).
 * Arithmetic is integer nanoseconds throughout; user space computes the intervals.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "common.h"
#include "guard_common.h"
#include "guard_structs.h"
#include "guard_maps.h"
#include "guard_abi.h"

/* Offsets beyond any XDP frame (one buffer is at most a page); the bound lets the verifier
 * accept variable packet offsets and never decides a verdict. */
#define GUARD_MAX_OFFSET 0x3fff

/* What the parser learnt about a packet. */
struct packet {
	__u32 family;
	__u8 proto;      /* L4 protocol (after IPv6 extension headers) */
	__u8 has_ports;  /* TCP/UDP header parsed (not a non-first fragment) */
	__u8 syn;        /* TCP SYN without ACK */
	__u8 malformed;  /* found by step 5 */
	__u8 tcp_flags;  /* TCP: byte 13 of the header (CWR ECE URG ACK PSH RST SYN FIN) */
	__u16 sport, dport;
	__u32 l3, l4;    /* offsets of the IP and L4 headers in the frame */
	__u32 tcp_len;   /* TCP: header length with options (data offset * 4) */
	__u8 src[16], dst[16];
};

#include "guard_syncookie.h" /* step 7 on protected ports; needs struct packet */

static __always_inline __u64 clock_now(const struct guard_settings *s)
{
	return s->clock_ns ? s->clock_ns : bpf_ktime_get_ns();
}

/* GCRA (the token bucket in ns): conforming iff tat - now <= tolerance; a conforming packet
 * moves tat to max(tat, now) + interval.  Returns 1 if the packet conforms (and was charged),
 * and `if_contended` when GUARD_CAS_TRIES compare-and-swaps were all lost to other CPUs. */
static __always_inline int gcra(__u64 *tat, __u64 now, __u64 interval, __u64 tolerance, int if_contended)
{
	for (int i = 0; i < GUARD_CAS_TRIES; i++) {
		__u64 old = *(volatile __u64 *)tat;
		__u64 base = old > now ? old : now;

		if (base - now > tolerance)
			return 0;
		if (__sync_val_compare_and_swap(tat, old, base + interval) == old)
			return 1;
	}
	return if_contended;
}

static __always_inline void emit(struct xdp_md *ctx, __u32 kind, __u32 verdict, __u32 rule_id, __u64 now,
				 __u64 len, const struct packet *p, const __u8 *src)
{
	struct guard_event *e = bpf_ringbuf_reserve(&guard_events, sizeof(*e), 0);

	if (!e)
		return; /* ring full: the event is lost, the verdict is not affected */
	e->ts_ns = now;
	e->kind = kind;
	e->verdict = verdict;
	e->rule_id = rule_id;
	e->frame_len = len;
	e->ifindex = ctx->ingress_ifindex;
	e->family = p->family;
	e->proto = p->proto;
	e->pad[0] = e->pad[1] = e->pad[2] = 0;
	e->sport = p->sport;
	e->dport = p->dport;
	__builtin_memcpy(e->src, src, 16);
	__builtin_memcpy(e->dst, p->dst, 16);
	bpf_ringbuf_submit(e, 0);
}

/* The drops are the verdicts from GUARD_FIRST_DROP on (guard_common.h). */
static __always_inline int verdict_drops(__u32 verdict)
{
	return verdict >= GUARD_FIRST_DROP;
}

static __always_inline int finish(struct xdp_md *ctx, const struct guard_settings *s, __u32 verdict,
				  __u32 rule_id, __u64 now, __u64 len, const struct packet *p)
{
	int drop = verdict_drops(verdict);

	counter_add(&verdict_counters, verdict, len);
	if (rule_id)
		counter_add(&rule_counters, rule_id, len);
	if (drop && s->sample_every) {
		__u32 zero = 0;
		__u32 *seen = bpf_map_lookup_elem(&drop_sampler, &zero);

		if (seen && ++*seen >= s->sample_every) {
			*seen = 0;
			emit(ctx, GUARD_EVENT_DROP, verdict, rule_id, now ? now : clock_now(s), len, p, p->src);
		}
	}
	if (verdict == GUARD_TX_SYNCOOKIE)
		return XDP_TX;
	return drop ? XDP_DROP : XDP_PASS;
}

/* 1 when the source is in the trie (its rule id in *rule_id), 0 when it is not. */
static __always_inline int lpm_match(void *v4, void *v6, const struct packet *p, __u32 *rule_id)
{
	struct cidr_rule *r;

	if (p->family == GUARD_AF_INET) {
		struct lpm_v4_key k = { .prefixlen = 32 };

		__builtin_memcpy(k.addr, p->src, 4);
		r = bpf_map_lookup_elem(v4, &k);
	} else {
		struct lpm_v6_key k = { .prefixlen = 128 };

		__builtin_memcpy(k.addr, p->src, 16);
		r = bpf_map_lookup_elem(v6, &k);
	}
	if (!r)
		return 0;
	*rule_id = r->rule_id;
	return 1;
}

/* Step 4: returns 1 when the source is over its rate limit. */
static __always_inline int source_over_limit(struct xdp_md *ctx, const struct guard_settings *s, __u64 now,
					     __u64 len, const struct packet *p)
{
	struct addr_key key = { .family = p->family };
	struct source_state *st;

	if (!s->source_interval_ns && !s->meter_interval_ns)
		return 0;
	if (p->family == GUARD_AF_INET)
		__builtin_memcpy(key.addr, p->src, 4);
	else
		__builtin_memcpy(key.addr, p->src, 8); /* the /64 */
	st = bpf_map_lookup_elem(&sources, &key);
	if (!st) {
		struct source_state fresh = {};

		/* BPF_NOEXIST: another CPU may have added it meanwhile (-EEXIST); then use theirs.
		 * An LRU insert evicts the least recently used source when the map is full. */
		bpf_map_update_elem(&sources, &key, &fresh, BPF_NOEXIST);
		st = bpf_map_lookup_elem(&sources, &key);
		if (!st)
			return 0; /* cannot track: no limit rather than a wrong one */
	}
	__sync_fetch_and_add(&st->packets, 1);
	/* Contention counts as conforming for the meter (no auto-block on a lost race: a real
	 * heavy hitter is caught by its next packets) and as over the limit for the limiter. */
	if (s->meter_interval_ns && !gcra(&st->meter_tat_ns, now, s->meter_interval_ns, s->meter_tolerance_ns, 1)) {
		__u64 last = st->reported_ns;

		if (!last || now - last >= GUARD_HH_REPORT_NS) {
			st->reported_ns = now; /* racing CPUs may both report: harmless, user space dedups */
			emit(ctx, GUARD_EVENT_HEAVY_HITTER, GUARD_PASS, 0, now, len, p, key.addr);
		}
	}
	if (s->source_interval_ns && !gcra(&st->limit_tat_ns, now, s->source_interval_ns, s->source_tolerance_ns, 0)) {
		__sync_fetch_and_add(&st->dropped, 1);
		return 1;
	}
	return 0;
}

/* Step 7: returns 1 when a SYN exceeds its destination's SYN rate. */
static __always_inline int syn_over_limit(const struct guard_settings *s, __u64 now, const struct packet *p)
{
	struct addr_key key = { .family = p->family };
	struct syn_state *st;

	__builtin_memcpy(key.addr, p->dst, 16);
	st = bpf_map_lookup_elem(&syn_dests, &key);
	if (!st) {
		struct syn_state fresh = {};

		bpf_map_update_elem(&syn_dests, &key, &fresh, BPF_NOEXIST);
		st = bpf_map_lookup_elem(&syn_dests, &key);
		if (!st)
			return 0;
	}
	__sync_fetch_and_add(&st->syns, 1);
	if (!gcra(&st->tat_ns, now, s->syn_interval_ns, s->syn_tolerance_ns, 0)) {
		__sync_fetch_and_add(&st->dropped, 1);
		return 1;
	}
	return 0;
}

/* Parses the L4 header at l4 (bounded by l4_end, an offset from data). */
static __always_inline void parse_l4(void *data, void *data_end, __u32 l4, __u32 l4_end, struct packet *p)
{
	if (l4 > GUARD_MAX_OFFSET) {
		p->malformed = 1;
		return;
	}
	if (p->proto == IPPROTO_TCP) {
		struct tcphdr *th = data + l4;

		if ((void *)(th + 1) > data_end || l4 + sizeof(*th) > l4_end || th->doff < 5 ||
		    l4 + th->doff * 4 > l4_end) {
			p->malformed = 1;
			return;
		}
		p->sport = bpf_ntohs(th->source);
		p->dport = bpf_ntohs(th->dest);
		p->has_ports = 1;
		p->syn = th->syn && !th->ack;
		p->tcp_flags = ((__u8 *)th)[13];
		p->l4 = l4;
		p->tcp_len = th->doff * 4;
	} else if (p->proto == IPPROTO_UDP) {
		struct udphdr *uh = data + l4;

		if ((void *)(uh + 1) > data_end || l4 + sizeof(*uh) > l4_end) {
			p->malformed = 1;
			return;
		}
		p->sport = bpf_ntohs(uh->source);
		p->dport = bpf_ntohs(uh->dest);
		p->has_ports = 1;
	}
}

static __always_inline void check_ipv4(void *data, void *data_end, __u32 l3, __u32 frame_len, struct packet *p)
{
	struct iphdr *ip = data + l3;
	__u32 avail = frame_len - l3;
	__u32 hlen, total, frag;

	if ((void *)(ip + 1) > data_end)
		return; /* cannot happen: checked before */
	hlen = ip->ihl * 4;
	total = bpf_ntohs(ip->tot_len);
	if (ip->version != 4 || ip->ihl < 5 || total < hlen || total > avail) {
		p->malformed = 1;
		return;
	}
	frag = bpf_ntohs(ip->frag_off) & IP_OFFSET; /* offset in 8-byte units (RFC 791) */
	if (frag) {
		if (p->proto == IPPROTO_TCP && frag == 1)
			p->malformed = 1; /* RFC 1858 §4: would overwrite the TCP flags */
		return; /* non-first fragment: no L4 header */
	}
	parse_l4(data, data_end, l3 + hlen, l3 + total, p);
}

static __always_inline void check_ipv6(void *data, void *data_end, __u32 l3, __u32 frame_len, struct packet *p)
{
	struct ipv6hdr *ip6 = data + l3;
	__u32 avail = frame_len - l3;
	__u32 end, off;
	__u8 next;
	int i;

	if ((void *)(ip6 + 1) > data_end)
		return;
	end = sizeof(*ip6) + bpf_ntohs(ip6->payload_len);
	if (ip6->version != 6 || end > avail) {
		p->malformed = 1;
		return;
	}
	end += l3;
	off = l3 + sizeof(*ip6);
	next = ip6->nexthdr;
	for (i = 0; i < GUARD_MAX_EXT_HEADERS; i++) {
		__u8 *h;
		__u32 hlen;

		if (next != IPPROTO_HOPOPTS && next != IPPROTO_ROUTING && next != IPPROTO_DSTOPTS &&
		    next != IPPROTO_FRAGMENT && next != IPPROTO_AH)
			break;
		if (off > GUARD_MAX_OFFSET) {
			p->malformed = 1;
			return;
		}
		h = data + off;
		if ((void *)(h + 8) > data_end || off + 8 > end) {
			p->malformed = 1;
			return;
		}
		if (next == IPPROTO_FRAGMENT) {
			/* RFC 8200 §4.5: offset in the upper 13 bits of bytes 2-3 */
			__u16 frag = ((__u16)h[2] << 8 | h[3]) >> 3;

			next = h[0];
			off += 8;
			if (frag) {
				p->proto = next;
				return; /* non-first fragment: nothing after this header is here */
			}
			continue;
		}
		hlen = ipv6_ext_len(next, h[1]);
		next = h[0];
		off += hlen;
		if (off > end) {
			p->malformed = 1;
			return;
		}
	}
	if (next == IPPROTO_HOPOPTS || next == IPPROTO_ROUTING || next == IPPROTO_DSTOPTS ||
	    next == IPPROTO_FRAGMENT || next == IPPROTO_AH) {
		p->malformed = 1; /* more extension headers than GUARD_MAX_EXT_HEADERS */
		return;
	}
	p->proto = next;
	parse_l4(data, data_end, off, end, p);
}

static __always_inline int port_rule_matches(const struct port_rule *r, const struct packet *p)
{
	if (r->proto && r->proto != p->proto)
		return 0;
	if (!p->has_ports)
		return r->sport_min == 0 && r->sport_max == 0xffff && r->dport_min == 0 && r->dport_max == 0xffff;
	return p->sport >= r->sport_min && p->sport <= r->sport_max && p->dport >= r->dport_min &&
	       p->dport <= r->dport_max;
}

/* "xdp.frags" (BPF_F_XDP_HAS_FRAGS): the program copes with multi-buffer frames, so veth keeps
 * GSO on its peer and a client's TCP super-packets are not cut to the MTU (veth_set_xdp_features);
 * headers are read from the first buffer, lengths are the whole frame's. */
SEC("xdp.frags")
int xdp_guard(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u64 len = bpf_xdp_get_buff_len(ctx); /* all buffers; data_end - data is the first one */
	struct packet p = {};
	struct guard_settings *s;
	struct ethhdr *eth = data;
	__u32 zero = 0, rule_id = 0, l3 = sizeof(*eth);
	__u16 ethertype;
	__u64 now = 0; /* read only once a rate needs it: steps 1-3 drop floods without the clock */
	int i, verdict;

	s = bpf_map_lookup_elem(&guard_settings, &zero);
	if (!s)
		return XDP_PASS; /* an array's entry 0 always exists */
	if ((void *)(eth + 1) > data_end)
		return finish(ctx, s, GUARD_PASS_NOT_IP, 0, now, len, &p);
	ethertype = eth->h_proto;
	for (i = 0; i < GUARD_MAX_VLAN_TAGS; i++) {
		struct vlan_tag *tag = data + l3;

		if (!eth_is_vlan(ethertype))
			break;
		if ((void *)(tag + 1) > data_end)
			return finish(ctx, s, GUARD_DROP_MALFORMED, 0, now, len, &p);
		ethertype = tag->encapsulated_proto;
		l3 += sizeof(*tag);
	}

	/* Step 1: the fixed IP header, so that the source can be read. */
	if (ethertype == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = data + l3;

		if ((void *)(ip + 1) > data_end)
			return finish(ctx, s, GUARD_DROP_MALFORMED, 0, now, len, &p);
		p.family = GUARD_AF_INET;
		p.proto = ip->protocol;
		__builtin_memcpy(p.src, &ip->saddr, 4);
		__builtin_memcpy(p.dst, &ip->daddr, 4);
	} else if (ethertype == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = data + l3;

		if ((void *)(ip6 + 1) > data_end)
			return finish(ctx, s, GUARD_DROP_MALFORMED, 0, now, len, &p);
		p.family = GUARD_AF_INET6;
		p.proto = ip6->nexthdr;
		__builtin_memcpy(p.src, &ip6->saddr, 16);
		__builtin_memcpy(p.dst, &ip6->daddr, 16);
	} else {
		return finish(ctx, s, GUARD_PASS_NOT_IP, 0, now, len, &p);
	}

	/* Steps 2 and 3. */
	if (lpm_match(&allow_v4, &allow_v6, &p, &rule_id))
		return finish(ctx, s, GUARD_PASS_ALLOW, rule_id, now, len, &p);
	if (lpm_match(&deny_v4, &deny_v6, &p, &rule_id))
		return finish(ctx, s, GUARD_DROP_DENY, rule_id, now, len, &p);
	now = clock_now(s);

	/* Step 5's parse comes first so that drop events carry ports; its verdict waits. */
	p.l3 = l3;
	if (p.family == GUARD_AF_INET)
		check_ipv4(data, data_end, l3, len, &p);
	else
		check_ipv6(data, data_end, l3, len, &p);
	if (p.malformed) {
		p.has_ports = 0;
		p.sport = p.dport = 0;
	}

	/* Step 4. */
	if (source_over_limit(ctx, s, now, len, &p))
		return finish(ctx, s, GUARD_DROP_RATE, 0, now, len, &p);
	/* Step 5. */
	if (p.malformed)
		return finish(ctx, s, GUARD_DROP_MALFORMED, 0, now, len, &p);

	/* Step 6. */
	for (i = 0; i < GUARD_MAX_PORT_RULES; i++) {
		__u32 index = i;
		struct port_rule *r;

		if (index >= s->port_rule_count)
			break;
		r = bpf_map_lookup_elem(&port_rules, &index);
		if (!r)
			break;
		if (port_rule_matches(r, &p))
			return finish(ctx, s, r->action == GUARD_ACTION_PASS ? GUARD_PASS_RULE : GUARD_DROP_RULE,
				      r->rule_id, now, len, &p);
	}

	/* Step 7. */
	verdict = syncookie_verdict(ctx, s, &p, now);
	if (verdict != GUARD_VERDICT_COUNT)
		return finish(ctx, s, verdict, 0, now, len, &p);
	if (p.syn && s->syn_interval_ns && syn_over_limit(s, now, &p))
		return finish(ctx, s, GUARD_DROP_SYN, 0, now, len, &p);

	return finish(ctx, s, GUARD_PASS, 0, now, len, &p);
}

char LICENSE[] SEC("license") = "GPL";
