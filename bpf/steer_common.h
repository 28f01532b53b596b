/* steer_common.h — the steering program's names, flags and limits, shared by steer.bpf.c and
 * user space (pathsteer.dataplane.bpf_steer_abi).
 *
 * Same convention as counters_common.h: every value user space needs is an enumerator of a
 * named enum; steer_abi.h puts each enum into steer.bpf.o's BTF, and Python reads them from
 * there.  Each limit has an #ifndef default so a build can change it (-DNAME=...).
 *
 * Memory (defaults): ch_rings is preallocated, STEER_MAX_GROUPS x STEER_RING_SIZE x 2 bytes =
 * 1024 x 4099 x 2 = 8.4 MB; group_members 1024 x 196 bytes; routes_v4/v6 are hashes
 * without preallocated elements (about 64 bytes per prefix) but with their bucket arrays
 * allocated at load: STEER_MAX_ROUTES x 16 bytes = 32 MB per family.
 */
#ifndef STEER_COMMON_H
#define STEER_COMMON_H

#include "common.h"

#ifndef STEER_RING_SIZE
#define STEER_RING_SIZE 4099 /* entries of one Maglev table: a prime (65537 for finer shares) */
#endif
#ifndef STEER_MAX_GROUPS
#define STEER_MAX_GROUPS 1024 /* Maglev tables (group slots), double-buffered: 2x the live groups */
#endif
#ifndef STEER_MAX_GROUP_PATHS
#define STEER_MAX_GROUP_PATHS 64 /* paths in one group (weighted next hops of one route) */
#endif
#ifndef STEER_MAX_PATHS
#define STEER_MAX_PATHS 256 /* path ids 1..STEER_MAX_PATHS-1; id 0 = no path */
#endif
#ifndef STEER_MAX_ROUTES
#define STEER_MAX_ROUTES 2097152 /* prefixes per family (a power of two: the hash's bucket count) */
#endif
#ifndef STEER_MAX_EXT_HEADERS
#define STEER_MAX_EXT_HEADERS 6 /* IPv6 extension headers walked to find the ports */
#endif
#ifndef STEER_MTU_FLOOR_V4
/* IPv4 packets up to this size skip bpf_check_mtu: RFC 791's datagram every host accepts.
 * A path device with a smaller MTU (Linux allows 68) would see such packets dropped by the
 * redirect instead of fragmented: the daemon warns about one (bpf.path_mtu_below_floor). */
#define STEER_MTU_FLOOR_V4 576
#endif
#ifndef STEER_MTU_FLOOR_V6
#define STEER_MTU_FLOOR_V6 1280 /* RFC 8200 section 5: every IPv6 link's minimum MTU */
#endif
#ifndef STEER_V6_HASH_LENGTHS
/* IPv6 lookups probe routes_v6 once per length while at most this many lengths are present,
 * else look up routes_v6_lpm (one hash probe cost about 40 ns in bench steer, a trie lookup
 * 20-130 ns from 1k to 1M prefixes) */
#define STEER_V6_HASH_LENGTHS 3
#endif
#ifndef STEER_PULL_BYTES
#define STEER_PULL_BYTES 128 /* bytes made linear (bpf_skb_pull_data) before parsing */
#endif

#ifndef STEER_BENCH_STOP
#define STEER_BENCH_STOP 0 /* bench builds only (bench/bench_steer.py): pass after step N (enum steer_step) */
#endif

enum steer_limits {
	STEER_LIMIT_RING_SIZE = STEER_RING_SIZE,
	STEER_LIMIT_GROUPS = STEER_MAX_GROUPS,
	STEER_LIMIT_GROUP_PATHS = STEER_MAX_GROUP_PATHS,
	STEER_LIMIT_PATHS = STEER_MAX_PATHS,
	STEER_LIMIT_ROUTES = STEER_MAX_ROUTES,
	STEER_LIMIT_EXT_HEADERS = STEER_MAX_EXT_HEADERS,
	STEER_DEFAULT_STALE_AFTER_MS = 10000, /* dataplane.stale_after's default */
	STEER_LENGTH_WORDS = 3,               /* u64 words of struct steer_lengths: bits 0..128 */
	STEER_LIMIT_MTU_FLOOR_V4 = STEER_MTU_FLOOR_V4,
	STEER_LIMIT_V6_HASH_LENGTHS = STEER_V6_HASH_LENGTHS,
	STEER_LIMIT_MTU_FLOOR_V6 = STEER_MTU_FLOOR_V6,
};

