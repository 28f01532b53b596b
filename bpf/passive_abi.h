/* passive_abi.h — puts passive_common.h's enums into passive.bpf.o's BTF (see pathsteer_abi.h
 * for why a never-called function does it); included once, by passive.bpf.c. */
#ifndef PASSIVE_ABI_H
#define PASSIVE_ABI_H

#include "passive_common.h"

__attribute__((noinline)) int passive_abi(enum passive_limits limits, enum passive_id_kind kind)
{
	return limits + kind;
}

#endif /* PASSIVE_ABI_H */
