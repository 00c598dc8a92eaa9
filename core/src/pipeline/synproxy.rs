//! The SYN proxy's steps on the wire (design: `crate::synproxy`): the
//! cookie SYN-ACK for a client's SYN, the SYN to the real for an ACK whose
//! cookie checks out, the ACK to the real for the real's SYN-ACK; and,
//! between bursts, the SYN to the real again for a flow whose real is
//! silent while its client is not (`flow::synproxy::SynRetries`).

use std::net::{IpAddr, Ipv4Addr};

use super::{Ipv4Meta, Pipeline, Ports, Verdict};
use crate::buffer::PacketBuf;
use crate::flow::synproxy::ProxyReset;
use crate::flow::{FlowKey, ProxyStep, ProxySyn, Segment, Target, Waiting};
use crate::forward::IP;
use crate::snapshot::Snapshot;
use crate::stats::DropReason;
use crate::synproxy::frames::{self, Seen};
use crate::synproxy::{CookieOptions, CookieTuple, ADVERTISED_WSCALE, SYNACK_WINDOW};
use crate::wire::ipv4::DEFAULT_TTL;
use crate::wire::tcp_options::{TcpOptions, Timestamps};
use crate::wire::{EtherType, EthernetFrame, TcpFlags};

/// What comes of a proxy step for a client's packet.
pub(super) enum Next {
    /// Done: this is the frame's fate.
    Done(Verdict),
    /// Forward it as any packet of this (new, not proxied) flow.
    Forward(Target),
}