/* Index of route_lengths: which family's prefix lengths. */
enum steer_family_index {
	STEER_LENGTHS_V4 = 0,
	STEER_LENGTHS_V6 = 1,
};

/* The steps of tc_steer, in order; a bench build with -DSTEER_BENCH_STOP=N passes every packet
 * after step N, so the bench can price each step as the difference of two builds. */
enum steer_step {
	STEER_STEP_FRESH = 1,  /* heartbeat check */
	STEER_STEP_PARSE = 2,  /* Ethernet + IPv4/IPv6 (+ ports) */
	STEER_STEP_LOOKUP = 3, /* longest prefix match: routes_v4/v6 */
	STEER_STEP_MAGLEV = 4, /* flow hash, ch_rings, steer_paths */
	STEER_STEP_MTU = 5,    /* bpf_check_mtu */
};

/* Seed of the flow hash (steer.bpf.c flow_hash; mirrored by bpf_steer_abi.flow_hash). */
enum steer_hash {
	STEER_HASH_SEED = 0x5eed5eed,
};

/* What happened to a packet; index of steer_stats.  Everything but STEER_STEERED goes on to
 * the kernel's own routing unchanged. */
enum steer_reason {
	STEER_STEERED = 0,        /* redirected to its path's gateway (bpf_redirect_neigh) */
	STEER_PASS_STALE = 1,     /* heartbeat older than stale_after, or never written: fail open */
	STEER_PASS_NOT_IP = 2,    /* not untagged IPv4/IPv6, or not addressed to our MAC */
	STEER_PASS_MALFORMED = 3, /* truncated or inconsistent headers: the kernel drops them */
	STEER_PASS_SPECIAL = 4,   /* multicast, broadcast, link-local, loopback, unspecified dst */
	STEER_PASS_OPTIONS = 5,   /* IPv4 options / IPv6 hop-by-hop: the kernel must process them */
	STEER_PASS_NO_ROUTE = 6,  /* destination in no steered prefix */
	STEER_PASS_TTL = 7,       /* TTL / hop limit <= 1: the kernel sends ICMP time exceeded */
	STEER_PASS_LOCAL = 8,     /* destination is the router itself (STEER_GROUP_LOCAL) */
	STEER_PASS_NO_PATH = 9,   /* empty ring slot, unknown path or no gateway of the family */
	STEER_PASS_MTU = 10,      /* larger than the path device's MTU (bpf_check_mtu): the kernel
				   * routes it rather than a redirect dropping it silently */
	STEER_REASON_COUNT = 11,
};

/* Entries of routes_v4_24 (u16, struct steer_v4_quad). */
enum steer_v4_entry {
	STEER_V4_NONE = 0,           /* no prefix of length <= 24 holds the /24 */
	STEER_V4_SLOT_BASE = 1,      /* group slot s is stored as s + STEER_V4_SLOT_BASE */
	STEER_V4_LOCAL = 0x7FFF,     /* the longest match is a STEER_GROUP_LOCAL entry */
	STEER_V4_DEEPER = 0x8000,    /* flag: a prefix longer than /24 lies inside: probe those first */
};

/* steer_route.group values that name no table. */
enum steer_group_special {
	/* A local address (or local-table route) inside a steered prefix: the kernel delivers
	 * it.  User space writes these from the router's local routing table, so the lookup's
	 * longest match keeps packets to the router itself off the paths at no extra cost. */
	STEER_GROUP_LOCAL = 0xFFFF,
	/* Never stored: what the lookup (route_group_v4/v6) returns for "in no steered prefix". */
	STEER_GROUP_NONE = 0xFFFE,
};

/* steer_path.flags */
enum steer_path_flags {
	STEER_PATH_HAS_GW4 = 1, /* gateway4 is set: IPv4 routes may use the path */
	STEER_PATH_HAS_GW6 = 2, /* gateway6 is set */
};

/* Where our TC filter sits on each ingress interface: common.h (PATHSTEER_TC_HANDLE_STEER,
 * PATHSTEER_TC_PRIO_STEER), with the other programs' places. */

#endif /* STEER_COMMON_H */
