/* pathsteer_structs.h — the layouts of map keys and values; user space checks its ctypes
 * mirrors against these through the object's BTF (size and every field offset) when it opens
 * a map, so a change here without the matching Python change fails loudly, not silently. */
#ifndef PATHSTEER_STRUCTS_H
#define PATHSTEER_STRUCTS_H

#include <linux/types.h>

#include "pathsteer_common.h"

/* Key of iface_counters: one slot per interface and hook. */
struct counter_key {
	__u32 ifindex;             /* interface index in the namespace the program runs in */
	enum pathsteer_hook hook;  /* 4 bytes: enums are int-sized on the BPF target */
};

/* Value of iface_counters (per CPU; user space sums the CPUs). */
struct counter_value {
	__u64 packets; /* frames seen */
	__u64 bytes;   /* L2 frame length, Ethernet header included, FCS excluded */
};

#endif /* PATHSTEER_STRUCTS_H */
