/* passive_common.h — names, flags and limits of the passive RTT programs (passive.bpf.c) that
 * BPF and user space share.  As in counters_common.h, every value user space needs is an
 * enumerator (passive_abi.h carries the enums into BTF); Python reads them from the object
 * (pathsteer.telemetry.passive), never re-types them.  Limits have #ifndef defaults. */
#ifndef PASSIVE_COMMON_H
#define PASSIVE_COMMON_H

#include "common.h"

/* (interface, flow, identifier) → first-seen time entries awaiting their echo.  Bounded: LRU,
 * so entries whose echo never comes (lost ACKs, idle flows, pure-ACK TSvals) age out. */
#ifndef PASSIVE_MAX_TIMESTAMPS
#define PASSIVE_MAX_TIMESTAMPS 16384
#endif

/* Flows whose last stored TSval is remembered (passive_flows); LRU, idle flows age out. */
#ifndef PASSIVE_MAX_FLOWS
#define PASSIVE_MAX_FLOWS 16384
#endif

/* Interfaces with an RTT aggregate.  An LRU map is always preallocated, and each entry holds
 * an 8 KiB histogram per possible CPU: 64 entries are 0.5 MiB per CPU (a router's paths:
 * pathsteer's lab has at most 64). */
#ifndef PASSIVE_MAX_IFACES
#define PASSIVE_MAX_IFACES 64
#endif

/* Log-linear RTT histogram (HdrHistogram-like), over nanoseconds:
 *   v < 2^SUB_BITS                      → bucket v (exact)
 *   otherwise, with m = floor(log2 v)   → bucket (m - SUB_BITS + 1) << SUB_BITS
 *                                               | (v >> (m - SUB_BITS)) & (2^SUB_BITS - 1)
 * so each power of two is split into 2^SUB_BITS equal buckets: a bucket is at most
 * 1/2^SUB_BITS = 3.1 % of its values wide (20 ms → 0.52 ms buckets, 60 ms → 1.05 ms).
 * OCTAVES powers of two above the exact range: 5 + 31 = 2^36 ns = 68.7 s; larger values go
 * into the last bucket (max_ns still has them exactly). */
#ifndef PASSIVE_HIST_SUB_BITS
#define PASSIVE_HIST_SUB_BITS 5
#endif
#ifndef PASSIVE_HIST_OCTAVES
#define PASSIVE_HIST_OCTAVES 31
#endif
#define PASSIVE_HIST_BUCKETS ((PASSIVE_HIST_OCTAVES + 1) << PASSIVE_HIST_SUB_BITS)

/* TCP options parsed before giving up looking for the timestamp option (40 bytes of options
 * hold at most 40 one-byte NOPs; real stacks put the timestamp in the first three). */
#ifndef PASSIVE_MAX_TCP_OPTIONS
#define PASSIVE_MAX_TCP_OPTIONS 10
#endif

/* IPv6 extension headers skipped (hop-by-hop, routing, destination options) before TCP. */
#ifndef PASSIVE_MAX_IPV6_EXT
#define PASSIVE_MAX_IPV6_EXT 3
#endif

enum passive_limits {
	PASSIVE_LIMIT_TIMESTAMPS = PASSIVE_MAX_TIMESTAMPS, /* max_entries of passive_timestamps */
	PASSIVE_LIMIT_FLOWS = PASSIVE_MAX_FLOWS,           /* max_entries of passive_flows */
	PASSIVE_LIMIT_IFACES = PASSIVE_MAX_IFACES,         /* max_entries of passive_rtt */
	PASSIVE_LIMIT_HIST_SUB_BITS = PASSIVE_HIST_SUB_BITS,
	PASSIVE_LIMIT_HIST_BUCKETS = PASSIVE_HIST_BUCKETS, /* length of passive_rtt_agg.hist */
};

/* What the identifier of a timestamp entry is; part of the key, so a TSval and a sequence
 * number that happen to be equal never match each other. */
enum passive_id_kind {
	PASSIVE_ID_TSVAL = 1, /* TCP timestamp option TSval (RFC 7323 §3), echoed as TSecr */
	PASSIVE_ID_SYN = 2,   /* SYN's sequence number + 1, acknowledged by the SYN-ACK */
};

#endif /* PASSIVE_COMMON_H */
