/* guard_structs.h — layouts of the guard's map keys, values and ring-buffer records; the
 * Python mirrors in pathsteer.guard.abi are checked against these through BTF. */
#ifndef GUARD_STRUCTS_H
#define GUARD_STRUCTS_H

#include <linux/types.h>

#include "common.h"
#include "guard_common.h"

/* LPM trie keys (allow_v4/deny_v4, allow_v6/deny_v6): prefix length in bits, then the address
 * in network order, as BPF_MAP_TYPE_LPM_TRIE requires (struct bpf_lpm_trie_key). */
struct lpm_v4_key {
	__u32 prefixlen;
	__u8 addr[4];
};

struct lpm_v6_key {
	__u32 prefixlen;
	__u8 addr[16];
};

/* Value of the allow and deny tries: which rule the CIDR is (index of rule_counters). */
struct cidr_rule {
	__u32 rule_id;
};

/* Key of sources and syn_dests: an IPv4 address in addr[0..3], or an IPv6 address (sources:
 * its /64, the rest zero); unused bytes are zero. */
struct addr_key {
	__u32 family; /* enum guard_family */
	__u8 addr[16];
};

/* Value of sources: two GCRA states (the token bucket written as a "theoretical arrival
 * time": a bucket of B packets at R pps admits a packet iff tat - now <= (B-1) * 1e9/R), one
 * for the rate limit, one metering the auto-block threshold, plus counters.  All updated
 * with atomic instructions (cmpxchg / xadd): one entry is shared by every CPU. */
struct source_state {
	__u64 limit_tat_ns;    /* rate limit: theoretical arrival time, ktime ns */
	__u64 meter_tat_ns;    /* auto-block meter at the threshold rate */
	__u64 reported_ns;     /* last heavy-hitter event for this source */
	__u64 packets;         /* packets seen (after allow/deny) */
	__u64 dropped;         /* of which dropped by the rate limit */
};

/* Value of syn_dests: GCRA state of the per-destination SYN limit. */
struct syn_state {
	__u64 tat_ns;
	__u64 syns;    /* SYNs seen */
	__u64 dropped; /* of which dropped */
};

/* One protocol/port rule; a packet matches when every field matches.  A packet without ports
 * (ICMP, a non-first fragment) matches only rules whose port ranges are 0..65535. */
struct port_rule {
	__u8 proto;   /* IPPROTO_*; 0 = any */
	__u8 action;  /* enum guard_action */
	__u16 pad;
	__u16 sport_min, sport_max; /* host order, inclusive */
	__u16 dport_min, dport_max;
	__u32 rule_id;
};

/* The one entry of guard_settings; user space rewrites it on reload. */
struct guard_settings {
	__u64 source_interval_ns;  /* 1e9 / per_source_pps; 0 = no rate limit */
	__u64 source_tolerance_ns; /* (burst - 1) * source_interval_ns */
	__u64 meter_interval_ns;   /* 1e9 / auto-block threshold pps; 0 = no auto-block meter */
	__u64 meter_tolerance_ns;
	__u64 syn_interval_ns;     /* 1e9 / per_destination SYN pps; 0 = no SYN limit */
	__u64 syn_tolerance_ns;
	__u64 clock_ns;            /* 0: bpf_ktime_get_ns(); else a frozen clock (tests) */
	__u32 port_rule_count;     /* rules in port_rules[0..count) */
	__u32 sample_every;        /* one drop event per N drops per CPU; 0 = none */
	/* SYN cookies: what the SYN-ACK answered in XDP advertises (it must match the servers
	 * behind, see README); cookie_enabled 0 = step 7 is the SYN limit only. */
	__u16 cookie_mss4;         /* MSS option, IPv4 */
	__u16 cookie_mss6;         /* MSS option, IPv6 */
	__u8 cookie_wscale;        /* window scale option (sent only to a client that sent one) */
	__u8 cookie_ttl;           /* IPv4 TTL / IPv6 hop limit */
	__u8 cookie_enabled;
	__u8 pad;
};

/* A record of the events ring buffer. */
struct guard_event {
	__u64 ts_ns;
	__u32 kind;      /* enum guard_event_kind */
	__u32 verdict;   /* enum guard_verdict (drops) */
	__u32 rule_id;
	__u32 frame_len;
	__u32 ifindex;
	__u32 family;    /* enum guard_family */
	__u8 proto;
	__u8 pad[3];
	__u16 sport, dport; /* host order; 0 without ports */
	__u8 src[16];    /* heavy hitter: the tracked source (an IPv6 /64 zero-filled) */
	__u8 dst[16];
};

#endif /* GUARD_STRUCTS_H */
