// SPDX-License-Identifier: GPL-2.0
/* passive.bpf.c — RTT of real TCP traffic, measured passively on an interface (ePPing-style).
 *
 *   egress  (tc_passive_out, or tc_passive_acks which also takes pure ACKs): a TCP segment that will be answered — it carries data, SYN or
 *       FIN — with the timestamp option: store (ifindex, flow, TSval) → now, for the flow's
 *       first segment with that TSval only (passive_flows remembers the last TSval stored;
 *       Linux's TSval ticks once per ms, so a burst shares one TSval, and the first segment
 *       of it is the one whose echo measures the RTT).  A SYN without the option:
 *       store (ifindex, flow, seq + 1) → now, for handshake timing.
 *   ingress (tc_passive_in): a segment of the reverse flow echoing TSecr (≠ 0), or a
 *       SYN-ACK acknowledging seq + 1: look the entry up, delete it (only the first echo is a
 *       sample), and add now - then to the interface's aggregate.
 *
 * Rules taken from pping (Kathleen Nichols) and ePPing (xdp-project/bpf-examples/pping):
 * pure ACKs are not timestamped (nothing answers them promptly: their TSval is echoed only by
 * the peer's next data, which would read as RTT); an identifier is stored the first time it is
 * seen and never overwritten; an echo matches once.  A SYN sent again while its entry waits is
 * ambiguous (Karn's algorithm, RFC 6298 §3): the entry is zeroed and gives no sample.
 *
 * The key holds the interface: an echo counts only when it comes back in by the interface its
 * packet left by (a path's RTT); a flow whose replies return by another path gives no sample,
 * and its entries age out of the LRU.
 *
 * Aggregates are per interface and per CPU (passive_rtt): sample count, sum, min, max and a
 * log-linear histogram (passive_common.h).  Nothing is sent to user space per packet.
 *
 * Both programs only look.  They return TC_ACT_UNSPEC, not TC_ACT_OK: in a direct-action
 * cls_bpf chain TC_ACT_OK ends the chain (net/sched/cls_api.c, tcf_classify: a filter's
 * result >= 0 is final), so other filters on the same hook (the counters, steering) would
 * never run after us; TC_ACT_UNSPEC (-1) means "no opinion, next filter", and at the end of
 * the chain the packet continues exactly as with TC_ACT_OK (sch_handle_ingress/egress).
 *
 * Packets that are not TCP over IPv4/IPv6 (optionally behind one 802.1Q/802.1ad tag), IPv4
 * fragments, IPv6 with other extension headers than hop-by-hop/routing/destination options
 * (at most PASSIVE_MAX_IPV6_EXT), and truncated or malformed headers (IHL < 5, data offset
 * < 5, lengths shorter than the headers, options running past the header, headers beyond the
 * first HEADERS_MAX bytes) pass unmeasured: no entry, no sample, verdict unchanged.  Headers
 * not in the skb's linear part are pulled in once (bpf_skb_pull_data), see parse().
 *
 * Time: bpf_ktime_get_ns (CLOCK_MONOTONIC, ns) at the hook, on both sides.
 */
#include <stdbool.h>
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "common.h"
#include "passive_common.h"
#include "passive_structs.h"
#include "passive_maps.h"
#include "passive_abi.h"

/* How far into a packet we read headers: Ethernet, a VLAN tag, IPv6 with up to 138 bytes of
 * extension headers, a 60-byte TCP header.  Also what we pull into the linear part. */
#define HEADERS_MAX 256

/* An all-zero aggregate to create an interface's entry from (too large for the stack). */
static const struct passive_rtt_agg zero_agg;

/* What the parser extracts from one TCP segment. */
struct segment {
	__u8 saddr[16];
	__u8 daddr[16];
	__be16 sport;
	__be16 dport;
	__u32 seq;
	__u32 ack_seq;
	__u32 tsval;
	__u32 tsecr;
	__u32 payload;  /* TCP payload bytes, from the IP length fields */
	bool has_ts;
	bool syn;
	bool ack;
	bool fin;
};

