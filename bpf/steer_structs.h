/* steer_structs.h — layouts of the steering maps' keys and values; the Python mirrors in
 * pathsteer.dataplane.bpf_steer_abi are checked against these through BTF. */
#ifndef STEER_STRUCTS_H
#define STEER_STRUCTS_H

#include <linux/types.h>

#include "common.h"
#include "steer_common.h"

/* Keys of routes_v4 / routes_v6: struct bpf_lpm_trie_key layout (prefix length in bits, then
 * the address in network order). */
struct steer_v4_key {
	__u32 prefixlen;
	__u8 addr[4];
};

struct steer_v6_key {
	__u32 prefixlen;
	__u8 addr[16];
};

/* Value of routes_v4 / routes_v6: which Maglev table (group slot) carries the prefix.
 * Replacing this value is the one atomic step of every route change (an LPM update swaps the
 * trie node under RCU: a packet sees the old slot or the new one, never a mix). */
struct steer_route {
	__u32 group; /* index of ch_rings / group_members */
};

/* Value of ch_rings: one Maglev lookup table, ring position -> path id (0 = none). */
struct ch_ring {
	__u16 path[STEER_RING_SIZE];
};

/* Value of group_members: what a ring was built from, for user space to read back (adopt). */
struct steer_group {
	__u16 count;                          /* members in path[0..count) */
	__u16 pad;
	__u16 path[STEER_MAX_GROUP_PATHS];    /* path ids */
	__u8 weight[STEER_MAX_GROUP_PATHS];   /* 1..255 */
};

/* Value of steer_paths (key: path id): where to send a packet that took this path. */
struct steer_path {
	__u32 ifindex;     /* egress interface, in the namespace the program is attached in */
	__u32 flags;       /* enum steer_path_flags */
	__u8 gateway4[4];  /* network order */
	__u8 gateway6[16];
};

/* The one entry of steer_state. */
struct steer_state {
	__u64 heartbeat_ns;   /* CLOCK_MONOTONIC ns of the control plane's last heartbeat; 0 = none */
	__u64 stale_after_ns; /* steer only while now - heartbeat_ns <= stale_after_ns */
};

#endif /* STEER_STRUCTS_H */
