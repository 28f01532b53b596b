/* steer_maps.h — the steering program's maps, each named after what it holds. */
#ifndef STEER_MAPS_H
#define STEER_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "common.h"
#include "steer_common.h"
#include "steer_structs.h"

/* Steered IPv4 destination prefixes -> group slot. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, STEER_MAX_ROUTES);
	__uint(map_flags, BPF_F_NO_PREALLOC); /* required for LPM tries */
	__type(key, struct steer_v4_key);
	__type(value, struct steer_route);
} routes_v4 SEC(".maps");

/* Steered IPv6 destination prefixes -> group slot. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, STEER_MAX_ROUTES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct steer_v6_key);
	__type(value, struct steer_route);
} routes_v6 SEC(".maps");

/* Maglev tables, one per group slot (Katran's ch_rings, one value per ring).  A slot is
 * written only while no route points to it. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, STEER_MAX_GROUPS);
	__type(key, __u32);
	__type(value, struct ch_ring);
} ch_rings SEC(".maps");

/* The members and weights each ring was built from (read by user space only). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, STEER_MAX_GROUPS);
	__type(key, __u32);
	__type(value, struct steer_group);
} group_members SEC(".maps");

/* Path id -> egress interface and gateways.  A hash without preallocation: an update
 * replaces the element under RCU, so a packet never reads half of a changed path. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, STEER_MAX_PATHS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, struct steer_path);
} steer_paths SEC(".maps");

/* Heartbeat and stale_after (one entry). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct steer_state);
} steer_state SEC(".maps");

/* Packets and bytes steered onto each path (index: path id), per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STEER_MAX_PATHS);
	__type(key, __u32);
	__type(value, struct pathsteer_counter);
} path_counters SEC(".maps");

/* Packets and bytes per outcome (index: enum steer_reason), per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STEER_REASON_COUNT);
	__type(key, __u32);
	__type(value, struct pathsteer_counter);
} steer_stats SEC(".maps");

#endif /* STEER_MAPS_H */
