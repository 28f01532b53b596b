// SPDX-License-Identifier: GPL-2.0
/* steer.bpf.c — the bpf data plane: per-prefix path steering at TC ingress.
 *
 *   packet ─► heartbeat fresh? ─► IPv4/IPv6 parse ─► longest prefix match of the destination
 *          ─► group slot ─► flow hash % STEER_RING_SIZE ─► ch_rings[group] ─► path id
 *          ─► path_slots[path id] ─► steer_paths[slot] ─► TTL/hop limit - 1
 *          ─► bpf_redirect_neigh(ifindex, gateway)
 *
 * Longest prefix match (issue 12: a cost that does not grow with the table):
 *   IPv4: routes_v4_24[dst >> 10].entry[(dst >> 8) & 3] — the /24's longest match up to /24,
 *         one inlined array read (DIR-24-8's first level); where the entry is flagged
 *         STEER_V4_DEEPER, the lengths 25..32 present are probed in routes_v4 first.
 *   IPv6: routes_v6, a hash keyed by (length, masked address), probed once per length that
 *         route_lengths names, longest first, while there are at most STEER_V6_HASH_LENGTHS
 *         of them and the table is large; else routes_v6_lpm, an LPM trie of the same prefixes.
 * (The first version's LPM tries cost 130 ns more per packet at 1M prefixes: bench steer.)
 *
 * Every step that does not apply ends in TC_ACT_UNSPEC: the packet goes on to the kernel's own
 * routing, unchanged (steer_stats counts why: enum steer_reason).  TC_ACT_UNSPEC rather than
 * TC_ACT_OK because in a direct-action cls_bpf chain TC_ACT_OK is final (net/sched/cls_api.c,
 * tcf_classify), so filters after ours would not run; at the end of the chain TC_ACT_UNSPEC
 * continues exactly like TC_ACT_OK (sch_handle_ingress).
 *
 * Fail open: user space writes steer_state.heartbeat_ns (CLOCK_MONOTONIC, what
 * bpf_ktime_get_coarse_ns reads) every second or so; once it is older than stale_after_ns (or
 * was never written) nothing is steered (a fresh verdict is kept for the rest of its jiffy).  A daemon killed with -9 leaves us attached: flows keep
 * their paths until stale_after, then the kernel routes them.
 *
 * Flow hash: the 5-tuple of TCP and UDP; addresses only for everything else and for every
 * IPv4/IPv6 fragment (the first one included, so all fragments of a datagram go one way).
 * A murmur3-style mix of the raw words (bpf_steer_abi.flow_hash is the same function in
 * Python, so tests can predict the path of a packet).
 *
 * Not steered: frames not addressed to us (pkt_type != PACKET_HOST), VLAN-tagged frames,
 * multicast/broadcast/link-local/loopback destinations, IPv4 with options and IPv6 with a
 * hop-by-hop header (the kernel must process those), TTL <= 1 (the kernel answers ICMP time
 * exceeded), and packets to the router itself: user space mirrors the local routing table's
 * entries that fall inside steered prefixes into the route maps as STEER_GROUP_LOCAL, so the
 * longest match sends them to the kernel.  (Not bpf_fib_lookup: it answers NOT_FWDED both
 * for a local address and for "no route", so it cannot tell them apart.)
 *
 * Forwarding: bpf_redirect_neigh to the path's gateway of the packet's family; the kernel
 * resolves the neighbour and fills in both MAC addresses (net/core/filter.c,
 * bpf_out_neigh_v4/v6).  TTL is decremented with the incremental checksum of ip_decrease_ttl
 * (include/net/ip.h, RFC 1624) — the header's one's-complement sum is unchanged, so a
 * CHECKSUM_COMPLETE skb->csum stays valid; the IPv6 hop limit has no header checksum, so
 * skb->csum is adjusted with bpf_csum_update (a no-op error unless CHECKSUM_COMPLETE).
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "common.h"
#include "steer_common.h"
#include "steer_structs.h"
#include "steer_maps.h"
#include "steer_abi.h"

/* What the parser hands the decision: the flow's hash input and where the TTL lives. */
struct flow {
	__u32 family;
	__u32 nwords;       /* words used in w[] */
	__u32 w[10];        /* src, dst (1 or 4 words each), ports word, protocol */
	__u8 proto;         /* L4 protocol (0 when hashed by addresses) */
	__u8 ttl;
};

