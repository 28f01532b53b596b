/* common.h — what every pathsteer BPF program shares: the packet-parsing constants and helpers
 * the programs had each written for themselves, the packets/bytes counter, and the order of the
 * programs on a TC hook.  Included by counters.bpf.c, guard.bpf.c, passive.bpf.c, steer.bpf.c
 * (through their own headers); the program-specific names, flags and limits stay in each
 * program's *_common.h.
 *
 * Same convention as those: every value user space needs is an enumerator of a named enum, and
 * the *_abi.h of each program attached at TC (counters, passive, steer) names the TC enums below
 * in its never-called function's signature, so they reach that object's BTF; Python reads them
 * from there (pathsteer.bpf.tc_order), never re-types them.
 *
 * The parsing helpers are only the pieces that were the same everywhere: what each program does
 * with a truncated or odd header (drop, pass, skip) differs, and stays in the program. */
#ifndef PATHSTEER_BPF_COMMON_H
#define PATHSTEER_BPF_COMMON_H

#include <linux/types.h>
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

/* --- TC: where each program's filter sits ------------------------------------------------------
 *
 * A filter is (handle, priority) on the clsact hook of an interface; lower priorities run first.
 * The programs return TC_ACT_UNSPEC ("no opinion, next filter"; TC_ACT_OK would end a
 * direct-action chain, net/sched/cls_api.c tcf_classify) for every packet they leave alone, so
 * each sees what the ones before it let through.  Only steering ends the chain, for the packets
 * it redirects (TC_ACT_REDIRECT): the counters after it on the same ingress do not see those. */
enum pathsteer_tc_prio {
	PATHSTEER_TC_PRIO_PASSIVE = 0x0c,  /* passive RTT (egress and ingress): only looks */
	PATHSTEER_TC_PRIO_STEER = 0x0e,    /* steering (ingress): redirects what it steers */
	PATHSTEER_TC_PRIO_COUNTERS = 0x10, /* counters (ingress and egress): only counts */
};

/* The handles, per program (so user space finds each by the same name); passive and counters
 * share "ps" and are told apart by their priority. */
enum pathsteer_tc_handle {
	PATHSTEER_TC_HANDLE_PASSIVE = 0x7073,  /* "ps" */
	PATHSTEER_TC_HANDLE_STEER = 0x7374,    /* "st" */
	PATHSTEER_TC_HANDLE_COUNTERS = 0x7073, /* "ps" */
};

/* --- counters ------------------------------------------------------------------------------- */

/* Packets and bytes (the L2 frame length), one CPU's share: the value of every counter map
 * (iface_counters, verdict_counters, rule_counters, path_counters, steer_stats); user space sums
 * the CPUs. */
struct pathsteer_counter {
	__u64 packets;
	__u64 bytes;
};

/* One packet of len bytes onto entry index of a per-CPU array of struct pathsteer_counter; an
 * index out of range is not counted.  Plain adds: the value is per CPU, and BPF programs run
 * with migration disabled. */
static __always_inline void counter_add(void *map, __u32 index, __u64 len)
{
	struct pathsteer_counter *c = bpf_map_lookup_elem(map, &index);

	if (c) {
		c->packets += 1;
		c->bytes += len;
	}
}

/* --- packet parsing ------------------------------------------------------------------------- */

/* Address families as the kernel numbers them (no libc headers on the BPF target). */
#ifndef AF_INET
#define AF_INET 2
#endif
#ifndef AF_INET6
#define AF_INET6 10
#endif

/* An 802.1Q / 802.1ad tag after the Ethernet addresses (the kernel's struct vlan_hdr, which is
 * not UAPI). */
struct vlan_tag {
	__be16 tci;
	__be16 encapsulated_proto;
};

/* Whether an EtherType (network order) announces a VLAN tag. */
static __always_inline int eth_is_vlan(__be16 proto)
{
	return proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD);
}

/* IPv4 iphdr.frag_off, host order (RFC 791). */
#define IP_MF 0x2000     /* more fragments */
#define IP_OFFSET 0x1FFF /* fragment offset, 8-byte units */

/* Whether the IPv4 packet is a fragment, the first one included (offset or more-fragments set). */
static __always_inline int ipv4_is_fragment(const struct iphdr *iph)
{
	return (iph->frag_off & bpf_htons(IP_MF | IP_OFFSET)) != 0;
}

/* The length in bytes of an IPv6 extension header from its Hdr Ext Len (its second byte):
 * RFC 8200 §4, 8-octet units not counting the first 8 (hop-by-hop, routing, fragment,
 * destination options). */
static __always_inline __u32 ipv6_opt_len(__u8 hdrlen)
{
	return ((__u32)hdrlen + 1) * 8;
}

/* The same for any extension header type nexthdr, AH included (RFC 4302 §2.2: 4-octet units
 * minus 2). */
static __always_inline __u32 ipv6_ext_len(__u8 nexthdr, __u8 hdrlen)
{
	return nexthdr == IPPROTO_AH ? ((__u32)hdrlen + 2) * 4 : ipv6_opt_len(hdrlen);
}

/* TCP: the longest header (data offset 15), and the option kinds pathsteer reads or writes
 * (RFC 9293 §3.2, RFC 7323 §2-3, RFC 2018). */
#define TCP_MAX_HEADER 60
#define TCPOPT_EOL 0
#define TCPOPT_NOP 1
#define TCPOPT_MSS 2
#define TCPOPT_WINDOW 3
#define TCPOPT_SACK_PERM 4
#define TCPOPT_TIMESTAMP 8   /* kind 8, length 10: TSval, TSecr */
#define TCPOLEN_TIMESTAMP 10

#endif /* PATHSTEER_BPF_COMMON_H */
