//! Per-worker counters. Each worker is the only writer of its own block, so
//! an increment is a relaxed load and store (a plain `add`, no locked
//! instruction, no cache line shared between cores); the control thread
//! reads the blocks and sums them for the metrics.

use std::sync::atomic::{AtomicU64, Ordering};

/// Why the dataplane dropped a packet. Every reason has its own counter and
/// its own `reason` label in `lb_packets_dropped_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum DropReason {
    /// Shorter than the headers it claims to have.
    Truncated,
    /// A chained (multi-segment) mbuf; ports are configured so that none
    /// should arrive.
    MultiSegment,
    /// An Ethernet destination that is neither ours nor broadcast/multicast.
    NotOurMac,
    /// An ethertype we do not handle (VLAN-tagged, ...), or IPv6 on a port
    /// without an IPv6 address.
    UnsupportedEthertype,
    /// An ARP packet that is not Ethernet/IPv4, or a request not for us.
    ArpIgnored,
    /// An IPv4 header that does not check out: version, IHL, total length.
    BadIpHeader,
    /// An IPv4 header checksum that does not verify.
    BadIpChecksum,
    /// IPv4 options, which the fast path does not handle.
    IpOptions,
    /// An IPv4 fragment, or an IPv6 packet with a fragment header.
    Fragment,
    /// TTL (IPv6: hop limit) would reach zero.
    TtlExceeded,
    /// ICMP addressed to us that we do not answer.
    IcmpNotHandled,
    /// An ICMP, TCP or UDP checksum that does not verify, on a packet we
    /// terminate ourselves (forwarded packets keep their checksum's fate).
    BadL4Checksum,
    /// Addressed to a VIP, but no service listens on that protocol and port.
    NoService,
    /// Neither for one of our addresses nor for a flow we know.
    NotForUs,
    /// The transmit queue did not take the packet.
    TxFull,
    /// A TCP or UDP header whose fields do not fit the packet.
    BadL4Header,
    /// A TCP segment other than a SYN, or a NAT reply, for no known flow.
    NoFlow,
    /// Every real of the service is down or drained.
    NoReal,
    /// The flow's real was removed by a reload.
    RealRemoved,
    /// Larger than the outgoing port's MTU (and not answered with ICMP).
    TooBig,
    /// No connected network and no gateway for the destination.
    NoRoute,
    /// The next hop's MAC address did not resolve in time, or too many
    /// packets were waiting for resolutions.
    NeighborUnresolved,
    /// The ring to the worker that owns the flow was full (or the owner
    /// stopped with it still in its ring).
    HandoffFull,
    /// No headroom to add the IPIP header.
    NoHeadroom,
    /// A new flow that could not get a table entry (every entry was
    /// confirmed) and whose later packets would not find their real
    /// without one (NAT, or a scheduler that does not hash).
    FlowTableFull,
    /// A new flow from a client address that already holds its share of a
    /// table at least half full.
    SourceLimit,
    /// An ACK for no flow whose acknowledgment number is not a SYN cookie
    /// of ours (a spoofed or very late ACK) while the SYN proxy is on.
    SynProxyBadCookie,
    /// A segment of a proxied flow that is waiting for its real's SYN-ACK
    /// and is not deferred (`pipeline::DeferList`): client data beyond its
    /// flow's share or with every slot taken, kept too long, or whose flow
    /// closed meanwhile, and anything else the client sends then (the
    /// client retransmits what matters); or a real's segment that does not
    /// complete the handshake.
    SynProxyPending,
    /// An IPv6 extension header the fast path does not pass (a routing
    /// header with segments left, a chain longer than 8 headers) or one
    /// that does not fit the packet.
    Ipv6Extension,
    /// A neighbor-discovery message that fails RFC 4861's checks (hop
    /// limit not 255, bad code, length or options, a malformed DAD probe).
    NdpInvalid,
    /// A valid neighbor-discovery message we do not act on: a solicitation
    /// for an address that is not ours, an advertisement we do not learn
    /// from.
    NdpIgnored,
    /// For the port's kernel interface, but over the exception path's
    /// budget (a flood to the port's address), or not taken by the tap.
    KernelQueueFull,
    /// A packet the worker makes itself, in a buffer of its own, not made:
    /// the mbuf pool was empty (every buffer in flight, in rings or held).
    /// Such packets are the SYNs the SYN proxy sends reals again (the flow
    /// keeps that attempt and tries again: `flow::synproxy::SynRetries`),
    /// ARP requests and neighbor solicitations (asked again by a later
    /// packet), and gratuitous ARPs and unsolicited advertisements of a
    /// floating gateway (the next of the repeats goes as planned).
    NoMbuf,
    /// An mbuf whose buffer is not its own (attached to another mbuf's or
    /// to external memory, or referenced twice): the dataplane rewrites
    /// packets in place, so such a buffer is never given to it.
    SharedBuffer,
    /// From a source that belongs to another port (its address, or on its
    /// network and not on this port's nor a routing peer): a reverse-path
    /// check, for the port's kernel interface (Linux's loose one would let
    /// such a forged source reach a local socket) and for a request that
    /// would make a flow (the real's answer would go to that host).
    ReversePath,
    /// A new NAT flow whose real would see the same connection (client
    /// address and port, real address and port) as a live connection the
    /// appliance holds to another VIP on that real: the real could not
    /// tell the two apart, and the replies of one would go out as the
    /// other's.
    TupleInUse,
    /// A received mbuf whose lengths its driver left inconsistent: its
    /// data past the end of its buffer, or a one-segment packet whose
    /// length is not its segment's. A driver bug; the packet would be
    /// read out of bounds or sent on with lengths that disagree.
    BadMbuf,
}

