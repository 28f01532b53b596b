// SPDX-License-Identifier: GPL-2.0
/* fixtures.bpf.c — test-only maps of every kind the loader handles, and a program that
 * reports each frame into a ring buffer. Compiled by tests/kernel/conftest.py. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct pair {
	__u32 a;
	__u32 pad;
	__u64 b;
};

struct frame_event {
	__u32 len;
	__u32 ifindex;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct pair);
} test_hash SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} test_percpu SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 64 * 1024);
} events SEC(".maps");

SEC("xdp")
int xdp_emit(struct xdp_md *ctx)
{
	struct frame_event ev = {
		.len = ctx->data_end - ctx->data,
		.ifindex = ctx->ingress_ifindex,
	};
	__u32 zero = 0;
	__u64 *seen = bpf_map_lookup_elem(&test_percpu, &zero);

	if (seen)
		*seen += 1;
	bpf_ringbuf_output(&events, &ev, sizeof(ev), 0);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
