// SPDX-License-Identifier: GPL-2.0
/* bad_verifier.bpf.c — compiles, but the verifier must reject it: it reads the packet
 * without first checking data + 4 <= data_end ("invalid access to packet"). */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int xdp_unchecked_read(struct xdp_md *ctx)
{
	__u32 *word = (void *)(long)ctx->data;

	return *word ? XDP_PASS : XDP_DROP;
}

char LICENSE[] SEC("license") = "GPL";