impl DropReason {
    pub const ALL: [DropReason; 37] = [
        DropReason::Truncated,
        DropReason::MultiSegment,
        DropReason::NotOurMac,
        DropReason::UnsupportedEthertype,
        DropReason::ArpIgnored,
        DropReason::BadIpHeader,
        DropReason::BadIpChecksum,
        DropReason::IpOptions,
        DropReason::Fragment,
        DropReason::TtlExceeded,
        DropReason::IcmpNotHandled,
        DropReason::BadL4Checksum,
        DropReason::NoService,
        DropReason::NotForUs,
        DropReason::TxFull,
        DropReason::BadL4Header,
        DropReason::NoFlow,
        DropReason::NoReal,
        DropReason::RealRemoved,
        DropReason::TooBig,
        DropReason::NoRoute,
        DropReason::NeighborUnresolved,
        DropReason::HandoffFull,
        DropReason::NoHeadroom,
        DropReason::FlowTableFull,
        DropReason::SourceLimit,
        DropReason::SynProxyBadCookie,
        DropReason::SynProxyPending,
        DropReason::Ipv6Extension,
        DropReason::NdpInvalid,
        DropReason::NdpIgnored,
        DropReason::KernelQueueFull,
        DropReason::NoMbuf,
        DropReason::SharedBuffer,
        DropReason::ReversePath,
        DropReason::TupleInUse,
        DropReason::BadMbuf,
    ];
    pub const COUNT: usize = Self::ALL.len();