/* The timestamp option among the TCP options at [th + 20, th + doff): 1 found (s->tsval and
 * s->tsecr set), 0 none or malformed options (a length < 2, running past the header), -1 the
 * options run past the skb's linear data. */
static __always_inline int parse_ts_option(struct tcphdr *th, __u32 doff, void *end, struct segment *s)
{
	__u32 off = sizeof(*th);
	__u32 i;

#pragma unroll
	for (i = 0; i < PASSIVE_MAX_TCP_OPTIONS; i++) {
		__u8 *opt, kind, len;

		if (off >= doff || off > TCP_MAX_HEADER)
			return 0;
		opt = (__u8 *)th + off;
		if ((void *)(opt + 1) > end)
			return -1;
		kind = opt[0];
		if (kind == TCPOPT_EOL)
			return 0;
		if (kind == TCPOPT_NOP) {
			off += 1;
			continue;
		}
		if ((void *)(opt + 2) > end)
			return -1;
		len = opt[1];
		if (len < 2 || off + len > doff)
			return 0;
		if (kind == TCPOPT_TIMESTAMP) {
			__be32 val, ecr;

			if (len != TCPOLEN_TIMESTAMP)
				return 0;
			if ((void *)(opt + TCPOLEN_TIMESTAMP) > end)
				return -1;
			__builtin_memcpy(&val, opt + 2, 4);
			__builtin_memcpy(&ecr, opt + 6, 4);
			s->tsval = bpf_ntohl(val);
			s->tsecr = bpf_ntohl(ecr);
			return 1;
		}
		off += len;
	}
	return 0;
}

enum parse_result {
	PARSE_OK = 0,
	PARSE_SKIP = 1,  /* not a TCP segment we measure (see the top of this file) */
	PARSE_SHORT = 2, /* a header runs past the skb's linear data */
};

/* Parse Ethernet [VLAN] IPv4|IPv6 TCP into *s.  Inlined twice (see parse()): as a BPF
 * subprogram it cost ~10 ns per packet more in bench_passive; code size does not matter here. */
static __always_inline int parse_segment(struct __sk_buff *skb, struct segment *s)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth;
	struct tcphdr *th;
	__be16 proto;
	__u32 l3, l4, ip_payload, doff;
	int ts;
	__u8 nexthdr;

	eth = data;
	if ((void *)(eth + 1) > end)
		return PARSE_SHORT;
	proto = eth->h_proto;
	l3 = sizeof(*eth);
	if (eth_is_vlan(proto)) {
		struct vlan_tag *tag = data + l3;

		if ((void *)(tag + 1) > end)
			return PARSE_SHORT;
		proto = tag->encapsulated_proto;
		l3 += sizeof(*tag);
	}

	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *iph = data + l3;
		__u32 ihl, tot_len;

		if ((void *)(iph + 1) > end)
			return PARSE_SHORT;
		ihl = iph->ihl * 4;
		tot_len = bpf_ntohs(iph->tot_len);
		if (iph->version != 4 || ihl < sizeof(*iph) || iph->protocol != IPPROTO_TCP)
			return PARSE_SKIP;
		/* A fragment (offset ≠ 0 or more-fragments): no whole TCP header to rely on. */
		if (ipv4_is_fragment(iph))
			return PARSE_SKIP;
		if (tot_len == 0)  /* a GSO packet beyond 64 KiB (BIG TCP) leaves it 0 */
			tot_len = skb->len - l3;
		if (tot_len < ihl)
			return PARSE_SKIP;
		__builtin_memset(s->saddr, 0, 10);
		__builtin_memset(s->daddr, 0, 10);
		s->saddr[10] = s->saddr[11] = 0xff;
		s->daddr[10] = s->daddr[11] = 0xff;
		__builtin_memcpy(&s->saddr[12], &iph->saddr, 4);
		__builtin_memcpy(&s->daddr[12], &iph->daddr, 4);
		l4 = l3 + ihl;
		ip_payload = tot_len - ihl;
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = data + l3;
		__u32 i;

		if ((void *)(ip6 + 1) > end)
			return PARSE_SHORT;
		if (ip6->version != 6)
			return PARSE_SKIP;
		__builtin_memcpy(s->saddr, &ip6->saddr, 16);
		__builtin_memcpy(s->daddr, &ip6->daddr, 16);
		ip_payload = bpf_ntohs(ip6->payload_len);
		if (ip_payload == 0)  /* jumbogram / BIG TCP */
			ip_payload = skb->len - l3 - sizeof(*ip6);
		nexthdr = ip6->nexthdr;
		l4 = l3 + sizeof(*ip6);
