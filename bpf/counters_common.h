/* counters_common.h — the counters program's (counters.bpf.c) names and limits, shared with
 * user space (pathsteer.bpf.counters).
 *
 * How these reach Python: every value user space needs is an enumerator of a named enum
 * here, never a bare #define.  clang writes an enum into the object's BTF when something in
 * the object refers to its type; counters_abi.h gives the object such a reference (see there).
 * The Python side reads the values with libbpf's btf__ API (pathsteer.bpf.btf.Btf.enum_values)
 * from the compiled object, so no number in this file is written a second time in Python.  A
 * limit is overridable at build time (-DNAME=...) through its #ifndef default; the enumerator
 * then carries the value that was actually compiled.  The other programs' *_common.h follow
 * the same convention; what all programs share is in common.h.
 */
#ifndef COUNTERS_COMMON_H
#define COUNTERS_COMMON_H

#include "common.h"

/* Limits (build-time; each has an #ifndef default so `make BPF_CFLAGS+=-D...` can change it). */
#ifndef PATHSTEER_MAX_COUNTER_KEYS
#define PATHSTEER_MAX_COUNTER_KEYS 4096 /* (ifindex, hook) pairs: 3 hooks x ~1365 interfaces */
#endif

enum pathsteer_limits {
	/* max_entries of iface_counters: how many (interface, hook) pairs can be counted */
	PATHSTEER_LIMIT_COUNTER_KEYS = PATHSTEER_MAX_COUNTER_KEYS,
};

/* Where in the packet path a program runs; part of the counter key so one loaded program
 * can count the same interface at several hooks without mixing the numbers. */
enum pathsteer_hook {
	PATHSTEER_HOOK_XDP = 0,        /* XDP, driver or generic mode (ingress only) */
	PATHSTEER_HOOK_TC_INGRESS = 1, /* TC clsact ingress (after GRO, before the IP stack) */
	PATHSTEER_HOOK_TC_EGRESS = 2,  /* TC clsact egress (after the qdisc picks the device) */
};

#endif /* COUNTERS_COMMON_H */