    /// The `reason` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Truncated => "truncated",
            DropReason::MultiSegment => "multi_segment",
            DropReason::NotOurMac => "not_our_mac",
            DropReason::UnsupportedEthertype => "unsupported_ethertype",
            DropReason::ArpIgnored => "arp_ignored",
            DropReason::BadIpHeader => "bad_ip_header",
            DropReason::BadIpChecksum => "bad_ip_checksum",
            DropReason::IpOptions => "ip_options",
            DropReason::Fragment => "fragment",
            DropReason::TtlExceeded => "ttl_exceeded",
            DropReason::IcmpNotHandled => "icmp_not_handled",
            DropReason::BadL4Checksum => "bad_l4_checksum",
            DropReason::NoService => "no_service",
            DropReason::NotForUs => "not_for_us",
            DropReason::TxFull => "tx_full",
            DropReason::BadL4Header => "bad_l4_header",
            DropReason::NoFlow => "no_flow",
            DropReason::NoReal => "no_real",
            DropReason::RealRemoved => "real_removed",
            DropReason::TooBig => "too_big",
            DropReason::NoRoute => "no_route",
            DropReason::NeighborUnresolved => "neighbor_unresolved",
            DropReason::HandoffFull => "handoff_full",
            DropReason::NoHeadroom => "no_headroom",
            DropReason::FlowTableFull => "flow_table_full",
            DropReason::SourceLimit => "source_limit",
            DropReason::SynProxyBadCookie => "syn_proxy_bad_cookie",
            DropReason::SynProxyPending => "syn_proxy_pending",
            DropReason::Ipv6Extension => "ipv6_extension",
            DropReason::NdpInvalid => "ndp_invalid",
            DropReason::NdpIgnored => "ndp_ignored",
            DropReason::KernelQueueFull => "kernel_queue_full",
            DropReason::NoMbuf => "no_mbuf",
            DropReason::SharedBuffer => "shared_buffer",
            DropReason::ReversePath => "reverse_path",
            DropReason::TupleInUse => "tuple_in_use",
            DropReason::BadMbuf => "bad_mbuf",
        }
    }
}

/// A counter with one writer. `add` must only be called by the owning
/// worker; anyone may `get`.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    #[inline]
    pub fn add(&self, n: u64) {
        // Single writer: load + store is exact and compiles to a plain add.
        self.0.store(
            self.0.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }

    #[inline]
    pub fn incr(&self) {
        self.add(1)
    }

    /// Sets a gauge (single writer).
    #[inline]
    pub fn set(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed)
    }

    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    /// Sets a gauge after everything its writer did before: a reader that
    /// sees `v` with [`Counter::get_acquire`] sees those writes too (the
    /// worker's `generation`, read before its per-real gauges when a real's
    /// id is to be given again).
    #[inline]
    pub fn set_release(&self, v: u64) {
        self.0.store(v, Ordering::Release)
    }

    /// Reads a gauge set with [`Counter::set_release`].
    #[inline]
    pub fn get_acquire(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }
}

/// Traffic of one real (indexed by its stable id) on one worker.
#[derive(Debug, Default)]
pub struct RealCounters {
    pub flows_created: Counter,
    pub packets: Counter,
    pub bytes: Counter,
    /// Flows of this real in the worker's table now (a gauge).
    pub active: Counter,
    /// Of those, the ones not established (`FlowState::is_inactive`:
    /// SYN sent, FIN wait, closed), ipvsadm's InActConn (a gauge).
    pub inactive: Counter,
    /// Persistence templates that send their client to this real, in the
    /// worker's table now (a gauge, not exported: the real's id goes to
    /// another real only while this is 0, as `active`, or a client
    /// would follow its template to the other real).
    pub templates: Counter,
}

/// The most ports per-port worker counters are kept for.
pub const MAX_PORTS: usize = 32;

/// The gauges of one address family's flow table.
#[derive(Debug, Default)]
pub struct FamilyFlows {
    pub active: Counter,
    pub by_trust: [Counter; 3],
    pub capacity: Counter,
}

