/* guard_maps.h — the guard's maps, each named after what it holds. */
#ifndef GUARD_MAPS_H
#define GUARD_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "common.h"
#include "guard_common.h"
#include "guard_structs.h"

/* Sources never dropped, by CIDR. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, GUARD_MAX_ALLOW);
	__uint(map_flags, BPF_F_NO_PREALLOC); /* required for LPM tries */
	__type(key, struct lpm_v4_key);
	__type(value, struct cidr_rule);
} allow_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, GUARD_MAX_ALLOW);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct lpm_v6_key);
	__type(value, struct cidr_rule);
} allow_v6 SEC(".maps");

/* Sources always dropped, by CIDR: config deny list, manual and automatic blocks. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, GUARD_MAX_DENY);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct lpm_v4_key);
	__type(value, struct cidr_rule);
} deny_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, GUARD_MAX_DENY);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct lpm_v6_key);
	__type(value, struct cidr_rule);
} deny_v6 SEC(".maps");

/* Rate-limit and meter state per source (IPv4 address / IPv6 /64).  LRU: a flood of spoofed
 * sources evicts the least recently seen, so memory stays at max_entries entries. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, GUARD_MAX_SOURCES);
	__type(key, struct addr_key);
	__type(value, struct source_state);
} sources SEC(".maps");

/* SYN-limit state per destination address (LRU, same reason). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, GUARD_MAX_SYN_DESTS);
	__type(key, struct addr_key);
	__type(value, struct syn_state);
} syn_dests SEC(".maps");

/* Protocol/port rules, evaluated in index order up to guard_settings.port_rule_count. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, GUARD_MAX_PORT_RULES);
	__type(key, __u32);
	__type(value, struct port_rule);
} port_rules SEC(".maps");

/* The guard's runtime settings (one entry). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct guard_settings);
} guard_settings SEC(".maps");

/* Packets and bytes per verdict (index: enum guard_verdict), per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, GUARD_VERDICT_COUNT);
	__type(key, __u32);
	__type(value, struct pathsteer_counter);
} verdict_counters SEC(".maps");

/* Packets and bytes per rule id (allow/deny CIDRs, port rules), per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, GUARD_MAX_RULES);
	__type(key, __u32);
	__type(value, struct pathsteer_counter);
} rule_counters SEC(".maps");

/* TCP destination ports protected by SYN cookies: bit (port & 31) of word (port >> 5). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, GUARD_LIMIT_COOKIE_PORT_WORDS);
	__type(key, __u32);
	__type(value, __u32);
} syncookie_ports SEC(".maps");

/* Interfaces (ifindex → 1) on which the protected ports get SYN cookies. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, GUARD_MAX_COOKIE_IFACES);
	__type(key, __u32);
	__type(value, __u32);
} syncookie_ifaces SEC(".maps");

/* Drops seen since the last sampled drop event, per CPU (index 0). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} drop_sampler SEC(".maps");

/* Sampled drop and heavy-hitter events (struct guard_event). */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, GUARD_EVENT_RING_BYTES);
} guard_events SEC(".maps");

#endif /* GUARD_MAPS_H */