static __always_inline __u32 rotl32(__u32 x, __u32 r)
{
	return (x << r) | (x >> (32 - r));
}

/* One murmur3 block (MurmurHash3_x86_32 body). */
static __always_inline __u32 mix(__u32 h, __u32 k)
{
	k *= 0xcc9e2d51;
	k = rotl32(k, 15);
	k *= 0x1b873593;
	h ^= k;
	h = rotl32(h, 13);
	return h * 5 + 0xe6546b64;
}

static __always_inline __u32 flow_hash(const struct flow *f)
{
	__u32 h = STEER_HASH_SEED;

#pragma unroll
	for (int i = 0; i < 10; i++)
		if (i < f->nwords)
			h = mix(h, f->w[i]);
	h ^= f->nwords * 4;
	/* murmur3 fmix32 */
	h ^= h >> 16;
	h *= 0x85ebca6b;
	h ^= h >> 13;
	h *= 0xc2b2ae35;
	h ^= h >> 16;
	return h;
}

static __always_inline int pass(struct __sk_buff *skb, __u32 reason)
{
	counter_add(&steer_stats, reason, skb->len);
	return TC_ACT_UNSPEC;
}

static __always_inline int fresh(void)
{
	__u32 zero = 0;
	struct steer_state *st = bpf_map_lookup_elem(&steer_state, &zero);
	__u64 now, hb, jiffy;

	if (!st)
		return 0;
	/* Once fresh in this jiffy, fresh for the rest of it: bpf_jiffies64 reads a variable,
	 * where the clock below cost about 20 ns/packet (a jiffy is 4 ms at HZ=250, nothing
	 * against a stale_after of seconds).  Jiffy 0 is never cached (0 = "not checked"). */
	jiffy = bpf_jiffies64();
	if (jiffy && st->fresh_jiffies == jiffy)
		return 1;
	hb = st->heartbeat_ns;
	if (!hb)
		return 0;
	/* CLOCK_MONOTONIC_COARSE (ktime_get_coarse_ns, kernel/time/timekeeping.c): the same clock
	 * user space writes, as of the last tick — at most a jiffy behind, and no clocksource
	 * read (bpf_ktime_get_ns reads the TSC: 20 ns more). */
	now = bpf_ktime_get_coarse_ns();
	/* A heartbeat "from the future" (clock read before the write landed) counts as fresh. */
	if (now <= hb || now - hb <= st->stale_after_ns) {
		st->fresh_jiffies = jiffy; /* races between CPUs write the same jiffy */
		return 1;
	}
	return 0;
}

/* Bits set in x (Hacker's Delight 5-2), without a branch. */
static __always_inline __u32 popcount(__u64 x)
{
	x -= (x >> 1) & 0x5555555555555555ULL;
	x = (x & 0x3333333333333333ULL) + ((x >> 2) & 0x3333333333333333ULL);
	x = (x + (x >> 4)) & 0x0F0F0F0F0F0F0F0FULL;
	return (__u32)((x * 0x0101010101010101ULL) >> 56);
}

/* Index of the highest set bit of x (x != 0), without a branch: a branch here would double the
 * verifier's paths at every probe of the loops below.  Smear the top bit down, then count. */
static __always_inline __u32 top_bit(__u64 x)
{
	x |= x >> 1;
	x |= x >> 2;
	x |= x >> 4;
	x |= x >> 8;
	x |= x >> 16;
	x |= x >> 32;
	return popcount(x) - 1;
}

/* The network-order mask of the first n (0..32) bits of a word, without a branch. */
static __always_inline __u32 mask32(__u32 n)
{
	return bpf_htonl((__u32)(0xFFFFFFFF00000000ULL >> (n & 63)));
}

