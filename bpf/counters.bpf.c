// SPDX-License-Identifier: GPL-2.0
/* counters.bpf.c — per-interface packet and byte counters at XDP, TC ingress and TC egress.
 *
 * One loaded object serves every interface: the key is (ifindex, hook), so user space
 * attaches the same program fd to as many interfaces as it likes.  The programs never change
 * a verdict, whatever the frame (truncated and non-IP frames included, they are counted by
 * length and not parsed at all): XDP_PASS, and at TC TC_ACT_UNSPEC — "no opinion, run the next
 * filter" (net/sched/cls_bpf.c) — not TC_ACT_OK, which would end the filter chain so that a
 * later filter on the same hook (steering, passive RTT) never ran.  With no filter after it,
 * TC_ACT_UNSPEC lets the packet through like TC_ACT_OK. */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

#include "common.h"
#include "counters_common.h"
#include "counters_structs.h"
#include "counters_maps.h"
#include "counters_abi.h"

static __always_inline void count(__u32 ifindex, enum pathsteer_hook hook, __u64 len)
{
	struct counter_key key = { .ifindex = ifindex, .hook = hook };
	struct pathsteer_counter *value;

	value = bpf_map_lookup_elem(&iface_counters, &key);
	if (!value) {
		struct pathsteer_counter first = { .packets = 1, .bytes = len };

		/* BPF_NOEXIST: another CPU may have created the entry since our lookup; then the
		 * update fails with -EEXIST and we add to the entry that now exists.  On an LRU map
		 * a full map evicts the least recently used key rather than failing; if the update
		 * fails anyway (-ENOMEM) the frame goes uncounted: counting never changes a verdict. */
		if (bpf_map_update_elem(&iface_counters, &key, &first, BPF_NOEXIST) == 0)
			return;
		value = bpf_map_lookup_elem(&iface_counters, &key);
		if (!value)
			return;
	}
	/* Per-CPU value and BPF programs run with migration disabled: plain adds suffice. */
	value->packets += 1;
	value->bytes += len;
}

SEC("xdp")
int xdp_count(struct xdp_md *ctx)
{
	/* data_end - data is the frame as the driver received it (no FCS); for multi-buffer
	 * frames only the first buffer, which is all a non-frags XDP program can see. */
	count(ctx->ingress_ifindex, PATHSTEER_HOOK_XDP, ctx->data_end - ctx->data);
	return XDP_PASS;
}

SEC("tc")
int tc_count_in(struct __sk_buff *skb)
{
	/* On clsact ingress the kernel pushed the MAC header back before running us
	 * (sch_handle_ingress), so skb->len is the L2 length, like XDP's. */
	count(skb->ifindex, PATHSTEER_HOOK_TC_INGRESS, skb->len);
	return TC_ACT_UNSPEC;
}

SEC("tc")
int tc_count_out(struct __sk_buff *skb)
{
	count(skb->ifindex, PATHSTEER_HOOK_TC_EGRESS, skb->len);
	return TC_ACT_UNSPEC;
}

char LICENSE[] SEC("license") = "GPL";
