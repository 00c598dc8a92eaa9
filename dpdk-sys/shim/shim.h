/* Everything the bindings are generated from, plus out-of-line wrappers for
 * DPDK's static inline functions and its thread-local errno. */
#ifndef LB_DPDK_SHIM_H
#define LB_DPDK_SHIM_H

#include <stddef.h>
#include <stdint.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_launch.h>
#include <rte_cycles.h>
#include <rte_mempool.h>
#include <rte_mbuf.h>
#include <rte_mbuf_pool_ops.h>
#include <rte_ethdev.h>
#include <rte_bus.h>
#include <rte_dev.h>
#include <rte_version.h>
#include <rte_ring.h>

int lb_rte_errno(void);
uint16_t lb_rte_eth_rx_burst(uint16_t port_id, uint16_t queue_id,
			     struct rte_mbuf **rx_pkts, uint16_t nb_pkts);
uint16_t lb_rte_eth_tx_burst(uint16_t port_id, uint16_t queue_id,
			     struct rte_mbuf **tx_pkts, uint16_t nb_pkts);
struct rte_mbuf *lb_rte_pktmbuf_alloc(struct rte_mempool *mp);
void lb_rte_pktmbuf_free(struct rte_mbuf *m);
char *lb_rte_pktmbuf_prepend(struct rte_mbuf *m, uint16_t len);
char *lb_rte_pktmbuf_append(struct rte_mbuf *m, uint16_t len);
char *lb_rte_pktmbuf_adj(struct rte_mbuf *m, uint16_t len);
int lb_rte_pktmbuf_trim(struct rte_mbuf *m, uint16_t len);
unsigned lb_rte_lcore_id(void);
uint64_t lb_rte_rdtsc(void);
void lb_rte_prefetch0(const void *p);
const char *lb_rte_version(void);
unsigned int lb_rte_ring_enqueue_burst(struct rte_ring *r, void *const *objs,
				       unsigned int n);
unsigned int lb_rte_ring_dequeue_burst(struct rte_ring *r, void **objs,
				       unsigned int n);



/* RSS hash types (function-like macros that bindgen cannot evaluate). */
uint64_t lb_rss_hf_ip_tcp_udp(void);
/* RTE_ETH_RX_OFFLOAD_IPV4_CKSUM (an RTE_BIT64 macro). */
uint64_t lb_rx_offload_ipv4_cksum(void);
/* sizeof(struct rte_mbuf), then the offsets of the fields read directly
 * (see shim.c), into out[0..n]; returns how many there are. */
size_t lb_rte_mbuf_layout(size_t *out, size_t n);
#endif
