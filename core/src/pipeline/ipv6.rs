//! The IPv6 stages, beside IPv4's in `mod.rs` and in the same order:
//! neighbor discovery and echo for our addresses (`local`), then a VIP's
//! service (conntrack and schedule in the worker's IPv6 flow table),
//! rewrite and egress; in transit, only NAT66 replies and ICMPv6 errors
//! from NAT reals. An IPv6 packet reaches these stages only on a port with
//! an IPv6 address (`address6`); elsewhere it is `unsupported_ethertype`,
//! as before IPv6 came.
//!
//! What differs from IPv4: no header checksum; the hop limit is checked
//! and decremented like a TTL; a packet that does not fit the way on is
//! answered with ICMPv6 "packet too big" (IPv6 is never fragmented on the
//! way, whatever the method, DR included); a UDP checksum of 0 is invalid
//! (dropped in `classify`, never produced); TUN wraps in IPv6 (6in6). The
//! SYN proxy covers NAT66 services as it covers IPv4 NAT ones (its IPv6
//! frames in `synproxy6`).

use std::net::{IpAddr, Ipv6Addr};

use lb_config::ForwardingMethod;

use super::synproxy6::Next6;
use super::{local, Ipv6Meta, Lookahead, Pipeline, Ports, Verdict, L4};
use crate::buffer::PacketBuf;
use crate::flow::{FlowKey, ProxyStep, ReplyKey, ReplyStep, Segment};
use crate::forward::{icmpv6, nat, tunnel, IP};
use crate::snapshot::Snapshot;
use crate::stats::DropReason;
use crate::wire::icmpv6::Icmpv6Type;
use crate::wire::ipv6::Ipv6Packet;
use crate::wire::{ipv6, EthernetFrame, IpProtocol, NeighborPacket};

/// Whether `a` is link-local unicast (fe80::/10).
#[inline]
pub(super) fn is_link_local(a: Ipv6Addr) -> bool {
    a.segments()[0] & 0xffc0 == 0xfe80
}

/// Whether `ip` is a multicast listener query as a router sends it:
/// ICMPv6 type 130 from a link-local address with hop limit 1 (RFC 2710
/// §3, RFC 3810 §5.1.14; a query from elsewhere is discarded there too),
/// right after the fixed header or one hop-by-hop header of 8 bytes
/// (Router Alert), in the frame of its group (`33:33` and the group's
/// last four bytes, RFC 2464 §7; found by the `pipeline` fuzz target: one
/// in a broadcast or another group's frame reached the kernel).
fn is_mld_query<B: PacketBuf>(ip: &Ipv6Meta, pkt: &B) -> bool {
    let fixed = IP + ipv6::HEADER_LEN;
    let shape = match ip.l4_start() {
        at if at == fixed => true,
        at if at == fixed + 8 => pkt
            .data()
            .get(IP..)
            .and_then(|b| Ipv6Packet::new_checked(b).ok())
            .is_some_and(|h| h.next_header() == IpProtocol::HopByHop),
        _ => false,
    };
    let frame = EthernetFrame::new_unchecked(pkt.data());
    frame.dst_addr() == crate::wire::ndp::multicast_mac(ip.dst)
        && shape
        && matches!(
            ip.l4,
            L4::Icmpv6 {
                kind: Icmpv6Type::Unknown(130),
                ..
            }
        )
        && ip.src.is_unicast_link_local()
        && ip.hop_limit == 1
}

/// The target of a neighbor-discovery message (unspecified if the message
/// is too short to have one: `local::ndp` has refused it then).
fn ndp_target<B: PacketBuf>(ip: &Ipv6Meta, pkt: &B) -> Ipv6Addr {
    pkt.data()
        .get(ip.l4_start()..ip.end())
        .and_then(|b| NeighborPacket::new_checked(b).ok())
        .map_or(Ipv6Addr::UNSPECIFIED, |m| m.target_addr())
}