/* max(v, 0) of a signed 32-bit value, without a branch. */
static __always_inline __s32 clamp0(__s32 v)
{
	return v & ~(v >> 31);
}

/* The prefix-length bits of one family (route_lengths), or 0 words when the map is missing. */
static __always_inline struct steer_lengths *lengths_of(__u32 family_index)
{
	return bpf_map_lookup_elem(&route_lengths, &family_index);
}

/* The longest match among the routes_v4 entries longer than /24 (lengths 25..32 that
 * route_lengths names), probed longest first: one hash lookup per length; the length bits
 * are read once, as one word (user space writes them after the entries they announce and
 * clears them before deleting: struct steer_lengths).  Returns the group or STEER_GROUP_NONE.
 *
 * A global function, so the verifier checks it once, on its own, instead of once per parser
 * path that reaches it (as a static function its probe loop was re-walked for each of them);
 * it returns the group, as a global function cannot return a map value pointer. */
__noinline __u32 route_group_v4_deep(__u32 daddr)
{
	struct steer_v4_key key = {};
	struct steer_lengths *ls;
	struct steer_route *r;
	__u64 bits;

	ls = lengths_of(STEER_LENGTHS_V4);
	if (!ls)
		return STEER_GROUP_NONE;
	bits = *(volatile __u64 *)&ls->bits[0] & (((1ULL << 33) - 1) & ~((1ULL << 25) - 1));
	for (int i = 0; i < 8 && bits; i++) {
		__u32 len = top_bit(bits);

		bits &= ~(1ULL << (len & 63));
		key.prefixlen = len;
		*(__u32 *)key.addr = daddr & mask32(len);
		r = bpf_map_lookup_elem(&routes_v4, &key);
		if (r)
			return r->group;
	}
	return STEER_GROUP_NONE;
}

/* Longest prefix match of an IPv4 destination (network order): its /24's entry of
 * routes_v4_24 (DIR-24-8's first level: the longest match of length <= 24, one inlined
 * array read), and only where that entry says a longer prefix lies inside the /24, the
 * per-length hash first.  Returns the group (slot or STEER_GROUP_LOCAL) or STEER_GROUP_NONE. */
static __always_inline __u32 route_group_v4(__u32 daddr)
{
	struct steer_v4_key key = {};
	struct steer_v4_quad *q;
	struct steer_route *r;
	__u32 a = bpf_ntohl(daddr), idx = a >> 10, entry, group;

	if (STEER_ROUTES_LPM) {
		key.prefixlen = 32;
		__builtin_memcpy(key.addr, &daddr, 4);
		r = bpf_map_lookup_elem(&routes_v4, &key);
		return r ? r->group : STEER_GROUP_NONE;
	}
	q = bpf_map_lookup_elem(&routes_v4_24, &idx);
	if (!q)
		return STEER_GROUP_NONE;
	entry = *(volatile __u16 *)&q->entry[(a >> 8) & 3];
	if (entry & STEER_V4_DEEPER) {
		group = route_group_v4_deep(daddr);
		if (group != STEER_GROUP_NONE)
			return group;
	}
	entry &= ~STEER_V4_DEEPER;
	if (entry == STEER_V4_NONE)
		return STEER_GROUP_NONE;
	return entry == STEER_V4_LOCAL ? STEER_GROUP_LOCAL : entry - STEER_V4_SLOT_BASE;
}

/* The network-order mask of word w (0..3) of an IPv6 prefix of length len (0..128):
 * mask32(clamp(len - 32w, 0, 32)), without a branch. */
static __always_inline __u32 mask6(__u32 len, __u32 w)
{
	__s32 bits = clamp0((__s32)len - (__s32)(32 * w));

	return mask32(32 - clamp0(32 - bits));
}

