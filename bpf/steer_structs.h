/* steer_structs.h — layouts of the steering maps' keys and values; the Python mirrors in
 * pathsteer.dataplane.bpf_steer_abi are checked against these through BTF. */
#ifndef STEER_STRUCTS_H
#define STEER_STRUCTS_H

#include <linux/types.h>

#include "common.h"
#include "steer_common.h"

/* Keys of routes_v4 / routes_v6: prefix length in bits, then the address in network order with
 * every bit past the prefix length zero (the hash is exact-match: one lookup per length).  The
 * layout is struct bpf_lpm_trie_key's, so the bench's LPM build takes the same keys. */
struct steer_v4_key {
	__u32 prefixlen;
	__u8 addr[4];
};

struct steer_v6_key {
	__u32 prefixlen;
	__u8 addr[16];
};

/* Value of routes_v4 / routes_v6: which Maglev table (group slot) carries the prefix.
 * Replacing this value is the one atomic step of every route change (a hash update without
 * preallocation swaps the element under RCU: a packet sees the old slot or the new one). */
struct steer_route {
	__u32 group; /* index of ch_rings / group_members */
};

/* Value of routes_v4_24: the entries (enum steer_v4_entry) of four consecutive /24s — an
 * array value is at least 8 bytes, and 2^24 of them would take 128 MB. */
struct steer_v4_quad {
	__u16 entry[4];
};

/* Value of route_lengths: the prefix lengths one family's routes map holds, bit L of
 * bits[L / 64] for length L (IPv4 uses bits 0..32 of bits[0]).  A bit is set only after the
 * first entry of its length is in the map and cleared before the last one is deleted, so a
 * lookup that probes the set lengths longest first finds the longest match. */
struct steer_lengths {
	__u64 bits[STEER_LENGTH_WORDS];
	__u32 lookup_lpm; /* IPv6 only: 1 = look up routes_v6_lpm whatever the lengths (user space
			   * sets it while the table is small: one trie lookup then costs less
			   * than one hash probe) */
	__u32 pad;
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

/* Value of steer_paths (key: path slot, see path_slots): where to send a packet that took
 * this path. */
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
	__u64 fresh_jiffies;  /* written by the program: the jiffy in which it last found the
			       * heartbeat fresh (the check is not repeated within it); user
			       * space writes 0 with every heartbeat, so a new state is checked */
};

#endif /* STEER_STRUCTS_H */
