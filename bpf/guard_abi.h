/* guard_abi.h — puts guard_common.h's enums into guard.bpf.o's BTF (see pathsteer_abi.h for
 * why a never-called function does it); included once, by guard.bpf.c. */
#ifndef GUARD_ABI_H
#define GUARD_ABI_H

#include "guard_common.h"

__attribute__((noinline)) int guard_abi(enum guard_limits limits, enum guard_verdict verdict,
					enum guard_action action, enum guard_event_kind kind,
					enum guard_family family)
{
	return limits + verdict + action + kind + family;
}

#endif /* GUARD_ABI_H */