/* One probe of routes_v6: the group of (len, daddr masked to len), or STEER_GROUP_NONE. */
static __always_inline __u32 probe_v6(struct steer_v6_key *key, __u32 len, __u32 d0, __u32 d1, __u32 d2, __u32 d3)
{
	__u32 *a = (__u32 *)key->addr;
	struct steer_route *r;

	key->prefixlen = len;
	a[0] = d0 & mask6(len, 0);
	a[1] = d1 & mask6(len, 1);
	a[2] = d2 & mask6(len, 2);
	a[3] = d3 & mask6(len, 3);
	r = bpf_map_lookup_elem(&routes_v6, key);
	return r ? r->group : STEER_GROUP_NONE;
}

/* The trie's longest match of an IPv6 destination (``map``: routes_v6 in the LPM build,
 * routes_v6_lpm in the shipped one). */
static __always_inline __u32 lpm_v6(void *map, __u32 d0, __u32 d1, __u32 d2, __u32 d3)
{
	struct steer_v6_key key = { .prefixlen = 128 };
	__u32 *a = (__u32 *)key.addr;
	struct steer_route *r;

	a[0] = d0;
	a[1] = d1;
	a[2] = d2;
	a[3] = d3;
	r = bpf_map_lookup_elem(map, &key);
	return r ? r->group : STEER_GROUP_NONE;
}

/* The longest match of an IPv6 destination (its four words, network order): with at most
 * STEER_V6_HASH_LENGTHS lengths present, the per-length hash — length 128 probed first, then
 * the others longest first in one loop over the two lower words, the word chosen by
 * arithmetic, not a branch (nested loops with early exits multiplied the verifier's paths
 * past its limit); with more, or while user space asks for it (lookup_lpm), the trie. */
__noinline __u32 route_group_v6(__u32 d0, __u32 d1, __u32 d2, __u32 d3)
{
	struct steer_v6_key key = {};
	struct steer_lengths *ls;
	__u64 hi, lo, top;
	__u32 group;

	if (STEER_ROUTES_LPM)
		return lpm_v6(&routes_v6, d0, d1, d2, d3);
	ls = lengths_of(STEER_LENGTHS_V6);
	if (!ls)
		return STEER_GROUP_NONE;
	lo = *(volatile __u64 *)&ls->bits[0];
	hi = *(volatile __u64 *)&ls->bits[1];
	top = *(volatile __u64 *)&ls->bits[2] & 1;
	if (*(volatile __u32 *)&ls->lookup_lpm || popcount(lo) + popcount(hi) + top > STEER_V6_HASH_LENGTHS) {
		/* a small table or many lengths: the trie (complete entry by entry, like the hash) */
		return lpm_v6(&routes_v6_lpm, d0, d1, d2, d3);
	}
	if (top) {
		group = probe_v6(&key, 128, d0, d1, d2, d3);
		if (group != STEER_GROUP_NONE)
			return group;
	}
	for (int i = 0; i < STEER_V6_HASH_LENGTHS && (hi | lo); i++) {
		__u64 in_hi = (hi | (0 - hi)) >> 63; /* 1 while hi has bits left, else 0 */
		__u64 sel = (hi & (0 - in_hi)) | (lo & (in_hi - 1));
		__u32 bit = top_bit(sel), len = bit + 64 * (__u32)in_hi;
		__u64 b = 1ULL << (bit & 63);

		hi &= ~(b & (0 - in_hi));
		lo &= ~(b & (in_hi - 1));
		group = probe_v6(&key, len, d0, d1, d2, d3);
		if (group != STEER_GROUP_NONE)
			return group;
	}
	return STEER_GROUP_NONE;
}

/* Bench builds pass every packet after step STEER_BENCH_STOP (enum steer_step); 0 in the
 * daemon's object, where the compiler drops every check. */
static __always_inline int bench_stop(enum steer_step step)
{
	return STEER_BENCH_STOP == step;
}

