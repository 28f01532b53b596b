/* passive_maps.h — the passive RTT programs' maps (BTF-defined). */
#ifndef PASSIVE_MAPS_H
#define PASSIVE_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "passive_common.h"
#include "passive_structs.h"

/* First-seen time (bpf_ktime_get_ns, ns) of each (interface, flow, identifier) sent and not
 * yet echoed.  Shared by all CPUs (not per-CPU): the echo may arrive on another CPU than the
 * one that sent.  LRU: bounded, the oldest unmatched entries make room. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, PASSIVE_LIMIT_TIMESTAMPS);
	__type(key, struct passive_ts_key);
	__type(value, __u64); /* first-seen time, ns; 0 = ambiguous (retransmitted SYN), no sample */
} passive_timestamps SEC(".maps");

/* Per flow, the last TSval stored (see struct passive_flow_state).  Shared, LRU. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, PASSIVE_LIMIT_FLOWS);
	__type(key, struct passive_flow);
	__type(value, struct passive_flow_state);
} passive_flows SEC(".maps");

/* RTT aggregates per interface (key: ifindex), per CPU: no atomics on the fast path, and user
 * space reads them whenever it likes (no per-packet events).  LRU so interfaces long gone are
 * evicted instead of new ones going unmeasured. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_PERCPU_HASH);
	__uint(max_entries, PASSIVE_LIMIT_IFACES);
	__type(key, __u32);
	__type(value, struct passive_rtt_agg);
} passive_rtt SEC(".maps");

#endif /* PASSIVE_MAPS_H */