#pragma unroll
		for (i = 0; i < PASSIVE_MAX_IPV6_EXT; i++) {
			__u8 *ext;
			__u32 len;

			if (nexthdr != IPPROTO_HOPOPTS && nexthdr != IPPROTO_ROUTING && nexthdr != IPPROTO_DSTOPTS)
				break;
			ext = data + l4;
			if ((void *)(ext + 2) > end)
				return PARSE_SHORT;
			len = ipv6_opt_len(ext[1]);
			if (ip_payload < len)
				return PARSE_SKIP;
			nexthdr = ext[0];
			l4 += len;
			ip_payload -= len;
		}
		if (nexthdr != IPPROTO_TCP)
			return PARSE_SKIP;
	} else {
		return PARSE_SKIP;
	}

	if (l4 > HEADERS_MAX - TCP_MAX_HEADER)  /* also bounds the offset for the verifier */
		return PARSE_SKIP;
	th = data + l4;
	if ((void *)(th + 1) > end)
		return PARSE_SHORT;
	doff = th->doff * 4;
	if (doff < sizeof(*th) || ip_payload < doff)
		return PARSE_SKIP;
	s->sport = th->source;
	s->dport = th->dest;
	s->seq = bpf_ntohl(th->seq);
	s->ack_seq = bpf_ntohl(th->ack_seq);
	s->syn = th->syn;
	s->ack = th->ack;
	s->fin = th->fin;
	s->payload = ip_payload - doff;
	ts = parse_ts_option(th, doff, end, s);
	if (ts < 0)
		return PARSE_SHORT;
	s->has_ts = ts;
	return PARSE_OK;
}

/* parse_segment, and once more after pulling the headers into the linear part when they were
 * not all there (paged skbs from some drivers; TCP's own and veth's skbs have them linear, so
 * the common case never pulls: a pull may copy a cloned skb's head). */
static __always_inline bool parse(struct __sk_buff *skb, struct segment *s)
{
	int r = parse_segment(skb, s);
	__u32 linear = skb->data_end - skb->data;

	if (r == PARSE_SHORT && linear < skb->len) {
		if (bpf_skb_pull_data(skb, skb->len < HEADERS_MAX ? skb->len : HEADERS_MAX))
			return false;
		r = parse_segment(skb, s);
	}
	return r == PARSE_OK;
}

static __always_inline struct passive_rtt_agg *aggregate_of(__u32 ifindex)
{
	struct passive_rtt_agg *agg = bpf_map_lookup_elem(&passive_rtt, &ifindex);

	if (agg)
		return agg;
	/* -EEXIST: another CPU created it since our lookup; either way look it up again.  A full
	 * LRU map evicts the least recently used interface rather than failing. */
	bpf_map_update_elem(&passive_rtt, &ifindex, &zero_agg, BPF_NOEXIST);
	return bpf_map_lookup_elem(&passive_rtt, &ifindex);
}

