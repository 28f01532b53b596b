// SPDX-License-Identifier: GPL-2.0
/* baseline.bpf.c — programs that return the pass verdict and do nothing else: the anchor
 * every BPF benchmark measures in the same run (what BPF_PROG_TEST_RUN itself costs). */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int xdp_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

SEC("tc")
int tc_pass(struct __sk_buff *skb)
{
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "GPL";
