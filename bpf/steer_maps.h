/* steer_maps.h — the steering program's maps, each named after what it holds. */
#ifndef STEER_MAPS_H
#define STEER_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "common.h"
#include "steer_common.h"
#include "steer_structs.h"

/* The route maps' type: exact-match hashes probed once per prefix length present (cost grows
 * with the number of distinct lengths, not with the table).  -DSTEER_ROUTES_LPM=1 builds the
 * LPM tries of the first version instead: only the bench builds that, as its comparison. */
#ifndef STEER_ROUTES_LPM
#define STEER_ROUTES_LPM 0
#endif
#if STEER_ROUTES_LPM
#define STEER_ROUTES_TYPE BPF_MAP_TYPE_LPM_TRIE
#else
#define STEER_ROUTES_TYPE BPF_MAP_TYPE_HASH
#endif

/* Steered IPv4 destination prefixes (prefix length, masked address) -> group slot. */
struct {
	__uint(type, STEER_ROUTES_TYPE);
	__uint(max_entries, STEER_MAX_ROUTES);
	/* elements allocated on update (and swapped under RCU: an update is atomic); required
	 * for LPM tries */
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct steer_v4_key);
	__type(value, struct steer_route);
} routes_v4 SEC(".maps");

/* Steered IPv6 destination prefixes -> group slot. */
struct {
	__uint(type, STEER_ROUTES_TYPE);
	__uint(max_entries, STEER_MAX_ROUTES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct steer_v6_key);
	__type(value, struct steer_route);
} routes_v6 SEC(".maps");

/* The same IPv6 prefixes as an LPM trie: looked up instead of routes_v6 while route_lengths
 * names more than STEER_V6_HASH_LENGTHS lengths (a trie lookup costs less than that many hash
 * probes).  Written with routes_v6, entry by entry; read by the program only. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, STEER_MAX_ROUTES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct steer_v6_key);
	__type(value, struct steer_route);
} routes_v6_lpm SEC(".maps");

/* IPv4, DIR-24-8's first level: index /24 >> 2 (the destination's top 22 bits), entry
 * (/24 & 3) of the value: the longest match of length <= 24 for the /24 (enum
 * steer_v4_entry).  Derived by user space from routes_v4 (which stays the record: adopt
 * reads it back) and written through mmap with aligned 2-byte stores, so a packet reads an
 * entry as it was or as it becomes, never half of one.  32 MB. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1 << 22);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct steer_v4_quad);
} routes_v4_24 SEC(".maps");

/* Prefix lengths present in routes_v4 (STEER_LENGTHS_V4) and routes_v6 (STEER_LENGTHS_V6). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct steer_lengths);
} route_lengths SEC(".maps");

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

/* Path slot -> egress interface and gateways: two slots per path id (2 id, 2 id + 1), the
 * one path_slots names is live.  A change is written into the other slot, then path_slots
 * flips (one array write): a packet never reads half of a changed path.  An array, not a
 * hash: its lookup is inlined (a hash lookup cost about 40 ns/packet here).  Slot 0 (path id
 * 0, "no path") stays zero. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2 * STEER_MAX_PATHS);
	__type(key, __u32);
	__type(value, struct steer_path);
} steer_paths SEC(".maps");

/* Path id -> its live slot of steer_paths (0: no such path).  Old and new slot differ in the
 * lowest bit only, so even a byte-wise copy of the update reads as one or the other. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, STEER_MAX_PATHS);
	__type(key, __u32);
	__type(value, __u32);
} path_slots SEC(".maps");

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