/* floor(log2(v)) for v > 0, by halving (the BPF target has no count-leading-zeros). */
static __always_inline __u32 log2_u64(__u64 v)
{
	__u32 r = 0, shift;

	shift = (v > 0xFFFFFFFFull) << 5; v >>= shift; r |= shift;
	shift = (v > 0xFFFF) << 4; v >>= shift; r |= shift;
	shift = (v > 0xFF) << 3; v >>= shift; r |= shift;
	shift = (v > 0xF) << 2; v >>= shift; r |= shift;
	shift = (v > 0x3) << 1; v >>= shift; r |= shift;
	r |= (v >> 1);
	return r;
}

/* The log-linear bucket of v ns (formula in passive_common.h). */
static __always_inline __u32 hist_bucket(__u64 v)
{
	__u32 m, bucket;

	if (v < (1u << PASSIVE_HIST_SUB_BITS))
		return v;
	m = log2_u64(v);
	bucket = ((m - PASSIVE_HIST_SUB_BITS + 1) << PASSIVE_HIST_SUB_BITS) |
		 ((v >> (m - PASSIVE_HIST_SUB_BITS)) & ((1u << PASSIVE_HIST_SUB_BITS) - 1));
	if (bucket >= PASSIVE_HIST_BUCKETS)
		bucket = PASSIVE_HIST_BUCKETS - 1;
	return bucket;
}

static __always_inline void add_sample(__u32 ifindex, __u64 rtt_ns, enum passive_id_kind kind)
{
	struct passive_rtt_agg *agg = aggregate_of(ifindex);
	__u32 bucket;

	if (!agg)
		return;
	/* Per-CPU value, programs run with migration disabled: plain read-modify-write. */
	if (agg->samples == 0 || rtt_ns < agg->min_ns)
		agg->min_ns = rtt_ns;
	if (rtt_ns > agg->max_ns)
		agg->max_ns = rtt_ns;
	agg->samples += 1;
	agg->sum_ns += rtt_ns;
	if (kind == PASSIVE_ID_SYN)
		agg->handshake_samples += 1;
	bucket = hist_bucket(rtt_ns);
	if (bucket < PASSIVE_HIST_BUCKETS)  /* always true; says so to the verifier */
		agg->hist[bucket] += 1;
}

/* Store key → now unless the key is there already (the first occurrence stands). */
static __always_inline void record(struct passive_ts_key *key)
{
	__u64 now = bpf_ktime_get_ns();
	struct passive_rtt_agg *agg;
	long err;

	err = bpf_map_update_elem(&passive_timestamps, key, &now, BPF_NOEXIST);
	agg = aggregate_of(key->flow.ifindex);
	if (!agg)
		return;
	if (err == 0)
		agg->recorded += 1;
	else if (err != -17 /* -EEXIST: stored before (or by another CPU just now): fine */)
		agg->record_failed += 1;
}

/* A segment with a TSval: store it if it is the flow's first segment with this TSval.  One
 * lookup decides for the common case (the TSval of the previous segment: Linux's TSval ticks
 * once per ms); ePPing keeps the same per-flow "last identifier" (pping_kern.c). */
static __always_inline void record_tsval(struct passive_ts_key *key)
{
	struct passive_flow_state *state = bpf_map_lookup_elem(&passive_flows, &key->flow);

	if (state) {
		if (state->has_tsval && state->last_tsval == key->identifier)
			return;
		state->last_tsval = key->identifier;  /* racing CPUs write the same flow: benign */
		state->has_tsval = 1;
	} else {
		struct passive_flow_state first = { .last_tsval = key->identifier, .has_tsval = 1 };

		bpf_map_update_elem(&passive_flows, &key->flow, &first, BPF_ANY);
	}
	record(key);
}

/* A SYN without timestamps: store seq + 1; a SYN seen again while its entry waits was
 * retransmitted, and which copy the SYN-ACK answers is unknown (Karn, RFC 6298 §3): the entry
 * is zeroed and that handshake gives no sample. */
