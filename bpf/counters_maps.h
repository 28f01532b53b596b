/* pathsteer_maps.h — the maps, each named after what it holds; BTF-defined (SEC(".maps")),
 * since libbpf 1.x rejects legacy SEC("maps"). */
#ifndef PATHSTEER_MAPS_H
#define PATHSTEER_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "pathsteer_common.h"
#include "pathsteer_structs.h"

/* Packets and bytes per (ifindex, hook), per CPU: no atomics on the fast path.  LRU, so that
 * keys of interfaces long gone (a lab creates and deletes veths all day) are evicted when the
 * map fills, instead of new interfaces going uncounted. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_PERCPU_HASH);
	__uint(max_entries, PATHSTEER_LIMIT_COUNTER_KEYS);
	__type(key, struct counter_key);
	__type(value, struct counter_value);
} iface_counters SEC(".maps");

#endif /* PATHSTEER_MAPS_H */
