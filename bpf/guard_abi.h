/* guard_abi.h — puts guard_common.h's enums into guard.bpf.o's BTF, and struct guard_event
 * with them (see counters_abi.h for why never-called functions do it); included once, by
 * guard.bpf.c.  BPF functions take at most five arguments, hence two functions. */
#ifndef GUARD_ABI_H
#define GUARD_ABI_H

#include "guard_common.h"
#include "guard_structs.h"

__attribute__((noinline)) int guard_abi(enum guard_limits limits, enum guard_verdict verdict,
					enum guard_action action, enum guard_event_kind kind,
					enum guard_family family)
{
	return limits + verdict + action + kind + family;
}

/* The ring-buffer record is only ever a pointer from bpf_ringbuf_reserve(): named here so
 * that its layout reaches BTF too. */
__attribute__((noinline)) int guard_abi_records(const struct guard_event *event)
{
	return event != 0;
}

__attribute__((noinline)) int guard_abi_syncookies(enum guard_tscookie tscookie)
{
	return tscookie;
}

#endif /* GUARD_ABI_H */