impl Pipeline {
    /// A client's SYN to answer, or ACK to check (`step`), for no flow.
    /// Out of line and cold: the forwarding path stays as it was.
    #[allow(clippy::too_many_arguments)]
    #[cold]
    #[inline(never)]
    pub(super) fn syn_proxy_client<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        service: usize,
        pkt: &mut B,
        ip: &Ipv4Meta,
        ports: Ports,
        seg: Segment,
        key: &FlowKey,
        step: ProxyStep,
        now: u32,
    ) -> Next {
        if step == ProxyStep::Defer {
            // Kept as it is, for later (see `flow::synproxy::Deferrals`).
            return Next::Done(Verdict::Defer {
                client_port: ports.src,
                client: ip.src,
            });
        }
        if self.conntrack.defer_rerun() {
            // A deferred segment whose flow is gone: it makes no new one.
            return Next::Done(Verdict::Drop(DropReason::SynProxyPending));
        }
        let seen = frames::read(pkt.data(), ip.end(), ip.src, ip.dst);
        let tuple = CookieTuple {
            client: ip.src,
            client_port: ports.src,
            vip: ip.dst,
            vip_port: ports.dst,
        };
        match step {
            ProxyStep::AnswerSyn => Next::Done(match seen {
                Ok(seen) => self.answer_syn(snap, pkt, ip, ports, &tuple, &seen, now),
                Err(r) => Verdict::Drop(r),
            }),
            ProxyStep::CheckCookie { .. } | ProxyStep::Restart => {
                let checked = seen.as_ref().ok().and_then(|s| {
                    let (isn, cookie) = (s.seq.wrapping_sub(1), s.ack.wrapping_sub(1));
                    self.cookies
                        .check(&tuple, isn, cookie, self.cookie_clock(now))
                        .map(|opts| (*s, isn, cookie, opts))
                });
                let engaged = match step {
                    ProxyStep::CheckCookie { engaged } => engaged,
                    // The client of a waiting flow started again: the flow
                    // makes way for the new one, if the ACK passes the
                    // check a new flow's first packet passes (where its
                    // source may come from). Anything else for it is
                    // dropped as it was (`syn_proxy_pending`).
                    _ if checked.is_some()
                        && snap.client_elsewhere(self.in_port, IpAddr::V4(ip.src)) =>
                    {
                        return Next::Done(Verdict::Drop(DropReason::ReversePath))
                    }
                    _ => match checked {
                        Some(_) if self.conntrack.syn_proxy_replace(key, now) => true,
                        _ => return Next::Done(Verdict::Drop(DropReason::SynProxyPending)),
                    },
                };
                match (checked, seen) {
                    (Some((s, isn, cookie, opts)), _) => Next::Done(
                        self.syn_to_real(snap, service, pkt, ip, key, &s, isn, cookie, &opts, now),
                    ),
                    (None, Err(r)) if engaged => Next::Done(Verdict::Drop(r)),
                    (None, _) if engaged => {
                        Next::Done(Verdict::Drop(DropReason::SynProxyBadCookie))
                    }
                    // On standby (auto without pressure): as without the
                    // proxy (a Maglev pick-up, else no_flow).
                    (None, _) => match self.conntrack.syn_proxy_fallback(
                        snap,
                        service,
                        key,
                        seg,
                        now,
                        &mut self.schedulers,
                    ) {
                        Ok(t) => Next::Forward(t),
                        Err(r) => Next::Done(Verdict::Drop(r)),
                    },
                }
            }
            ProxyStep::None | ProxyStep::Translate | ProxyStep::Defer => {
                debug_assert!(false, "not a step for a new connection");
                Next::Done(Verdict::Drop(DropReason::NoFlow))
            }
        }
    }

    /// The SYN becomes the SYN-ACK carrying the cookie, back to the client.
    #[allow(clippy::too_many_arguments)]
    fn answer_syn<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        pkt: &mut B,
        ip: &Ipv4Meta,
        ports: Ports,
        tuple: &CookieTuple,
        seen: &Seen,
        now: u32,
    ) -> Verdict {
        let o = seen.options;
        let carried = CookieOptions::from_syn(0, o.mss, o.wscale, o.sack_permitted);
        let cookie = self
            .cookies
            .make(tuple, seen.seq, &carried, self.cookie_clock(now));
        let answer = frames::Segment {
            src: ip.dst,
            dst: ip.src,
            src_port: ports.dst,
            dst_port: ports.src,
            seq: cookie,
            ack: seen.seq.wrapping_add(1),
            flags: TcpFlags::SYN | TcpFlags::ACK,
            window: SYNACK_WINDOW,
            ttl: DEFAULT_TTL,
            options: TcpOptions {
                mss: Some(snap.syn_proxy_mss),
                wscale: o.wscale.map(|_| ADVERTISED_WSCALE),
                sack_permitted: o.sack_permitted,
                timestamps: o.timestamps.map(|t| Timestamps {
                    val: now.wrapping_add(self.cookies.ts_offset(ip.src, ip.dst)),
                    ecr: t.val,
                }),
            },
        };
        let Some(end) = frames::write(pkt, &answer) else {
            return Verdict::Drop(DropReason::NoHeadroom);
        };
        let v = self.egress.route(snap, pkt, ip.src, end, now);
        if matches!(v, Verdict::Transmit(_) | Verdict::Hold { .. }) {
            self.stats.syn_proxy_cookies_sent.incr();
        }
        v
    }

    /// The client's ACK with a good cookie: a flow, and the ACK becomes
    /// the SYN to its real.
    #[allow(clippy::too_many_arguments)]
    fn syn_to_real<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        service: usize,
        pkt: &mut B,
        ip: &Ipv4Meta,
        key: &FlowKey,
        seen: &Seen,
        isn: u32,
        cookie: u32,
        opts: &CookieOptions,
        now: u32,
    ) -> Verdict {
        let (target, syn) = match self.conntrack.syn_proxy_create(
            snap,
            service,
            key,
            isn,
            cookie,
            opts,
            seen.options.timestamps,
            seen.window,
            // Forwarded: one hop less, as NAT does (request() checked > 1).
            ip.ttl - 1,
            now,
            &mut self.schedulers,
        ) {
            Ok(t) => t,
            Err(r) => return Verdict::Drop(r),
        };
        self.stats.syn_proxy_cookies_accepted.incr();
        let len = pkt.len() as u64;
        let Some(end) = frames::write(pkt, &syn_segment(&syn)) else {
            return Verdict::Drop(DropReason::NoHeadroom);
        };
        let v = self.egress.route(snap, pkt, target.real, end, now);
        self.count_forwarded(v, target.real_id, len);
        v
    }

    /// Between bursts, before [`Self::syn_resends_due`]: the SYN proxy's
    /// timer names the waiting flows whose SYN is due again although their
    /// client sent nothing (`flow::synproxy::SynWatch`), in either family's
    /// table. Cheap when no proxied flow waits, or between its ticks.
    #[inline]
    pub fn syn_timers(&mut self, snap: &Snapshot, now: u32) {
        self.conntrack.syn_watch_tick(snap, now);
        if let Some(ct) = self.conntrack6.as_mut() {
            ct.syn_watch_tick(snap, now);
        }
    }

    /// Whether SYNs to reals wait to be sent again ([`Self::resend_syns`]),
    /// in either family's table.
    #[inline]
    pub fn syn_resends_due(&self) -> bool {
        self.conntrack.syn_retries_due()
            || self.conntrack.proxy_resets_due()
            || self
                .conntrack6
                .as_ref()
                .is_some_and(|ct| ct.syn_retries_due() || ct.proxy_resets_due())
    }

    /// Between bursts: sends the SYN to its real again for each proxied
    /// flow whose client's segments or the timer ([`Self::syn_timers`])
    /// made it due (see `flow::synproxy::SynRetries`) and that still
    /// waits. Each is rebuilt from its flow into a buffer `alloc` gives,
    /// routed as the first was (route, MTU, neighbor: a hold while the next
    /// hop resolves), and given to `out` with its verdict, to act on as on
    /// any verdict (a drop as `Verdict::Drop`, to count). Counted in
    /// `syn_proxy_syn_retransmits` when on its way (sent, or held); not in
    /// the real's packets, which count what clients sent it. When `alloc`
    /// gives None (the pool is empty), the SYN is counted here as dropped
    /// (`no_mbuf`; `out` sees nothing) and given back to its flow: it
    /// costs none of the flow's three re-sends, and the flow stays due for
    /// the timer's next look or its client's next segment, not for this
    /// pass (at most one `alloc` a flow named, as many as the queue holds).
    /// Cheap when not [`due`](Self::syn_resends_due).
    pub fn resend_syns<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        now: u32,
        alloc: impl FnMut() -> Option<B>,
        mut out: impl FnMut(B, Verdict),
    ) {
        self.resend_syns_with(snap, now, alloc, |_, b, v| out(b, v));
    }

    /// [`Self::resend_syns`], `out` also given the pipeline as it stands
    /// right after the SYN's routing: a NAT66 flow's SYN held for its next
    /// hop ([`Verdict::Hold6`]) names it there
    /// ([`Pipeline::held_next_hop6`]), before the next SYN is routed. IPv4
    /// flows first, then NAT66 ones (`pipeline/synproxy6.rs`).
    pub fn resend_syns_with<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        now: u32,
        mut alloc: impl FnMut() -> Option<B>,
        mut out: impl FnMut(&Pipeline, B, Verdict),
    ) {
        if !self.syn_resends_due() {
            return;
        }
        // A pipeline call of its own: `out` has read the next hops of the
        // last one's held packets (a pass on an idle worker piled them up).
        self.egress.begin();
        let due = self.conntrack.take_syn_retries();
        for named in due.iter() {
            let Some(syn) = self.conntrack.syn_to_resend(snap, named) else {
                continue;
            };
            let Some(mut pkt) = alloc() else {
                self.conntrack.syn_resend_unsent(named);
                self.stats.drop_packet(DropReason::NoMbuf);
                continue;
            };
            let v = self.write_made(snap, &mut pkt, &syn_segment(&syn), now);
            if matches!(v, Verdict::Transmit(_) | Verdict::Hold { .. }) {
                self.stats.syn_proxy_syn_retransmits.incr();
            }
            out(self, pkt, v);
        }
        // Connections given up on: their clients' RSTs (one that finds no
        // buffer is not sent; the client's own timers end it then).
        for r in self.conntrack.take_proxy_resets() {
            let Some(mut pkt) = alloc() else {
                self.stats.drop_packet(DropReason::NoMbuf);
                continue;
            };
            let v = self.write_made(snap, &mut pkt, &reset_segment(&r, DEFAULT_TTL), now);
            out(self, pkt, v);
        }
        self.resend_syns6(snap, now, &mut alloc, &mut out);
    }

    /// A segment the proxy makes between bursts (a SYN sent again, a
    /// client's RST) as a whole frame in `pkt`, a new buffer, routed to
    /// its destination.
    fn write_made<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        pkt: &mut B,
        seg: &frames::Segment,
        now: u32,
    ) -> Verdict {
        // A new buffer: the Ethernet header's type here (a received frame
        // had it), its addresses from egress, as for the first.
        if !pkt.set_len(IP) {
            return Verdict::Drop(DropReason::NoHeadroom);
        }
        EthernetFrame::new_unchecked(pkt.data_mut()).set_ethertype(EtherType::Ipv4);
        let Some(end) = frames::write(pkt, seg) else {
            return Verdict::Drop(DropReason::NoHeadroom);
        };
        self.egress.route(snap, pkt, seg.dst, end, now)
    }

    /// The real's SYN-ACK for a waiting flow becomes the ACK to the real;
    /// the flow is established.
    #[allow(clippy::too_many_arguments)]
    #[cold]
    #[inline(never)]
    pub(super) fn syn_proxy_ack_to_real<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        pkt: &mut B,
        ip: &Ipv4Meta,
        ports: Ports,
        seg: Segment,
        w: &Waiting,
        real_id: u32,
        now: u32,
    ) -> Verdict {
        let seen = match frames::read(pkt.data(), ip.end(), ip.src, ip.dst) {
            Ok(s) => s,
            Err(r) => return Verdict::Drop(r),
        };
        if seen.ack != w.client_next {
            // Not an answer to the SYN we sent.
            return Verdict::Drop(DropReason::SynProxyPending);
        }
        let real_ts = seen.options.timestamps;
        let f = self.conntrack.syn_proxy_answered(
            w,
            seg,
            seen.options.wscale,
            real_ts.map(|t| t.val),
            now,
        );
        let ack = frames::Segment {
            src: ip.dst,
            dst: ip.src,
            src_port: ports.dst,
            dst_port: ports.src,
            seq: seen.ack,
            ack: seen.seq.wrapping_add(1),
            flags: TcpFlags::ACK,
            window: f.proxy_to_real().rescale(w.window),
            ttl: DEFAULT_TTL,
            options: TcpOptions {
                // The real's SYN-ACK echoes the client's TSval (which the
                // SYN carried): the ACK carries it again and echoes the
                // real's.
                timestamps: real_ts.filter(|_| w.timestamps).map(|t| Timestamps {
                    val: t.ecr,
                    ecr: t.val,
                }),
                ..TcpOptions::default()
            },
        };
        let len = pkt.len() as u64;
        let Some(end) = frames::write(pkt, &ack) else {
            return Verdict::Drop(DropReason::NoHeadroom);
        };
        let v = self.egress.route(snap, pkt, ip.src, end, now);
        self.count_forwarded(v, real_id, len);
        v
    }
}

