// SPDX-License-Identifier: GPL-2.0
/*
 * IP-in-IP decapsulation for real servers whose kernel has no ipip or
 * ip6_tunnel module.
 *
 * Attached as a tc-BPF filter on the real's interface ingress, it strips
 * the outer header that lb-appliance adds in VS/TUN:
 *
 *   4in4  outer IPv4, protocol 4 (RFC 2003)
 *   6in6  outer IPv6, next header 41 (RFC 2473)
 *   4in6  outer IPv6, next header 4 (RFC 2473)
 *
 * The inner packet, addressed to the VIP, then goes up the stack as if it
 * had arrived unwrapped; the real replies to the client directly. The real
 * needs the VIP on a local interface (lo) and, for IPv4, rp_filter off, as
 * with a kernel tunnel. See scripts/ipip-decap/README.md.
 *
 * Only plain outer headers are stripped: IPv4 without options and not
 * fragmented; IPv6 whose next header is the inner packet itself (no
 * extension headers, so no fragment header either). The inner header's
 * version must match the outer protocol. Everything else passes untouched
 * to the stack; nothing is dropped unless a helper fails halfway through
 * changing the packet.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <stddef.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#define ETH_LEN sizeof(struct ethhdr)
#define IP4_LEN sizeof(struct iphdr)
#define IP6_LEN sizeof(struct ipv6hdr)

/*
 * Removing an outer header does not change the size of the segments a
 * GRO-merged packet was made of: keep gso_size (without this flag the
 * kernel raises it by the bytes removed, and a later resegmentation can
 * drop the packet).
 */
#define SHRINK_FLAGS BPF_F_ADJ_ROOM_FIXED_GSO

/*
 * Makes the first `len` bytes of the packet directly readable; false if
 * the packet is shorter. Senders that transmit from a packet ring (DPDK's
 * af_packet driver, for one) hand over skbs whose linear part is only the
 * Ethernet header: pull the headers we read into it first. Invalidates
 * every packet pointer.
 */
static __always_inline int headers(struct __sk_buff *skb, __u32 len)
{
	if (skb->len < len)
		return 0;
	if (skb->data_end - skb->data < len && bpf_skb_pull_data(skb, len))
		return 0;
	return 1;
}

/* 4in4: the IPv4 outer header's 20 bytes after the Ethernet header go. */
static __always_inline int decap_ip4(struct __sk_buff *skb)
{
	void *data, *end;
	struct iphdr *outer, *inner;

	if (!headers(skb, ETH_LEN + 2 * IP4_LEN))
		return TC_ACT_OK;
	data = (void *)(long)skb->data;
	end = (void *)(long)skb->data_end;
	outer = data + ETH_LEN;
	if ((void *)(outer + 1) > end || outer->protocol != IPPROTO_IPIP ||
	    outer->ihl != 5 || (outer->frag_off & bpf_htons(0x3fff)))
		return TC_ACT_OK;
	inner = (void *)(outer + 1);
	if ((void *)(inner + 1) > end || inner->version != 4)
		return TC_ACT_OK;
	if (bpf_skb_adjust_room(skb, -(int)IP4_LEN, BPF_ADJ_ROOM_MAC, SHRINK_FLAGS))
		return TC_ACT_SHOT;
	return TC_ACT_OK;
}

/* 6in6 and 4in6: the IPv6 outer header's 40 bytes go. */
static __always_inline int decap_ip6(struct __sk_buff *skb)
{
	void *data, *end;
	struct ipv6hdr *outer;
	__u8 next, version;
	__u32 inner_len;
	__be16 proto;

	/* The next header decides how much there is to read. */
	if (bpf_skb_load_bytes(skb, ETH_LEN + offsetof(struct ipv6hdr, nexthdr), &next, 1))
		return TC_ACT_OK;
	if (next == IPPROTO_IPV6)
		inner_len = IP6_LEN;
	else if (next == IPPROTO_IPIP)
		inner_len = IP4_LEN;
	else
		return TC_ACT_OK;
	if (!headers(skb, ETH_LEN + IP6_LEN + inner_len))
		return TC_ACT_OK;
	data = (void *)(long)skb->data;
	end = (void *)(long)skb->data_end;
	outer = data + ETH_LEN;
	/* The verifier needs the bound for the largest inner header. */
	if ((void *)(outer + 1) + IP4_LEN > end || outer->version != 6 ||
	    outer->nexthdr != next || bpf_ntohs(outer->payload_len) < inner_len)
		return TC_ACT_OK;
	/* The inner header's version is its first byte's high nibble. */
	version = *(__u8 *)(outer + 1) >> 4;

	if (next == IPPROTO_IPV6) {
		if (version != 6)
			return TC_ACT_OK;
		if (bpf_skb_adjust_room(skb, -(int)IP6_LEN, BPF_ADJ_ROOM_MAC, SHRINK_FLAGS))
			return TC_ACT_SHOT;
		return TC_ACT_OK;
	}

	/*
	 * 4in6: the family changes, so skb->protocol (which the stack
	 * dispatches on) and the Ethertype must become IPv4 too.
	 * bpf_skb_change_proto() sets the former and removes 20 of the 40
	 * bytes after the Ethernet header (the IPv6/IPv4 size difference);
	 * bpf_skb_adjust_room() removes the other 20. This works on any
	 * kernel with BPF_ADJ_ROOM_MAC (5.2), unlike adjust_room's newer
	 * BPF_F_ADJ_ROOM_DECAP_L3_IPV4 flag (not in Debian 12's headers).
	 */
	if (version != 4)
		return TC_ACT_OK;
	if (bpf_skb_change_proto(skb, bpf_htons(ETH_P_IP), 0))
		return TC_ACT_OK; /* nothing has changed yet */
	if (bpf_skb_adjust_room(skb, -(int)(IP6_LEN - IP4_LEN), BPF_ADJ_ROOM_MAC, SHRINK_FLAGS))
		return TC_ACT_SHOT;
	proto = bpf_htons(ETH_P_IP);
	if (bpf_skb_store_bytes(skb, offsetof(struct ethhdr, h_proto), &proto, sizeof(proto), 0))
		return TC_ACT_SHOT;
	return TC_ACT_OK;
}

SEC("tc")
int ipip_decap(struct __sk_buff *skb)
{
	__be16 proto;

	if (bpf_skb_load_bytes(skb, offsetof(struct ethhdr, h_proto), &proto, sizeof(proto)))
		return TC_ACT_OK;
	if (proto == bpf_htons(ETH_P_IP))
		return decap_ip4(skb);
	if (proto == bpf_htons(ETH_P_IPV6))
		return decap_ip6(skb);
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "GPL";