impl Pipeline {
    /// Whether `ip` is a Neighbor Solicitation whose source link-layer
    /// address contradicts what is known here of its sender (see
    /// [`Egress::contradicted6`](super::egress::Egress::contradicted6)).
    fn solicitation_contradicts<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        in_port: usize,
        pkt: &B,
        ip: &Ipv6Meta,
        now: u32,
    ) -> bool {
        if !matches!(
            ip.l4,
            L4::Icmpv6 {
                kind: Icmpv6Type::NeighborSolicit,
                ..
            }
        ) || ip.src.is_unspecified()
        {
            return false;
        }
        let mac = pkt
            .data()
            .get(ip.l4_start()..ip.end())
            .and_then(|b| NeighborPacket::new_checked(b).ok())
            .and_then(|m| {
                m.option_iter().find_map(|o| match o {
                    Ok(crate::wire::ndp::NdpOption::SourceLinkAddr(m)) => Some(m),
                    _ => None,
                })
            });
        mac.is_some_and(|m| self.egress.contradicted6(snap, in_port, ip.src, m, now))
    }

    /// An IPv6 packet: neighbor discovery, to us (a VIP's service, or
    /// ICMPv6), or in transit (a NAT66 real's reply or ICMPv6 error).
    /// `ahead`: what the burst's lookahead found (`lookahead6`);
    /// `to_group`: it came in a link-layer multicast frame (neighbor
    /// discovery is handled; nothing is forwarded or answered).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn ipv6<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        in_port: usize,
        pkt: &mut B,
        ip: &Ipv6Meta,
        now: u32,
        ahead: Option<Lookahead>,
        to_group: bool,
    ) -> Verdict {
        if snap.ports[in_port].address6.is_none() || self.conntrack6.is_none() {
            return Verdict::Drop(DropReason::UnsupportedEthertype);
        }
        // Router advertisements and redirects change how a host routes: the
        // kernel interface would take a default route, an address or a
        // hop limit from any host on the segment (Linux accepts them by
        // default; found in audit). The appliance routes by its config,
        // and its kernel interface by nothing else either.
        if let L4::Icmpv6 {
            kind: Icmpv6Type::RouterAdvert | Icmpv6Type::Redirect,
            ..
        } = ip.l4
        {
            return Verdict::Drop(DropReason::NdpIgnored);
        }
        if let L4::Icmpv6 {
            kind: Icmpv6Type::NeighborSolicit | Icmpv6Type::NeighborAdvert,
            ..
        } = ip.l4
        {
            // Never in a fragment, atomic or not (RFC 6980; found in
            // review: an advertisement in an atomic fragment moved a
            // real's MAC, which a guard that inspects unfragmented NDP
            // would not have seen).
            if ip.l4_start() != IP + ipv6::HEADER_LEN && ndp_in_fragment(pkt, ip) {
                return Verdict::Drop(DropReason::Fragment);
            }
            let (v, learn) = local::ndp(
                snap,
                in_port,
                pkt,
                ip.src,
                ip.dst,
                ip.hop_limit,
                ip.l4_start(),
                ip.end(),
                &self.stats,
            );
            let believed = match learn {
                Some((addr, mac, replaces, answer)) => self
                    .egress
                    .learn6(snap, in_port, addr, mac, replaces, answer, now),
                None => true,
            };
            // Solicitations for our addresses stay ours to answer; what we
            // only learn from or ignore (advertisements, solicitations for
            // the kernel's link-local address) is also the kernel's, unless
            // it says something of a neighbor that contradicts what is
            // known here (found in audit: the kernel's cache took an
            // advertisement ours doubted, or a solicitation from a real's
            // address naming another MAC, and sent its health checks and
            // BGP there).
            return match v {
                Verdict::Consumed | Verdict::Drop(DropReason::NdpIgnored)
                    if snap.ports[in_port].kernel
                        && believed
                        && !snap.is_local6(in_port, ndp_target(ip, pkt))
                        && !self.solicitation_contradicts(snap, in_port, pkt, ip, now) =>
                {
                    Verdict::ToKernel
                }
                v => v,
            };
        }
        // No host sends from a group, `::`, `::1` or an IPv4-mapped address
        // (`route::no_host_has6`; a DAD probe's `::` was answered above): such a packet
        // makes no flow and, above all, gets no ICMPv6 error, which would
        // go to a group or to nobody (RFC 4443 §2.4(e); found by fuzzing:
        // "packet too big" was sent to `::`).
        if crate::route::no_host_has6(ip.src) {
            // From `::` to a group is a host with no address yet: MLD
            // reports and other hosts' DAD probes, ordinary on a segment
            // where hosts come up (a kernel interface's MLD report is
            // one). Not for us, not a broken header: counted as such, so
            // that `bad_ip_header` keeps meaning something is wrong.
            let why = if ip.src.is_unspecified() && ip.dst.is_multicast() {
                DropReason::NotForUs
            } else {
                DropReason::BadIpHeader
            };
            return Verdict::Drop(why);
        }
        if ip.dst.is_multicast() {
            // A multicast listener query (MLD, RFC 3810 §5.1.14: from a
            // link-local address, hop limit 1) is the kernel interface's
            // to answer, for the groups of the addresses it holds (the
            // port's among them): a switch that snoops MLD forgets a group
            // whose listeners stop answering, and then no longer sends the
            // port its neighbor solicitations (found in audit: they were
            // dropped, so the port's solicited-node group aged out of
            // such a switch minutes after start).
            if is_mld_query(ip, pkt) {
                return super::to_kernel_or(snap, in_port, ip.src.into(), DropReason::NotForUs);
            }
            return Verdict::Drop(DropReason::NotForUs);
        }
        // A unicast packet in a multicast frame (RFC 1812 5.3.4, as for
        // IPv4): not forwarded, not answered.
        if to_group {
            return Verdict::Drop(DropReason::NotOurMac);
        }
        // A link-local address is valid on its link only: an echo to us
        // from one is answered (in place, on that link), but nothing with
        // a link-local source or destination is forwarded to a real or a
        // client elsewhere (RFC 4291 §2.5.6), as no router forwards it.
        let link_local = is_link_local(ip.src) || is_link_local(ip.dst);
        // The burst's lookahead already sorted TCP and UDP to VIPs and from
        // NAT66 reals (the checks above and below, in the same order, give
        // the same verdicts): `process` and `process_burst` agree. A VIP is
        // never multicast, link-local nor a port's address.
        if !link_local {
            match ahead {
                Some(Lookahead::Request6 { hash, service }) => {
                    if ip.hop_limit <= 1 {
                        return Verdict::Drop(DropReason::TtlExceeded);
                    }
                    if let Some((ports, tcp)) = ip.l4.ports_ref() {
                        return self.request6(
                            snap,
                            service as usize,
                            pkt,
                            ip,
                            ports,
                            tcp,
                            now,
                            Some(hash),
                        );
                    }
                }
                Some(Lookahead::NoService) => return Verdict::Drop(DropReason::NoService),
                Some(Lookahead::Reply6 { hash }) => {
                    if snap.ports[in_port].ipv6() == Some(ip.dst) {
                        // To our own address, not a client's.
                        return super::to_kernel_or(
                            snap,
                            in_port,
                            ip.src.into(),
                            DropReason::NotForUs,
                        );
                    }
                    if snap.ports[in_port].floating6 == Some(ip.dst) {
                        // To the floating gateway: ours, nothing for it
                        // here, as `for_us6` says (found in review).
                        return Verdict::Drop(DropReason::NotForUs);
                    }
                    if ip.hop_limit <= 1 {
                        return Verdict::Drop(DropReason::TtlExceeded);
                    }
                    if let Some((ports, tcp)) = ip.l4.ports_ref() {
                        return self.reply6(snap, in_port, pkt, ip, ports, tcp, now, Some(hash));
                    }
                }
                _ => {}
            }
        }
        if snap.is_local6(in_port, ip.dst) {
            if link_local
                && !matches!(
                    ip.l4,
                    L4::Icmpv6 {
                        kind: Icmpv6Type::EchoRequest,
                        ..
                    }
                )
            {
                return self.port_address6(snap, in_port, ip, DropReason::NotForUs);
            }
            return self.for_us6(snap, in_port, pkt, ip, now);
        }
        if link_local {
            // To the kernel interface's own link-local address, if any.
            if is_link_local(ip.dst) {
                return super::to_kernel_or(snap, in_port, ip.src.into(), DropReason::NotForUs);
            }
            return Verdict::Drop(DropReason::NotForUs);
        }
        // Transit: only NAT66 replies, and ICMPv6 errors about NAT66 flows
        // from their reals or from a router on the way to them.
        if let L4::Icmpv6 { kind, .. } = ip.l4 {
            if icmpv6::is_forwarded_error(kind) {
                return self.icmp6_from_real(snap, in_port, pkt, ip, now);
            }
            return Verdict::Drop(DropReason::NotForUs);
        }
        let (ports, tcp) = match ip.l4 {
            L4::Tcp { ports, segment } => (ports, Some(segment)),
            L4::Udp { ports } => (ports, None),
            L4::Invalid(r) if matches!(ip.protocol, IpProtocol::Tcp | IpProtocol::Udp) => {
                return Verdict::Drop(r)
            }
            _ => return Verdict::Drop(DropReason::NotForUs),
        };
        if !snap.is_nat_endpoint6(u8::from(ip.protocol), ip.src, ports.src) {
            return Verdict::Drop(DropReason::NotForUs);
        }
        if ip.hop_limit <= 1 {
            return Verdict::Drop(DropReason::TtlExceeded);
        }
        self.reply6(snap, in_port, pkt, ip, ports, tcp.as_ref(), now, None)
    }

    /// To a port address or a VIP: echo, ICMPv6 errors about a VIP's flow,
    /// and a VIP's services.
    fn for_us6<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        in_port: usize,
        pkt: &mut B,
        ip: &Ipv6Meta,
        now: u32,
    ) -> Verdict {
        let (ports, tcp) = match ip.l4 {
            L4::Icmpv6 {
                kind: Icmpv6Type::EchoRequest,
                ..
            } => {
                // A reply is built in place: not behind extension headers.
                if usize::from(ip.l4_offset) != ipv6::HEADER_LEN {
                    return Verdict::Drop(DropReason::IcmpNotHandled);
                }
                return local::echo6(snap, in_port, pkt, ip.end(), &self.stats);
            }
            L4::Icmpv6 { kind, .. } => {
                // Packet Too Big about a tunnel's packet is the client's to
                // learn (`tunnel_errors.rs`), not the kernel's.
                if kind == Icmpv6Type::PacketTooBig && snap.ports[in_port].ipv6() == Some(ip.dst) {
                    if let Some(v) = self.tunnel_too_big6(snap, in_port, pkt, ip, now) {
                        return v;
                    }
                }
                if icmpv6::is_forwarded_error(kind) && snap.is_vip6(ip.dst) {
                    return self.icmp6_to_vip(snap, pkt, ip, now);
                }
                return self.port_address6(snap, in_port, ip, DropReason::IcmpNotHandled);
            }
            L4::Tcp { ports, segment } => (ports, Some(segment)),
            L4::Udp { ports } => (ports, None),
            L4::Invalid(r) => return Verdict::Drop(r),
            _ if !snap.is_vip6(ip.dst) => {
                return self.port_address6(snap, in_port, ip, DropReason::NotForUs)
            }
            _ => return Verdict::Drop(DropReason::NoService),
        };
        if !snap.is_vip6(ip.dst) {
            return self.port_address6(snap, in_port, ip, DropReason::NotForUs);
        }
        let Some(service) = snap.service_for6(u8::from(ip.protocol), ip.dst, ports.dst) else {
            return Verdict::Drop(DropReason::NoService);
        };
        if ip.hop_limit <= 1 {
            return Verdict::Drop(DropReason::TtlExceeded);
        }
        self.request6(snap, service, pkt, ip, ports, tcp.as_ref(), now, None)
    }

    /// A packet for one of our addresses that nothing here handles: the
    /// kernel's if it is for the port's own address and the port has a
    /// kernel interface, else dropped for `reason`.
    #[cold]
    fn port_address6(
        &self,
        snap: &Snapshot,
        in_port: usize,
        ip: &Ipv6Meta,
        reason: DropReason,
    ) -> Verdict {
        if snap.ports[in_port].ipv6() == Some(ip.dst) {
            super::to_kernel_or(snap, in_port, ip.src.into(), reason)
        } else {
            Verdict::Drop(reason)
        }
    }

    /// A client's packet to an IPv6 service: conntrack (and schedule) in
    /// the IPv6 table, rewrite, egress. `hash`: its key's index hash, if
    /// the burst's lookahead has it.
    #[allow(clippy::too_many_arguments)]
    fn request6<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        service: usize,
        pkt: &mut B,
        ip: &Ipv6Meta,
        ports: Ports,
        tcp: Option<&Segment>,
        now: u32,
        hash: Option<u64>,
    ) -> Verdict {
        if let Some(v) = self.hand_off(ip.src) {
            return v;
        }
        let in_port = self.in_port;
        let Some(ct) = self.conntrack6.as_mut() else {
            return Verdict::Drop(DropReason::UnsupportedEthertype);
        };
        let key = FlowKey {
            proto: u8::from(ip.protocol),
            client: ip.src,
            client_port: ports.src,
            vip: ip.dst,
            vip_port: ports.dst,
        };
        let hash = hash.unwrap_or_else(|| ct.table().key_hash(&key));
        debug_assert_eq!(hash, ct.table().key_hash(&key), "the lookahead hashed it");
        // The key, and what the closure reads, by value: a reference would
        // hold the key in memory on every packet (`Pipeline::request`).
        let client = key.client;
        let found = ct.lookup_or_create_key::<B>(
            snap,
            service,
            key,
            hash,
            tcp,
            now,
            &mut self.schedulers,
            move || snap.client_elsewhere(in_port, std::net::IpAddr::V6(client)),
        );
        let target = match found {
            Ok(t) => t,
            Err(r) => return Verdict::Drop(r),
        };
        // The SYN proxy (NAT66 services; `pipeline/synproxy6.rs`).
        let (target, adjust) = match target.proxy {
            ProxyStep::None => (target, None),
            ProxyStep::Translate => (target, Some(ct.proxy_adjust())),
            step => {
                let Some(&seg) = tcp else {
                    return Verdict::Drop(DropReason::NoFlow);
                };
                // A copy of its own, so that `key` stays in registers.
                let own_key = key;
                match self
                    .syn_proxy_client6(snap, service, pkt, ip, ports, seg, &own_key, step, now)
                {
                    Next6::Done(v) => return v,
                    Next6::Forward(t) => (t, None),
                }
            }
        };
        let len = pkt.len() as u64;
        let (overhead, from) = match target.method {
            ForwardingMethod::Tunnel => (tunnel::OVERHEAD6, ip.dst),
            _ => (0, ip.dst),
        };
        if let Some(v) = self.egress.too_big6(
            snap,
            &self.stats,
            pkt,
            ip.packet_len(),
            target.real,
            from,
            overhead,
            now,
        ) {
            return v;
        }
        let (verdict, to_real) = match target.method {
            ForwardingMethod::Nat => {
                match adjust {
                    None => nat::rewrite_request6(
                        pkt.data_mut(),
                        ip.protocol,
                        usize::from(ip.l4_offset),
                        target.real,
                        target.real_port,
                    ),
                    Some(a) => nat::rewrite_request6_translated(
                        pkt.data_mut(),
                        usize::from(ip.l4_offset),
                        target.real,
                        target.real_port,
                        a,
                    ),
                }
                (
                    self.egress.route6_to_real(
                        snap,
                        pkt,
                        target.real_id,
                        target.real,
                        ip.end(),
                        now,
                    ),
                    true,
                )
            }
            ForwardingMethod::DirectRoute => (
                self.egress
                    .direct6_to_real(snap, pkt, target.real_id, target.real, ip.end(), now),
                true,
            ),
            ForwardingMethod::Tunnel => self.egress.tunnel6(
                snap,
                pkt,
                (target.real_id, target.real),
                ip.packet_len(),
                true,
                tunnel::flow_label(key.hash()),
                now,
            ),
        };
        if to_real {
            self.count_forwarded(verdict, target.real_id, len);
        }
        verdict
    }

    /// A NAT66 real's packet back to its client (`hash` as for
    /// [`Self::request6`]).
    #[allow(clippy::too_many_arguments)]
    fn reply6<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        in_port: usize,
        pkt: &mut B,
        ip: &Ipv6Meta,
        ports: Ports,
        tcp: Option<&Segment>,
        now: u32,
        hash: Option<u64>,
    ) -> Verdict {
        let client = ip.dst;
        if let Some(v) = self.hand_off(client) {
            return v;
        }
        let Some(ct) = self.conntrack6.as_mut() else {
            return Verdict::Drop(DropReason::UnsupportedEthertype);
        };
        let key = ReplyKey {
            proto: u8::from(ip.protocol),
            real: ip.src,
            real_port: ports.src,
            client,
            client_port: ports.dst,
        };
        let hash = hash.unwrap_or_else(|| ct.table().reply_key_hash(&key));
        debug_assert_eq!(
            hash,
            ct.table().reply_key_hash(&key),
            "the lookahead hashed it"
        );
        let egress = &mut self.egress;
        // What the flow believes of a real (asked only of what opens or
        // ends it): nothing said to a client there is no way back to,
        // whose handshake proves nothing (`Snapshot::no_way_back`).
        // Both capture by value (`move`, the frame as a shared borrow):
        // captured by reference, `now` and `in_port` were stored on the
        // stack and the closures' references built there on every packet,
        // for calls only a SYN proxy's flow or an opening or closing
        // segment makes.
        let frame_of: &B = pkt;
        let from_real = move || {
            if snap.no_way_back(IpAddr::V6(ip.dst)) {
                return false;
            }
            let mac = EthernetFrame::new_unchecked(frame_of.data()).src_addr();
            egress.came_from_next_hop6(snap, in_port, ip.src, mac, now)
        };
        let sender = move || {
            let mac = EthernetFrame::new_unchecked(frame_of.data()).src_addr();
            crate::flow::sender_mark(in_port, mac.0)
        };
        let back =
            match ct.reply_on_key(snap, key, hash, tcp, now, Some(in_port), from_real, sender) {
                Ok(b) => b,
                Err(r) => return Verdict::Drop(r),
            };
        let adjust = match back.proxy {
            ReplyStep::None => None,
            ReplyStep::Translate => Some(ct.proxy_adjust()),
            ReplyStep::AckToReal => {
                let Some(&seg) = tcp else {
                    return Verdict::Drop(DropReason::SynProxyPending);
                };
                let w = ct.proxy_waiting();
                return self.syn_proxy_ack_to_real6(
                    snap,
                    pkt,
                    ip,
                    ports,
                    seg,
                    &w,
                    back.real_id,
                    now,
                );
            }
            ReplyStep::ResetReal => {
                return self.syn_proxy_reset_real6(snap, pkt, ip, ports, back.real_id, now);
            }
        };
        let len = pkt.len() as u64;
        // Too big for the way to the client: the real hears it from the
        // port it sent through, as from any router.
        let here = snap.ports[in_port].ipv6().unwrap_or(back.vip);
        if let Some(v) = self.egress.too_big6(
            snap,
            &self.stats,
            pkt,
            ip.packet_len(),
            client,
            here,
            0,
            now,
        ) {
            return v;
        }
        match adjust {
            None => nat::rewrite_reply6(
                pkt.data_mut(),
                ip.protocol,
                usize::from(ip.l4_offset),
                back.vip,
                back.vip_port,
            ),
            Some(a) => nat::rewrite_reply6_translated(
                pkt.data_mut(),
                usize::from(ip.l4_offset),
                back.vip,
                back.vip_port,
                a,
            ),
        }
        let v = self.egress.route6(snap, pkt, client, ip.end(), now);
        self.count_forwarded(v, back.real_id, len);
        v
    }

    /// An ICMPv6 error to a VIP about a packet the VIP's flow sent the
    /// client: on to that flow's real (NAT66: translated both ways).
    fn icmp6_to_vip<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        pkt: &mut B,
        ip: &Ipv6Meta,
        now: u32,
    ) -> Verdict {
        let message = ip.l4_start();
        let q = match pkt.data().get(message..ip.end()) {
            Some(m) => match icmpv6::checked_quote(m, ip.src, ip.dst) {
                Ok(q) => q,
                Err(r) => return Verdict::Drop(r),
            },
            None => return Verdict::Drop(DropReason::IcmpNotHandled),
        };
        // The quoted packet went from the VIP to the client, and the error
        // back to that VIP.
        if q.src != ip.dst {
            return Verdict::Drop(DropReason::IcmpNotHandled);
        }
        let key = FlowKey {
            proto: u8::from(q.protocol),
            client: q.dst,
            client_port: q.dst_port,
            vip: q.src,
            vip_port: q.src_port,
        };
        if let Some(v) = self.hand_off(key.client) {
            return v;
        }
        let found = self.conntrack6.as_ref().and_then(|ct| ct.find(&key));
        // Without an entry: where an `mh` TUN or DR flow's packets go by
        // hash alone, as over IPv4 (`Conntrack::stateless_target`).
        let (method, real, real_id, real_port, quote_to_real) = match found {
            Some(f) => (
                f.method,
                f.real(),
                f.real_id,
                f.real_port(),
                f.proxy_quote_to_real(),
            ),
            None => {
                let target = snap
                    .service_for6(key.proto, key.vip, key.vip_port)
                    .zip(self.conntrack6.as_ref())
                    .and_then(|(s, ct)| {
                        ct.stateless_target(snap, s, &key, now, &mut self.schedulers)
                    });
                match target {
                    Some(t) => (t.method, t.real, t.real_id, t.real_port, None),
                    None => return Verdict::Drop(DropReason::NoFlow),
                }
            }
        };
        if !snap.real_present(real_id) {
            return Verdict::Drop(DropReason::RealRemoved);
        }
        if ip.hop_limit <= 1 {
            return Verdict::Drop(DropReason::TtlExceeded);
        }
        let verdict = match method {
            ForwardingMethod::Nat => {
                icmpv6::rewrite_nat_error(
                    pkt.data_mut(),
                    message,
                    ip.end(),
                    &q,
                    false,
                    real,
                    real_port,
                    quote_to_real,
                );
                self.egress.route6(snap, pkt, real, ip.end(), now)
            }
            ForwardingMethod::DirectRoute => self.egress.direct6(snap, pkt, real, ip.end(), now),
            // No "packet too big" about an error: one that does not fit
            // the tunnel is dropped.
            ForwardingMethod::Tunnel => {
                let label = tunnel::flow_label(key.hash());
                self.egress
                    .tunnel6(
                        snap,
                        pkt,
                        (real_id, real),
                        ip.packet_len(),
                        true,
                        label,
                        now,
                    )
                    .0
            }
        };
        self.count_icmp_error(verdict);
        verdict
    }

    /// An ICMPv6 error to a client about the client's packet to a NAT66
    /// real, from that real or from a router on the way to it (Packet Too
    /// Big above all: IPv6 routers do not fragment): from the VIP, the
    /// quote translated back. Anything else in transit is not for us.
    fn icmp6_from_real<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        in_port: usize,
        pkt: &mut B,
        ip: &Ipv6Meta,
        now: u32,
    ) -> Verdict {
        let real = snap.is_nat_real6(ip.src);
        let why = |r: DropReason| Verdict::Drop(if real { r } else { DropReason::NotForUs });
        let message = ip.l4_start();
        let q = match pkt.data().get(message..ip.end()) {
            Some(m) => match icmpv6::checked_quote(m, ip.src, ip.dst) {
                Ok(q) => q,
                Err(r) => return why(r),
            },
            None => return why(DropReason::IcmpNotHandled),
        };
        // The quoted packet went from the client to the real, and the
        // error goes to that client, from the real or from where the real
        // is reached (see `icmp_from_real`).
        if q.src != ip.dst {
            return why(DropReason::IcmpNotHandled);
        }
        // Checked as well when the error names the real as its source
        // (found in audit: any host with a frame to the appliance, a
        // neighbor on any port, skipped both checks by writing the real's
        // address, which no check of its own covered).
        let mac = EthernetFrame::new_unchecked(pkt.data()).src_addr();
        if !snap.is_nat_real6(q.dst)
            || !self
                .egress
                .came_from_next_hop6(snap, in_port, q.dst, mac, now)
        {
            return why(DropReason::IcmpNotHandled);
        }
        let key = ReplyKey {
            proto: u8::from(q.protocol),
            real: q.dst,
            real_port: q.dst_port,
            client: q.src,
            client_port: q.src_port,
        };
        if let Some(v) = self.hand_off(key.client) {
            return v;
        }
        let Some(f) = self.conntrack6.as_ref().and_then(|ct| ct.find_reply(&key)) else {
            return Verdict::Drop(DropReason::NoFlow);
        };
        // From the real or a router on the way: only about a segment the
        // client sent.
        if q.protocol == IpProtocol::Tcp && !f.quotes_client_seq(q.seq) {
            return Verdict::Drop(DropReason::IcmpNotHandled);
        }
        if ip.hop_limit <= 1 {
            return Verdict::Drop(DropReason::TtlExceeded);
        }
        // Only the quote goes out, not what a router inside appended.
        let end = icmpv6::cut_extensions(pkt.data_mut(), message, ip.end(), &q);
        if !pkt.set_len(end) {
            return Verdict::Drop(DropReason::Truncated);
        }
        // The quoted segment is the client's: its sequence number is the
        // client's own, proxied flow or not.
        icmpv6::rewrite_nat_error(
            pkt.data_mut(),
            message,
            end,
            &q,
            true,
            f.vip(),
            f.vip_port(),
            None,
        );
        let verdict = self.egress.route6(snap, pkt, f.client(), end, now);
        self.count_icmp_error(verdict);
        verdict
    }

    /// The next hop of an IPv6 packet held in the last pipeline call
    /// (`Verdict::Hold6`'s index).
    pub fn held_next_hop6(&self, index: u16) -> Option<Ipv6Addr> {
        self.egress.held_next_hop6(index)
    }
}

/// Whether the NDP message of `pkt` came behind a Fragment header.
#[cold]
#[inline(never)]
fn ndp_in_fragment<B: PacketBuf>(pkt: &B, ip: &Ipv6Meta) -> bool {
    let Some(packet) = pkt.data().get(IP..ip.end()) else {
        return true;
    };
    let Ok(p) = Ipv6Packet::new_checked(packet) else {
        return true;
    };
    let upper = ip.l4_start() - IP - ipv6::HEADER_LEN;
    crate::wire::ipv6::has_fragment_header(p.next_header(), p.payload(), upper)
}
