/* passive_abi.h — puts passive_common.h's enums, and common.h's TC order, into passive.bpf.o's
 * BTF (see counters_abi.h for why a never-called function does it); included once, by
 * passive.bpf.c. */
#ifndef PASSIVE_ABI_H
#define PASSIVE_ABI_H

#include "common.h"
#include "passive_common.h"

__attribute__((noinline)) int passive_abi(enum passive_limits limits, enum passive_id_kind kind,
					  enum pathsteer_tc_prio prio, enum pathsteer_tc_handle handle)
{
	return limits + kind + prio + handle;
}

#endif /* PASSIVE_ABI_H */