impl Pipeline {
    /// The RST to a real that answered the SYN of a waiting flow with an
    /// ACK of another connection (`ReplyStep::ResetReal`): from the
    /// client, at the number the real acknowledged, without ACK (RFC 9293
    /// 3.10.7.3), so that the real ends what it holds on the tuple and the
    /// SYN sent again opens the flow's connection.
    pub(super) fn syn_proxy_reset_real<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        pkt: &mut B,
        ip: &Ipv4Meta,
        ports: Ports,
        real_id: u32,
        now: u32,
    ) -> Verdict {
        let seen = match frames::read(pkt.data(), ip.end(), ip.src, ip.dst) {
            Ok(s) => s,
            Err(r) => return Verdict::Drop(r),
        };
        let rst = frames::Segment {
            src: ip.dst,
            dst: ip.src,
            src_port: ports.dst,
            dst_port: ports.src,
            seq: seen.ack,
            ack: 0,
            flags: TcpFlags::RST,
            window: 0,
            ttl: DEFAULT_TTL,
            options: TcpOptions::default(),
        };
        let len = pkt.len() as u64;
        let Some(end) = frames::write(pkt, &rst) else {
            return Verdict::Drop(DropReason::NoHeadroom);
        };
        let v = self.egress.route(snap, pkt, ip.src, end, now);
        self.count_forwarded(v, real_id, len);
        v
    }
}

/// The RST to the client of a proxied connection given up on: from the
/// VIP, at the sequence number the client expects, with TTL (hop limit)
/// `ttl`.
pub(super) fn reset_segment<A: crate::flow::FlowAddr>(
    r: &ProxyReset<A>,
    ttl: u8,
) -> frames::Segment<A> {
    frames::Segment {
        src: r.key.vip,
        dst: r.key.client,
        src_port: r.key.vip_port,
        dst_port: r.key.client_port,
        seq: r.seq,
        ack: r.ack,
        flags: TcpFlags::RST | TcpFlags::ACK,
        window: 0,
        ttl,
        options: TcpOptions::default(),
    }
}

/// The SYN to a real as a segment to write: the first and each one sent
/// again alike.
fn syn_segment(syn: &ProxySyn<Ipv4Addr>) -> frames::Segment {
    frames::Segment {
        src: syn.client,
        dst: syn.real,
        src_port: syn.client_port,
        dst_port: syn.real_port,
        seq: syn.isn,
        ack: 0,
        flags: TcpFlags::SYN,
        window: syn.window,
        ttl: syn.ttl,
        options: syn.options,
    }
}
