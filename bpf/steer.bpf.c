// SPDX-License-Identifier: GPL-2.0
/* steer.bpf.c — the bpf data plane: per-prefix path steering at TC ingress.
 *
 *   packet ─► heartbeat fresh? ─► IPv4/IPv6 parse ─► routes_v4/v6 (LPM on the destination)
 *          ─► steer_route.group ─► flow hash % STEER_RING_SIZE ─► ch_rings[group] ─► path id
 *          ─► steer_paths[path id] ─► TTL/hop limit - 1 ─► bpf_redirect_neigh(ifindex, gateway)
 *
 * Every step that does not apply ends in TC_ACT_UNSPEC: the packet goes on to the kernel's own
 * routing, unchanged (steer_stats counts why: enum steer_reason).  TC_ACT_UNSPEC rather than
 * TC_ACT_OK because in a direct-action cls_bpf chain TC_ACT_OK is final (net/sched/cls_api.c,
 * tcf_classify), so filters after ours would not run; at the end of the chain TC_ACT_UNSPEC
 * continues exactly like TC_ACT_OK (sch_handle_ingress).
 *
 * Fail open: user space writes steer_state.heartbeat_ns (CLOCK_MONOTONIC, what
 * bpf_ktime_get_ns reads) every second or so; once it is older than stale_after_ns (or was
 * never written) nothing is steered.  A daemon killed with -9 leaves us attached: flows keep
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
 * entries that fall inside steered prefixes into the tries as STEER_GROUP_LOCAL, so the
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
	__u64 now, hb;

	if (!st)
		return 0;
	hb = st->heartbeat_ns;
	if (!hb)
		return 0;
	now = bpf_ktime_get_ns();
	/* A heartbeat "from the future" (clock read before the write landed) counts as fresh. */
	return now <= hb || now - hb <= st->stale_after_ns;
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
	struct steer_route *route;
	struct ch_ring *ring;
	struct steer_path *path;
	struct bpf_redir_neigh nh = {};
	void *data, *data_end;
	__u32 reason, group, slot, path_id, mtu_len, len = skb->len;
	__u16 proto;

	if (!fresh())
		return pass(skb, STEER_PASS_STALE);
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

	if (proto == bpf_htons(ETH_P_IP)) {
		struct steer_v4_key key = { .prefixlen = 32 };

		reason = parse_v4(skb, &f, &iph);
		if (reason != STEER_STEERED)
			return pass(skb, reason);
		__builtin_memcpy(key.addr, &f.w[1], 4);
		route = bpf_map_lookup_elem(&routes_v4, &key);
	} else {
		struct steer_v6_key key = { .prefixlen = 128 };

		reason = parse_v6(skb, &f, &ip6h);
		if (reason != STEER_STEERED)
			return pass(skb, reason);
		__builtin_memcpy(key.addr, &f.w[4], 16);
		route = bpf_map_lookup_elem(&routes_v6, &key);
	}
	if (!route)
		return pass(skb, STEER_PASS_NO_ROUTE);
	if (f.ttl <= 1)
		return pass(skb, STEER_PASS_TTL);

	/* One read of the route value: the group it names is complete (written before the
	 * route pointed to it, freed only a grace period after no route does). */
	group = route->group;
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
	path = bpf_map_lookup_elem(&steer_paths, &path_id);
	if (!path)
		return pass(skb, STEER_PASS_NO_PATH);
	if (f.family == AF_INET ? !(path->flags & STEER_PATH_HAS_GW4) : !(path->flags & STEER_PATH_HAS_GW6))
		return pass(skb, STEER_PASS_NO_PATH);
	/* A redirect of a frame the egress device cannot carry is dropped without ICMP; the
	 * kernel's own forwarding at least fragments it or answers "fragmentation needed".
	 * GSO packets are checked segment by segment (net/core/filter.c, bpf_skb_check_mtu). */
	mtu_len = 0;
	if (bpf_check_mtu(skb, path->ifindex, &mtu_len, 0, 0) != BPF_MTU_CHK_RET_SUCCESS)
		return pass(skb, STEER_PASS_MTU);

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