/* Parse IPv4 at data + ETH_HLEN.  Returns a steer_reason to pass with, or STEER_STEERED to go on. */
static __always_inline __u32 parse_v4(struct __sk_buff *skb, struct flow *f, struct iphdr **out)
{
	void *data = (void *)(long)skb->data, *data_end = (void *)(long)skb->data_end;
	struct iphdr *iph = data + ETH_HLEN;
	__u32 ihl, tot, d;

	if ((void *)(iph + 1) > data_end)
		return STEER_PASS_MALFORMED;
	if (iph->version != 4 || iph->ihl < 5)
		return STEER_PASS_MALFORMED;
	ihl = iph->ihl * 4;
	tot = bpf_ntohs(iph->tot_len);
	if (tot < ihl || tot > skb->len - ETH_HLEN)
		return STEER_PASS_MALFORMED;
	d = bpf_ntohl(iph->daddr);
	if ((d >> 28) == 0xE || d == 0xFFFFFFFF || (d >> 16) == 0xA9FE || (d >> 24) == 127 || (d >> 24) == 0)
		return STEER_PASS_SPECIAL;
	if (ihl != sizeof(*iph))
		return STEER_PASS_OPTIONS;
	f->family = AF_INET;
	f->w[0] = iph->saddr;
	f->w[1] = iph->daddr;
	f->nwords = 2;
	f->ttl = iph->ttl;
	if (!ipv4_is_fragment(iph) &&
	    (iph->protocol == IPPROTO_TCP || iph->protocol == IPPROTO_UDP)) {
		__u32 *ports = (void *)(iph + 1);

		if (tot < ihl + (iph->protocol == IPPROTO_TCP ? 20 : 8))
			return STEER_PASS_MALFORMED;
		if ((void *)(ports + 1) > data_end)
			return STEER_PASS_MALFORMED;
		f->proto = iph->protocol;
		f->w[2] = *ports;
		f->w[3] = iph->protocol;
		f->nwords = 4;
	}
	*out = iph;
	return STEER_STEERED;
}

static __always_inline __u32 parse_v6(struct __sk_buff *skb, struct flow *f, struct ipv6hdr **out)
{
	void *data = (void *)(long)skb->data, *data_end = (void *)(long)skb->data_end;
	struct ipv6hdr *ip6h = data + ETH_HLEN;
	__u32 off = ETH_HLEN + sizeof(*ip6h), payload, end;
	__u8 nexthdr, d0, d1;

	if ((void *)(ip6h + 1) > data_end)
		return STEER_PASS_MALFORMED;
	if (ip6h->version != 6)
		return STEER_PASS_MALFORMED;
	payload = bpf_ntohs(ip6h->payload_len);
	if (payload == 0 || payload > skb->len - off) /* 0: a jumbogram (RFC 2675) */
		return STEER_PASS_MALFORMED;
	end = off + payload;
	d0 = ip6h->daddr.in6_u.u6_addr8[0];
	d1 = ip6h->daddr.in6_u.u6_addr8[1];
	if (d0 == 0xFF || (d0 == 0xFE && (d1 & 0xC0) == 0x80))
		return STEER_PASS_SPECIAL; /* multicast, link-local */
	if (!(ip6h->daddr.in6_u.u6_addr32[0] | ip6h->daddr.in6_u.u6_addr32[1] | ip6h->daddr.in6_u.u6_addr32[2]) &&
	    (ip6h->daddr.in6_u.u6_addr32[3] == 0 || ip6h->daddr.in6_u.u6_addr32[3] == bpf_htonl(1)))
		return STEER_PASS_SPECIAL; /* unspecified, loopback */
	if (ip6h->nexthdr == IPPROTO_HOPOPTS)
		return STEER_PASS_OPTIONS;
	f->family = AF_INET6;
	__builtin_memcpy(&f->w[0], &ip6h->saddr, 16);
	__builtin_memcpy(&f->w[4], &ip6h->daddr, 16);
	f->nwords = 8;
	f->ttl = ip6h->hop_limit;
	*out = ip6h;
	nexthdr = ip6h->nexthdr;

#pragma unroll
	for (int i = 0; i < STEER_MAX_EXT_HEADERS; i++) {
		__u8 *ext;
		__u32 len;

		if (nexthdr == IPPROTO_TCP || nexthdr == IPPROTO_UDP) {
			__u32 *ports;

			if (off + (nexthdr == IPPROTO_TCP ? 20 : 8) > end)
				return STEER_PASS_MALFORMED;
			if (off > STEER_PULL_BYTES)
				return STEER_STEERED; /* ports beyond what we read: hash by addresses */
			ports = data + off;
			if ((void *)(ports + 1) > data_end)
				return STEER_STEERED;
			f->proto = nexthdr;
			f->w[8] = *ports;
			f->w[9] = nexthdr;
			f->nwords = 10;
			return STEER_STEERED;
		}
		if (nexthdr == IPPROTO_FRAGMENT)
			return STEER_STEERED; /* every fragment by addresses */
		if (nexthdr != IPPROTO_ROUTING && nexthdr != IPPROTO_DSTOPTS && nexthdr != IPPROTO_AH)
			return STEER_STEERED; /* ICMPv6, no next header, ...: by addresses */
		if (off > STEER_PULL_BYTES)
			return STEER_STEERED;
		ext = data + off;
		if ((void *)(ext + 2) > data_end)
			return STEER_PASS_MALFORMED;
		len = ipv6_ext_len(nexthdr, ext[1]);
		nexthdr = ext[0];
		off += len;
		if (off > end)
			return STEER_PASS_MALFORMED;
	}
	return STEER_STEERED; /* more extension headers than we walk: by addresses */
}

