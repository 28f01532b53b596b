/* counters_abi.h — puts the enums of counters_common.h, and common.h's TC order, into
 * counters.bpf.o's BTF; included once, by counters.bpf.c.
 *
 * Why a function: clang's BPF backend emits BTF only for the types of globals, map
 * definitions and function signatures, not for enums used merely as values.  A global
 * variable would do it too, but would cost a .bss map at load time.  This function is never
 * called, so libbpf never loads it (it is a .text subprogram no program references); its
 * signature alone carries each enum into the object's BTF.  The other programs' *_abi.h do
 * the same. */
#ifndef COUNTERS_ABI_H
#define COUNTERS_ABI_H

#include "common.h"
#include "counters_common.h"

__attribute__((noinline)) int counters_abi(enum pathsteer_limits limits, enum pathsteer_hook hook,
					   enum pathsteer_tc_prio prio, enum pathsteer_tc_handle handle)
{
	return limits + hook + prio + handle;
}

#endif /* COUNTERS_ABI_H */
