// SPDX-License-Identifier: GPL-2.0
/* xdpgen.bpf.c — a packet generator for benchmarks, not part of the daemon.
 *
 * Run through BPF_PROG_TEST_RUN in live-frames mode (BPF_F_TEST_XDP_LIVE_FRAMES, kernel
 * >= 5.18): the kernel puts the test frame in a page-pool page, runs this program `repeat`
 * times and really performs the redirect, so every frame leaves as an xdp_frame through the
 * target device's ndo_xdp_xmit. Aimed at one end of a veth pair, the other end receives
 * xdp_frames in its NAPI poll as it would DMA'd pages from a NIC: no skb exists until (and
 * unless) the receiver's XDP program passes the frame.
 *
 * xdpgen_target[0] holds the ifindex to redirect to (0: drop every frame, the generator's
 * own cost). The frame is sent unchanged. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} xdpgen_target SEC(".maps");

SEC("xdp")
int xdp_gen(struct xdp_md *ctx)
{
	__u32 key = 0;
	__u32 *ifindex = bpf_map_lookup_elem(&xdpgen_target, &key);

	if (!ifindex || !*ifindex)
		return XDP_DROP;
	return bpf_redirect(*ifindex, 0);
}

char LICENSE[] SEC("license") = "GPL";