SEC("tc")
int tc_steer(struct __sk_buff *skb)
{
	struct iphdr *iph = 0;
	struct ipv6hdr *ip6h = 0;
	struct flow f = {};
	struct ch_ring *ring;
	struct steer_path *path;
	__u32 *path_slot;
	struct bpf_redir_neigh nh = {};
	void *data, *data_end;
	__u32 reason, group, slot, path_id, mtu_len, len = skb->len;
	__u16 proto;

	if (!fresh())
		return pass(skb, STEER_PASS_STALE);
	if (bench_stop(STEER_STEP_FRESH))
		return TC_ACT_UNSPEC;
	if (skb->pkt_type != PACKET_HOST || skb->vlan_present)
		return pass(skb, STEER_PASS_NOT_IP);
	proto = skb->protocol;
	if (proto != bpf_htons(ETH_P_IP) && proto != bpf_htons(ETH_P_IPV6))
		return pass(skb, STEER_PASS_NOT_IP);

	/* Headers in the linear part: pull them in when the driver left them in fragments. */
	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	if (data + STEER_PULL_BYTES > data_end && skb->len > data_end - data)
		bpf_skb_pull_data(skb, skb->len < STEER_PULL_BYTES ? skb->len : STEER_PULL_BYTES);
	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	if (data + ETH_HLEN > data_end || ((struct ethhdr *)data)->h_proto != proto)
		return pass(skb, STEER_PASS_NOT_IP);

	if (proto == bpf_htons(ETH_P_IP))
		reason = parse_v4(skb, &f, &iph);
	else
		reason = parse_v6(skb, &f, &ip6h);
	if (reason != STEER_STEERED)
		return pass(skb, reason);
	if (bench_stop(STEER_STEP_PARSE))
		return TC_ACT_UNSPEC;
	if (f.family == AF_INET)
		group = route_group_v4(f.w[1]);
	else
		group = route_group_v6(f.w[4], f.w[5], f.w[6], f.w[7]);
	if (bench_stop(STEER_STEP_LOOKUP))
		return TC_ACT_UNSPEC;
	if (group == STEER_GROUP_NONE)
		return pass(skb, STEER_PASS_NO_ROUTE);
	if (f.ttl <= 1)
		return pass(skb, STEER_PASS_TTL);

	/* One read of the route value (in route_group_v4/v6): the group it names is complete
	 * (written before the route pointed to it, freed only a grace period after no route does). */
	if (group == STEER_GROUP_LOCAL)
		return pass(skb, STEER_PASS_LOCAL);
	ring = bpf_map_lookup_elem(&ch_rings, &group);
	if (!ring) {
		/* Only for a slot out of range.  The group_members reference is what matters: a map
		 * the program names stays alive with the attached program and is listed in its map
		 * ids, so a restarted daemon finds the members by kernel ids (without it the map
		 * would die with the process that loaded it). */
		bpf_map_lookup_elem(&group_members, &group);
		return pass(skb, STEER_PASS_NO_PATH);
	}
	slot = flow_hash(&f) % STEER_RING_SIZE;
	/* clang turns % into div/mul/sub, which the verifier cannot bound: bound it again,
	 * behind a barrier so the compiler keeps the check. */
	asm volatile("" : "+r"(slot));
	if (slot >= STEER_RING_SIZE)
		return pass(skb, STEER_PASS_NO_PATH);
	path_id = ring->path[slot];
	if (!path_id)
		return pass(skb, STEER_PASS_NO_PATH);
	path_slot = bpf_map_lookup_elem(&path_slots, &path_id);
	if (!path_slot)
		return pass(skb, STEER_PASS_NO_PATH);
	path = bpf_map_lookup_elem(&steer_paths, path_slot);
	if (!path)
		return pass(skb, STEER_PASS_NO_PATH);
	if (f.family == AF_INET ? !(path->flags & STEER_PATH_HAS_GW4) : !(path->flags & STEER_PATH_HAS_GW6))
		return pass(skb, STEER_PASS_NO_PATH);
	if (bench_stop(STEER_STEP_MAGLEV))
		return TC_ACT_UNSPEC;
	/* A redirect of a frame the egress device cannot carry is dropped without ICMP; the
	 * kernel's own forwarding at least fragments it or answers "fragmentation needed".
	 * GSO packets are checked segment by segment (net/core/filter.c, bpf_skb_check_mtu).
	 * Packets no larger than the family's MTU floor fit every path device (IPv6 links carry
	 * 1280 bytes, RFC 8200 section 5; IPv4 576, see STEER_MTU_FLOOR_V4): the helper (about
	 * 15 ns) only for larger ones. */
	mtu_len = 0;
	if (len > ETH_HLEN + (f.family == AF_INET ? STEER_MTU_FLOOR_V4 : STEER_MTU_FLOOR_V6) &&
	    bpf_check_mtu(skb, path->ifindex, &mtu_len, 0, 0) != BPF_MTU_CHK_RET_SUCCESS)
		return pass(skb, STEER_PASS_MTU);
	if (bench_stop(STEER_STEP_MTU))
		return TC_ACT_UNSPEC;

	/* Re-derive the header pointers: the verifier wants them checked against data_end
	 * again after the helper calls above. */
	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	if (f.family == AF_INET) {
		__u32 check;

		iph = data + ETH_HLEN;
		if ((void *)(iph + 1) > data_end)
			return pass(skb, STEER_PASS_MALFORMED);
		/* ip_decrease_ttl (include/net/ip.h) */
		check = iph->check;
		check += bpf_htons(0x0100);
		iph->check = (__sum16)(check + (check >= 0xFFFF));
		iph->ttl -= 1;
		nh.nh_family = AF_INET;
		__builtin_memcpy(&nh.ipv4_nh, path->gateway4, 4);
	} else {
		__u32 old, new;

		ip6h = data + ETH_HLEN;
		if ((void *)(ip6h + 1) > data_end)
			return pass(skb, STEER_PASS_MALFORMED);
		old = *(__u32 *)((void *)ip6h + 4); /* payload_len, nexthdr, hop_limit */
		ip6h->hop_limit -= 1;
		new = *(__u32 *)((void *)ip6h + 4);
		bpf_csum_update(skb, bpf_csum_diff(&old, 4, &new, 4, 0));
		nh.nh_family = AF_INET6;
		__builtin_memcpy(nh.ipv6_nh, path->gateway6, 16);
	}
	counter_add(&path_counters, path_id, len);
	counter_add(&steer_stats, STEER_STEERED, len);
	return bpf_redirect_neigh(path->ifindex, &nh, sizeof(nh), 0);
}

char LICENSE[] SEC("license") = "GPL";
