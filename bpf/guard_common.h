/* guard_common.h — the guard's names, flags and limits, shared by guard.bpf.c and user space.
 *
 * Same convention as counters_common.h: every value user space needs is an enumerator of a
 * named enum; guard_abi.h puts each enum into guard.bpf.o's BTF, and pathsteer.guard.abi reads
 * them from there.  Each limit has an #ifndef default so a build can change it (-DNAME=...).
 */
#ifndef GUARD_COMMON_H
#define GUARD_COMMON_H

#include "common.h"

#ifndef GUARD_MAX_ALLOW
#define GUARD_MAX_ALLOW 65536 /* allow-list CIDRs per family */
#endif
#ifndef GUARD_MAX_DENY
#define GUARD_MAX_DENY 2097152 /* deny-list CIDRs per family: config + manual + auto blocks */
#endif
#ifndef GUARD_MAX_SOURCES
#define GUARD_MAX_SOURCES 65536 /* tracked sources (LRU): bounds memory under spoofed floods */
#endif
#ifndef GUARD_MAX_SYN_DESTS
#define GUARD_MAX_SYN_DESTS 8192 /* tracked SYN destinations (LRU) */
#endif
#ifndef GUARD_MAX_RULES
#define GUARD_MAX_RULES 65536 /* rule ids with their own counters; id 0 = not counted per rule */
#endif
#ifndef GUARD_MAX_PORT_RULES
#define GUARD_MAX_PORT_RULES 32 /* protocol/port rules, evaluated in order */
#endif
#ifndef GUARD_MAX_VLAN_TAGS
#define GUARD_MAX_VLAN_TAGS 2 /* 802.1Q / 802.1ad tags walked before the IP header */
#endif
#ifndef GUARD_MAX_EXT_HEADERS
#define GUARD_MAX_EXT_HEADERS 6 /* IPv6 extension headers walked; more is malformed */
#endif
#ifndef GUARD_EVENT_RING_BYTES
#define GUARD_EVENT_RING_BYTES (256 * 1024)
#endif
#ifndef GUARD_CAS_TRIES
#define GUARD_CAS_TRIES 4 /* compare-and-swap attempts on a contended bucket */
#endif
#ifndef GUARD_MAX_COOKIE_IFACES
#define GUARD_MAX_COOKIE_IFACES 256 /* interfaces on which SYN cookies answer for the protected ports */
#endif
#ifndef GUARD_HH_REPORT_NS
#define GUARD_HH_REPORT_NS 1000000000ULL /* at most one heavy-hitter event per source per second */
#endif

enum guard_limits {
	GUARD_LIMIT_ALLOW = GUARD_MAX_ALLOW,
	GUARD_LIMIT_DENY = GUARD_MAX_DENY,
	GUARD_LIMIT_SOURCES = GUARD_MAX_SOURCES,
	GUARD_LIMIT_SYN_DESTS = GUARD_MAX_SYN_DESTS,
	GUARD_LIMIT_RULES = GUARD_MAX_RULES,
	GUARD_LIMIT_PORT_RULES = GUARD_MAX_PORT_RULES,
	GUARD_LIMIT_VLAN_TAGS = GUARD_MAX_VLAN_TAGS,
	GUARD_LIMIT_EXT_HEADERS = GUARD_MAX_EXT_HEADERS,
	GUARD_LIMIT_CAS_TRIES = GUARD_CAS_TRIES,
	GUARD_LIMIT_IPV6_SOURCE_PREFIX = 64, /* IPv6 sources are tracked per /64 (one host's share) */
	GUARD_LIMIT_COOKIE_IFACES = GUARD_MAX_COOKIE_IFACES,
	GUARD_LIMIT_COOKIE_PORT_WORDS = 2048, /* syncookie_ports: one bit per TCP port, 32 per word */
};

/* Why a packet got its verdict; index of verdict_counters.  The order of the checks is the
 * order in guard.bpf.c's header comment, not this one.  This one has the verdicts that let the
 * packet go (or answer it) first and the drops last: a verdict drops the packet iff it is
 * >= GUARD_FIRST_DROP (guard.bpf.c verdict_drops; pathsteer.guard.abi checks the names of
 * every enumerator against that rule when it reads them). */
enum guard_verdict {
	GUARD_PASS = 0,           /* no rule objected */
	GUARD_PASS_ALLOW = 1,     /* source in the allow list: wins over every other rule */
	GUARD_PASS_RULE = 2,      /* a port rule with action pass matched */
	GUARD_PASS_NOT_IP = 3,    /* not IPv4/IPv6 (ARP, LLDP, ...): not the guard's business */
	/* SYN cookies (step 7 on a protected port, for packets conntrack does not know): */
	GUARD_PASS_COOKIE = 4,    /* an ACK with a valid cookie: on to netfilter's synproxy */
	GUARD_TX_SYNCOOKIE = 5,   /* a SYN answered in XDP by a SYN-ACK carrying a cookie (XDP_TX) */
	/* Every verdict from here on drops the packet (XDP_DROP), none before does. */
	GUARD_FIRST_DROP = 6,
	GUARD_DROP_MALFORMED = GUARD_FIRST_DROP, /* truncated or inconsistent headers (see guard.bpf.c) */
	GUARD_DROP_DENY = 7,      /* source in the deny list (config, manual or auto block) */
	GUARD_DROP_RULE = 8,      /* a port rule with action drop matched */
	GUARD_DROP_RATE = 9,      /* source over its token bucket */
	GUARD_DROP_SYN = 10,      /* TCP SYN to a destination over its SYN rate */
	GUARD_DROP_COOKIE = 11,   /* step 7: neither a SYN nor an ACK with a valid cookie (bad cookie, stray RST/FIN) */
	GUARD_VERDICT_COUNT = 12,
};

/* What the SYN-ACK's TCP timestamp carries besides the time, as netfilter's synproxy encodes
 * and decodes it (net/netfilter/nf_synproxy_core.c, synproxy_init_timestamp_cookie /
 * synproxy_check_timestamp_cookie): a sequence-number cookie has no room for the client's
 * window scale, SACK and ECN, so the echoed timestamp brings them back with the ACK. */
enum guard_tscookie {
	GUARD_TSCOOKIE_WSCALE_MASK = 0xf, /* the client's window scale; 0xf = the client sent none */
	GUARD_TSCOOKIE_SACK = 1 << 4,     /* the client offered SACK */
	GUARD_TSCOOKIE_ECN = 1 << 5,      /* the client asked for ECN (ECE and CWR on its SYN) */
	GUARD_TSCOOKIE_BITS = 6,          /* low bits of the ms clock replaced by the above */
	GUARD_TSCOOKIE_MAX_WSCALE = 14,   /* RFC 7323 §2.3 */
};

/* What a port rule does when it matches. */
enum guard_action {
	GUARD_ACTION_DROP = 1,
	GUARD_ACTION_PASS = 2,
};

/* Kinds of record in the event ring buffer. */
enum guard_event_kind {
	GUARD_EVENT_DROP = 1,         /* a sampled drop */
	GUARD_EVENT_HEAVY_HITTER = 2, /* a source crossed the auto-block threshold */
};

/* Address families as the kernel numbers them (common.h). */
enum guard_family {
	GUARD_AF_INET = AF_INET,
	GUARD_AF_INET6 = AF_INET6,
};

#endif /* GUARD_COMMON_H */