/// One worker's counters, on cache lines of its own.
#[derive(Debug)]
#[repr(align(128))]
pub struct WorkerStats {
    pub rx_packets: Counter,
    pub tx_packets: Counter,
    /// Poll-loop iterations, and those that received at least one packet.
    pub polls: Counter,
    pub busy_polls: Counter,
    pub arp_replies: Counter,
    /// Neighbor advertisements sent (answers to solicitations), and
    /// solicitations sent to resolve IPv6 next hops.
    pub ndp_advertisements: Counter,
    pub ndp_solicitations: Counter,
    /// Lookups that found an ARP request (index 0) or a neighbor
    /// solicitation (1) due and a budget refused it
    /// (`neighbor::NeighborCache`): a flood of next hops that strangers
    /// name, or more unknown next hops than the budgets allow. Set by the
    /// worker from its caches' counts.
    pub neighbor_requests_refused: [Counter; 2],
    pub icmp_echo_replies: Counter,
    /// The snapshot generation this worker runs.
    pub generation: Counter,
    /// Flows in this worker's table now (a gauge the worker sets).
    pub active_flows: Counter,
    /// Entries per trust class (`flow::Trust` order: unconfirmed, one-way,
    /// confirmed), gauges set at each sweep (every poll).
    pub flows_by_trust: [Counter; 3],
    pub flow_capacity: Counter,
    /// The same three gauges for the worker's IPv6 flow table (the fields
    /// above are its IPv4 table's).
    pub ipv6_flows: FamilyFlows,
    /// Flows scheduled (with or without a table entry).
    pub flows_created: Counter,
    /// New flows forwarded without an entry because the table was full.
    pub flow_table_full: Counter,
    pub flows_expired: Counter,
    /// Flows (unconfirmed or one-way ones) evicted to make room for new
    /// flows.
    pub flows_evicted: Counter,
    /// Packets of Maglev flows picked up mid-stream (TUN, DR) forwarded by
    /// hash without an entry, because the table was at least half full.
    pub stateless_forwards: Counter,
    /// NAT packets from a real's address, to a flow that does not trust
    /// its real's side yet, that did not come from where the real is
    /// reached (its port and next hop's MAC): passed on, believed in
    /// nothing (forged, or replies routed back another way).
    pub nat_replies_unvouched: Counter,
    /// Packets handed to / received from the worker that owns their flow.
    pub handoffs_out: Counter,
    pub handoffs_in: Counter,
    pub arp_requests: Counter,
    /// Packets held while their next hop was being resolved.
    pub held: Counter,
    /// Frames the worker took in itself, neither sent nor dropped: ARP
    /// replies and Neighbor Advertisements it learned from (without this,
    /// rx was more than what became of the frames).
    pub consumed: Counter,
    pub icmp_frag_needed: Counter,
    /// "Fragmentation needed" not sent: over the ICMP rate limit.
    pub icmp_rate_limited: Counter,
    pub icmp_errors_forwarded: Counter,
    /// SYN proxy: SYN-ACKs with a cookie sent to clients.
    pub syn_proxy_cookies_sent: Counter,
    /// SYN proxy: ACKs whose cookie checked out (a flow and a SYN to a
    /// real each).
    pub syn_proxy_cookies_accepted: Counter,
    /// SYN proxy: client segments kept while their flow waited for the
    /// real's SYN-ACK, to be sent on once it answered (each counted once).
    pub syn_proxy_deferred: Counter,
    /// SYN proxy: SYNs sent to a real again, for a flow whose real had
    /// not answered, asked by its client's segments or by the timer
    /// (`flow::synproxy::SynRetries`, `SynWatch`).
    pub syn_proxy_syn_retransmits: Counter,
    /// Connection sync: what this worker recorded for the peer and
    /// installed from it (`crate::sync`).
    pub sync: crate::sync::SyncCounters,
    /// Packets the tx queue of each port did not take, by port index
    /// (config order; at most `MAX_PORTS` ports, which config checks).
    pub tx_failed: [Counter; MAX_PORTS],
    /// The exception path, by port index (config order): frames given to
    /// the port's kernel interface, and frames the kernel sent that left
    /// through the port.
    pub to_kernel: [Counter; MAX_PORTS],
    pub from_kernel: [Counter; MAX_PORTS],
    drops: [Counter; DropReason::COUNT],
    /// Of a fixed length, so that [`Self::real`] clamps an id to a
    /// constant and needs no bounds check.
    reals: Box<[RealCounters; crate::snapshot::MAX_REALS]>,
}

