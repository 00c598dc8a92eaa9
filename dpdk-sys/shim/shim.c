/* Out-of-line copies of DPDK's static inline functions, so that Rust can
 * link against them. Each is a one-line forward; keep them that way. */

#include "shim.h"

int lb_rte_errno(void) { return rte_errno; }

uint16_t lb_rte_eth_rx_burst(uint16_t port_id, uint16_t queue_id,
			     struct rte_mbuf **rx_pkts, uint16_t nb_pkts)
{
	return rte_eth_rx_burst(port_id, queue_id, rx_pkts, nb_pkts);
}

uint16_t lb_rte_eth_tx_burst(uint16_t port_id, uint16_t queue_id,
			     struct rte_mbuf **tx_pkts, uint16_t nb_pkts)
{
	return rte_eth_tx_burst(port_id, queue_id, tx_pkts, nb_pkts);
}

struct rte_mbuf *lb_rte_pktmbuf_alloc(struct rte_mempool *mp)
{
	return rte_pktmbuf_alloc(mp);
}

void lb_rte_pktmbuf_free(struct rte_mbuf *m) { rte_pktmbuf_free(m); }

char *lb_rte_pktmbuf_prepend(struct rte_mbuf *m, uint16_t len)
{
	return rte_pktmbuf_prepend(m, len);
}

char *lb_rte_pktmbuf_append(struct rte_mbuf *m, uint16_t len)
{
	return rte_pktmbuf_append(m, len);
}

char *lb_rte_pktmbuf_adj(struct rte_mbuf *m, uint16_t len)
{
	return rte_pktmbuf_adj(m, len);
}

int lb_rte_pktmbuf_trim(struct rte_mbuf *m, uint16_t len)
{
	return rte_pktmbuf_trim(m, len);
}

unsigned lb_rte_lcore_id(void) { return rte_lcore_id(); }

uint64_t lb_rte_rdtsc(void) { return rte_rdtsc(); }

void lb_rte_prefetch0(const void *p) { rte_prefetch0(p); }

const char *lb_rte_version(void) { return rte_version(); }

unsigned int lb_rte_ring_enqueue_burst(struct rte_ring *r, void *const *objs,
				       unsigned int n)
{
	return rte_ring_enqueue_burst(r, objs, n, NULL);
}

unsigned int lb_rte_ring_dequeue_burst(struct rte_ring *r, void **objs,
				       unsigned int n)
{
	return rte_ring_dequeue_burst(r, objs, n, NULL);
}

uint64_t lb_rss_hf_ip_tcp_udp(void)
{
	return RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP | RTE_ETH_RSS_UDP;
}


uint64_t lb_rx_offload_ipv4_cksum(void)
{
	return RTE_ETH_RX_OFFLOAD_IPV4_CKSUM;
}

size_t lb_rte_mbuf_layout(size_t *out, size_t n)
{
	/* The size of an mbuf and where the fields lb_dataplane reads
	 * straight from the struct lie, as this C compiler lays them out
	 * with DPDK's own flags: a test compares them with bindgen's. */
	const size_t l[] = {
		sizeof(struct rte_mbuf),
		offsetof(struct rte_mbuf, buf_addr),
		offsetof(struct rte_mbuf, data_off),
		offsetof(struct rte_mbuf, refcnt),
		offsetof(struct rte_mbuf, nb_segs),
		offsetof(struct rte_mbuf, port),
		offsetof(struct rte_mbuf, ol_flags),
		offsetof(struct rte_mbuf, pkt_len),
		offsetof(struct rte_mbuf, data_len),
		offsetof(struct rte_mbuf, hash.rss),
	};
	size_t count = sizeof(l) / sizeof(l[0]);
	for (size_t i = 0; i < n && i < count; i++)
		out[i] = l[i];
	return count;
}
