/* steer_abi.h — puts steer_common.h's enums, and common.h's TC order, into steer.bpf.o's BTF
 * (see counters_abi.h for why never-called functions do it); included once, by steer.bpf.c.
 * BPF functions take at most five arguments, hence two functions. */
#ifndef STEER_ABI_H
#define STEER_ABI_H

#include "common.h"
#include "steer_common.h"

__attribute__((noinline)) int steer_abi(enum steer_limits limits, enum steer_hash hash, enum steer_reason reason,
					enum steer_path_flags flags)
{
	return limits + hash + reason + flags;
}

__attribute__((noinline)) int steer_abi_groups(enum steer_group_special special, enum pathsteer_tc_prio prio,
					       enum pathsteer_tc_handle handle, enum steer_family_index family,
					       enum steer_step step)
{
	return special + prio + handle + family + step;
}

__attribute__((noinline)) int steer_abi_v4(enum steer_v4_entry entry)
{
	return entry;
}

#endif /* STEER_ABI_H */
