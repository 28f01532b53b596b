/* counters_maps.h — the counters program's map, named after what it holds; BTF-defined
 * (SEC(".maps")), since libbpf 1.x rejects legacy SEC("maps"). */
#ifndef COUNTERS_MAPS_H
#define COUNTERS_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "common.h"
#include "counters_common.h"
#include "counters_structs.h"

/* Packets and bytes per (ifindex, hook), per CPU: no atomics on the fast path.  LRU, so that
 * keys of interfaces long gone (a lab creates and deletes veths all day) are evicted when the
 * map fills, instead of new interfaces going uncounted. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_PERCPU_HASH);
	__uint(max_entries, PATHSTEER_LIMIT_COUNTER_KEYS);
	__type(key, struct counter_key);
	__type(value, struct pathsteer_counter);
} iface_counters SEC(".maps");

#endif /* COUNTERS_MAPS_H */
