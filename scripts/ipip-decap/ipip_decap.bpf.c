// SPDX-License-Identifier: GPL-2.0
/*
 * IPIP decapsulation for real servers whose kernel has no ipip module.
 *
 * Attached as a tc-BPF filter on the real's interface ingress, it strips
 * the outer IPv4 header (protocol 4, RFC 2003) that lb-appliance adds in
 * VS/TUN. The inner packet, addressed to the VIP, then goes up the stack
 * as if it had arrived unwrapped; the real replies to the client directly.
 * The real needs the VIP on a local interface (lo) and rp_filter off, as
 * with a kernel tunnel. See scripts/ipip-decap/README.md.
 *
 * Only outer headers without options, not fragmented, are stripped; the
 * rest passes untouched.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

/* Ethernet + outer IPv4 + inner IPv4 header. */
#define HEADERS (sizeof(struct ethhdr) + 2 * sizeof(struct iphdr))

SEC("tc")
int ipip_decap(struct __sk_buff *skb)
{
	void *data, *end;
	struct ethhdr *eth;
	struct iphdr *outer, *inner;

	/*
	 * Senders that transmit from a packet ring (DPDK's af_packet driver,
	 * for one) hand over skbs whose linear part is only the Ethernet
	 * header: pull the headers we read into it first.
	 */
	if (skb->len < HEADERS)
		return TC_ACT_OK;
	if (skb->data_end - skb->data < HEADERS && bpf_skb_pull_data(skb, HEADERS))
		return TC_ACT_OK;
	data = (void *)(long)skb->data;
	end = (void *)(long)skb->data_end;
	eth = data;

	if ((void *)(eth + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP))
		return TC_ACT_OK;
	outer = (void *)(eth + 1);
	if ((void *)(outer + 1) > end || outer->protocol != IPPROTO_IPIP ||
	    outer->ihl != 5 || (outer->frag_off & bpf_htons(0x3fff)))
		return TC_ACT_OK;
	inner = (void *)(outer + 1);
	if ((void *)(inner + 1) > end || inner->version != 4)
		return TC_ACT_OK;
	/* Remove the 20 bytes right after the Ethernet header. */
	if (bpf_skb_adjust_room(skb, -(int)sizeof(*outer), BPF_ADJ_ROOM_MAC, 0))
		return TC_ACT_SHOT;
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "GPL";
