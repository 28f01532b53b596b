/* counters_structs.h — the layout of the counters map's key (its value is common.h's struct
 * pathsteer_counter); user space checks its ctypes mirrors against these through the object's
 * BTF (size and every field offset) when it opens the map, so a change here without the
 * matching Python change fails loudly, not silently. */
#ifndef COUNTERS_STRUCTS_H
#define COUNTERS_STRUCTS_H

#include <linux/types.h>

#include "common.h"
#include "counters_common.h"

/* Key of iface_counters: one slot per interface and hook. */
struct counter_key {
	__u32 ifindex;             /* interface index in the namespace the program runs in */
	enum pathsteer_hook hook;  /* 4 bytes: enums are int-sized on the BPF target */
};

#endif /* COUNTERS_STRUCTS_H */