static __always_inline void record_syn(struct passive_ts_key *key)
{
	__u64 *seen = bpf_map_lookup_elem(&passive_timestamps, key);

	if (seen) {
		*seen = 0;
		return;
	}
	record(key);
}

static __always_inline void match(struct passive_ts_key *key)
{
	__u64 now = bpf_ktime_get_ns();
	__u64 *seen = bpf_map_lookup_elem(&passive_timestamps, key);
	__u64 then;

	if (!seen)
		return;  /* echoed before (only the first echo counts), evicted, or never ours */
	then = *seen;
	/* Only the CPU whose delete succeeds takes the sample: two echoes on two CPUs may both
	 * have found the entry. */
	if (bpf_map_delete_elem(&passive_timestamps, key) != 0)
		return;
	if (then == 0 || now < then)
		return;  /* ambiguous (retransmitted SYN) */
	add_sample(key->flow.ifindex, now - then, key->kind);
}

/* The egress side; pure_acks is a constant in each program below (the verifier and clang see
 * a fixed value: no run-time flag). */
static __always_inline int passive_out(struct __sk_buff *skb, bool pure_acks)
{
	struct passive_ts_key key = {};
	struct segment s = {};

	if (!parse(skb, &s))
		return TC_ACT_UNSPEC;
	key.flow.ifindex = skb->ifindex;
	__builtin_memcpy(key.flow.saddr, s.saddr, 16);
	__builtin_memcpy(key.flow.daddr, s.daddr, 16);
	key.flow.sport = s.sport;
	key.flow.dport = s.dport;
	if (s.has_ts) {
		if (!pure_acks && s.payload == 0 && !s.syn && !s.fin)
			return TC_ACT_UNSPEC;  /* pure ACK: nothing echoes it promptly */
		key.kind = PASSIVE_ID_TSVAL;
		key.identifier = s.tsval;
		record_tsval(&key);
	} else if (s.syn && !s.ack) {
		key.kind = PASSIVE_ID_SYN;
		key.identifier = s.seq + 1;
		record_syn(&key);
	}
	return TC_ACT_UNSPEC;
}

/* Egress, the ePPing rules: pure ACKs are not timestamped. */
SEC("tc")
int tc_passive_out(struct __sk_buff *skb)
{
	return passive_out(skb, false);
}

/* Egress, pure ACKs timestamped too: on a router, a download's only packets leaving by the
 * path are the receiver's ACKs, and the sender echoes their TSval in its next data segment —
 * at once while the download is limited by its congestion window, late (an RTT too long)
 * while the sender is idle or application-limited.  For paths that mostly carry downloads. */
SEC("tc")
int tc_passive_acks(struct __sk_buff *skb)
{
	return passive_out(skb, true);
}

SEC("tc")
int tc_passive_in(struct __sk_buff *skb)
{
	struct passive_ts_key key = {};
	struct segment s = {};

	if (!parse(skb, &s))
		return TC_ACT_UNSPEC;
	/* The reverse flow's key: as the egress packet had it. */
	key.flow.ifindex = skb->ifindex;
	__builtin_memcpy(key.flow.saddr, s.daddr, 16);
	__builtin_memcpy(key.flow.daddr, s.saddr, 16);
	key.flow.sport = s.dport;
	key.flow.dport = s.sport;
	if (s.has_ts) {
		if (s.tsecr == 0)
			return TC_ACT_UNSPEC;  /* nothing echoed (a SYN, RFC 7323 §3.2) */
		key.kind = PASSIVE_ID_TSVAL;
		key.identifier = s.tsecr;
		match(&key);
	} else if (s.syn && s.ack) {
		key.kind = PASSIVE_ID_SYN;
		key.identifier = s.ack_seq;
		match(&key);
	}
	return TC_ACT_UNSPEC;
}

char LICENSE[] SEC("license") = "GPL";
