/* pathsteer_abi.h — puts the shared enums of pathsteer_common.h into a program object's BTF;
 * include it once in every *.bpf.c whose constants user space reads.
 *
 * Why a function: clang's BPF backend emits BTF only for the types of globals, map
 * definitions and function signatures, not for enums used merely as values.  A global
 * variable would do it too, but would cost a .bss map at load time.  This function is never
 * called, so libbpf never loads it (it is a .text subprogram no program references); its
 * signature alone carries each enum into the object's BTF. */
#ifndef PATHSTEER_ABI_H
#define PATHSTEER_ABI_H

#include "pathsteer_common.h"

__attribute__((noinline)) int pathsteer_abi(enum pathsteer_limits limits, enum pathsteer_hook hook)
{
	return limits + hook;
}

#endif /* PATHSTEER_ABI_H */