impl WorkerStats {
    /// The flow-table gauges of address family `family` (`FlowAddr::FAMILY`:
    /// 0 IPv4, 1 IPv6): active, per trust class, capacity.
    #[inline]
    pub fn flow_gauges(&self, family: usize) -> (&Counter, &[Counter; 3], &Counter) {
        if family == 0 {
            (
                &self.active_flows,
                &self.flows_by_trust,
                &self.flow_capacity,
            )
        } else {
            let f = &self.ipv6_flows;
            (&f.active, &f.by_trust, &f.capacity)
        }
    }
}

impl Default for WorkerStats {
    fn default() -> Self {
        WorkerStats {
            rx_packets: Counter::default(),
            tx_packets: Counter::default(),
            polls: Counter::default(),
            busy_polls: Counter::default(),
            arp_replies: Counter::default(),
            ndp_advertisements: Counter::default(),
            ndp_solicitations: Counter::default(),
            neighbor_requests_refused: Default::default(),
            icmp_echo_replies: Counter::default(),
            generation: Counter::default(),
            active_flows: Counter::default(),
            flows_by_trust: Default::default(),
            flow_capacity: Counter::default(),
            ipv6_flows: FamilyFlows::default(),
            flows_created: Counter::default(),
            flow_table_full: Counter::default(),
            flows_expired: Counter::default(),
            flows_evicted: Counter::default(),
            stateless_forwards: Counter::default(),
            nat_replies_unvouched: Counter::default(),
            handoffs_out: Counter::default(),
            handoffs_in: Counter::default(),
            arp_requests: Counter::default(),
            held: Counter::default(),
            consumed: Counter::default(),
            icmp_frag_needed: Counter::default(),
            icmp_rate_limited: Counter::default(),
            icmp_errors_forwarded: Counter::default(),
            syn_proxy_cookies_sent: Counter::default(),
            syn_proxy_cookies_accepted: Counter::default(),
            syn_proxy_deferred: Counter::default(),
            syn_proxy_syn_retransmits: Counter::default(),
            sync: Default::default(),
            tx_failed: Default::default(),
            to_kernel: Default::default(),
            from_kernel: Default::default(),
            // (`Default` stops at 32 elements.)
            drops: std::array::from_fn(|_| Counter::default()),
            reals: (0..crate::snapshot::MAX_REALS)
                .map(|_| RealCounters::default())
                .collect::<Box<[_]>>()
                .try_into()
                .unwrap_or_else(|_| unreachable!("MAX_REALS counters")),
        }
    }
}

impl WorkerStats {
    #[inline]
    pub fn drop_packet(&self, reason: DropReason) {
        self.drops[reason as usize].incr()
    }

    #[inline]
    pub fn drop_packets(&self, reason: DropReason, n: u64) {
        self.drops[reason as usize].add(n)
    }

    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize].get()
    }

    /// The counters of the real with stable id `id`.
    #[inline]
    pub fn real(&self, id: u32) -> &RealCounters {
        &self.reals[(id as usize).min(crate::snapshot::MAX_REALS - 1)]
    }

    pub fn dropped_total(&self) -> u64 {
        self.drops.iter().map(Counter::get).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_reason_labels_are_distinct_and_indexed_in_order() {
        let mut labels: Vec<_> = DropReason::ALL.iter().map(|r| r.as_str()).collect();
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
        labels.sort();
        labels.dedup();
        assert_eq!(labels.len(), DropReason::COUNT);
    }

    #[test]
    fn counters_count() {
        let s = WorkerStats::default();
        s.drop_packet(DropReason::Fragment);
        s.drop_packets(DropReason::Fragment, 2);
        s.rx_packets.add(5);
        assert_eq!(s.dropped(DropReason::Fragment), 3);
        assert_eq!(s.dropped_total(), 3);
        assert_eq!(s.rx_packets.get(), 5);
    }
}
