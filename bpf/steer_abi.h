/* steer_abi.h — puts steer_common.h's enums into steer.bpf.o's BTF (see pathsteer_abi.h for
 * why a never-called function does it); included once, by steer.bpf.c. */
#ifndef STEER_ABI_H
#define STEER_ABI_H

#include "steer_common.h"

__attribute__((noinline)) int steer_abi(enum steer_limits limits, enum steer_hash hash, enum steer_reason reason,
					enum steer_path_flags flags, enum steer_tc tc)
{
	return limits + hash + reason + flags + tc;
}

__attribute__((noinline)) int steer_abi_groups(enum steer_group_special special)
{
	return special;
}

#endif /* STEER_ABI_H */
