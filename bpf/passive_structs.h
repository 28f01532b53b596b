/* passive_structs.h — layouts of the passive RTT maps' keys and values; user space checks its
 * ctypes mirrors against them through BTF (pathsteer.telemetry.passive). */
#ifndef PASSIVE_STRUCTS_H
#define PASSIVE_STRUCTS_H

#include <linux/types.h>

#include "passive_common.h"

/* A TCP flow on an interface, written as the egress packet has it (src = our side); the
 * ingress side builds it from a reply with addresses and ports swapped.  IPv4 addresses are
 * stored IPv4-mapped (::ffff:a.b.c.d, RFC 4291 §2.5.5.2), so one key serves both families.
 * Key of passive_flows. */
struct passive_flow {
	__u32 ifindex;            /* the interface the packet left by (and the echo must come in by) */
	__u8 saddr[16];
	__u8 daddr[16];
	__be16 sport;             /* network byte order, as on the wire */
	__be16 dport;
};

/* Value of passive_flows: the flow's last TSval stored, so that a TSval is stored once even
 * after its entry was matched and deleted (later segments of the same ms carry it again;
 * their echoes would then be timed from a later segment: too short a sample). */
struct passive_flow_state {
	__u32 last_tsval;
	__u32 has_tsval;          /* 1 once last_tsval holds one */
};

/* Key of passive_timestamps: a packet that expects an echo, seen leaving an interface. */
struct passive_ts_key {
	struct passive_flow flow;
	enum passive_id_kind kind; /* 4 bytes */
	__u32 identifier;         /* TSval, or SYN seq + 1 (host byte order) */
};

/* Value of passive_rtt, one per interface and CPU: aggregates of the RTT samples the
 * interface's echoes gave, plus what the egress side did.  User space sums the CPUs (min/max:
 * min/max over the CPUs that have samples) and diffs successive reads. */
struct passive_rtt_agg {
	__u64 samples;            /* RTT samples (timestamp echoes and handshakes) */
	__u64 handshake_samples;  /* of those, SYN → SYN-ACK without timestamps */
	__u64 sum_ns;             /* sum of the samples */
	__u64 min_ns;             /* smallest sample; 0 while samples == 0 */
	__u64 max_ns;             /* largest sample */
	__u64 recorded;           /* egress: new (flow, identifier) entries stored */
	__u64 record_failed;      /* egress: entries that could not be stored (map update error) */
	__u64 hist[PASSIVE_HIST_BUCKETS]; /* samples per log-linear bucket (passive_common.h) */
};

#endif /* PASSIVE_STRUCTS_H */
