//! Segments the SYN proxy defers ([`Verdict::Defer`], [`Verdict::Defer6`]
//! for a NAT66 service's client): a client's data
//! that arrives while its proxied flow still waits for the real's SYN-ACK
//! (typically the request right after the client's ACK). Dropping it cost
//! the client a retransmission timeout (200 ms or more); instead the worker
//! keeps it here and runs it through the pipeline again once the real
//! answered, when it is translated and sent as any later segment of the
//! flow. What the flow table keeps of it, and the rules (which segments,
//! how many per flow, order), are in `flow::synproxy::Deferrals`.
//!
//! Bounded as the ARP hold list is: [`DEFER_SLOTS`] frames per worker,
//! each kept at most [`DEFER_MS`]. A frame deferred when every slot is
//! taken, or kept too long, is dropped as `syn_proxy_pending` (what
//! happened to all of them before): its client retransmits it as it did.
//! One client holds at most `DEFER_PER_FLOW` slots per connection, and
//! each connection cost it a round trip with a valid cookie; one source
//! (an IPv4 address, an IPv6 /64) holds at most a quarter of the slots
//! ([`DeferList::per_source`]), so a client that opens many connections
//! to a slow real cannot take the early data of every other client; and
//! once three quarters are taken, at most one connection's worth
//! (`DEFER_PER_FLOW`), so that four such sources cannot either.
//!
//! Generic over the buffer, so that the worker (mbufs), the fuzz harness
//! and the tests run the same code.
//!
//! Why this way: keeping the untouched frame and running it again reuses
//! the one path that translates a proxied flow's segments, and whatever a
//! re-run does is what a retransmission at that moment could have done.
//! The alternative Linux's SYNPROXY takes, a zero window in the cookie
//! SYN-ACK so that the client sends nothing early, needs a window update to
//! the client when the real answers: a second frame out of one input,
//! which the pipeline does not make (it rewrites frames in place), and a
//! lost update leaves the client to its persist timer, the same 200 ms or
//! more; it would also change what every client sees. Buffering in the
//! flow entry would need room its 64 bytes do not have.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv6Addr};

use super::{Pipeline, Verdict};
use crate::buffer::PacketBuf;
use crate::flow::synproxy::{DeferReady, DEFER_PER_FLOW};
use crate::forward::IP;
use crate::snapshot::Snapshot;
use crate::stats::{DropReason, WorkerStats};
use crate::wire::ipv6::Ipv6Packet;

/// How many deferred segments a worker keeps at once.
pub const DEFER_SLOTS: usize = 64;
/// How long a deferred segment is kept (ms): a real that has not answered
/// by then is slow enough that the client's retransmission comes anyway.
pub const DEFER_MS: u32 = 2_000;

/// One deferred frame.
#[derive(Debug)]
struct Deferred<B> {
    pkt: B,
    in_port: usize,
    /// IPv4, or IPv6 for a NAT66 service's client (whose flows are in the
    /// IPv6 table, named in its own [`DeferReady`]).
    client: IpAddr,
    client_port: u16,
    since: u32,
}

/// A worker's deferred frames, oldest first.
#[derive(Debug)]
pub struct DeferList<B> {
    q: VecDeque<Deferred<B>>,
    slots: usize,
    /// Frames one source may have kept at once.
    per_source: usize,
    max_age: u32,
    /// Run every frame again at the next pass (a new config).
    recheck: bool,
}

impl<B: PacketBuf> DeferList<B> {
    /// A list of `slots` frames, each kept at most `max_age` ms, at most a
    /// quarter of them (at least one) from one source.
    pub fn new(slots: usize, max_age: u32) -> DeferList<B> {
        DeferList {
            q: VecDeque::with_capacity(slots),
            slots,
            per_source: slots.div_ceil(4).max(1),
            max_age,
            recheck: false,
        }
    }

    pub fn len(&self) -> usize {
        self.q.len()
    }

    pub fn is_empty(&self) -> bool {
        self.q.is_empty()
    }

    /// How many frames one source (an IPv4 address, an IPv6 /64: what one
    /// host or one customer is given) may have kept at once.
    pub fn per_source(&self) -> usize {
        self.per_source
    }

    /// How many frames the next frame's source may have kept for it to be
    /// kept: [`Self::per_source`] while fewer than three quarters of the
    /// slots are taken, then one connection's worth (`DEFER_PER_FLOW`):
    /// the last quarter is shared, so that a few sources cannot take
    /// every slot (found in audit: four did, a quarter each, and every
    /// other client's early data cost it a retransmission). Filling the
    /// list takes at least 3 + `slots / 4 / DEFER_PER_FLOW` sources (11
    /// for 64).
    fn share(&self) -> usize {
        if self.q.len() < self.slots - self.slots / 4 {
            self.per_source
        } else {
            self.per_source.min(usize::from(DEFER_PER_FLOW))
        }
    }

    /// Keeps `pkt`, received on port index `in_port`, which the pipeline
    /// deferred with `verdict` at time `now` (counted in
    /// `syn_proxy_deferred`). When every slot is taken, its source has
    /// its share kept already ([`Self::per_source`], in the last quarter
    /// of the slots one connection's worth), or `verdict` is no
    /// [`Verdict::Defer`] or [`Verdict::Defer6`] (or, for the latter, the
    /// frame holds no IPv6 header), it is given back for the caller to
    /// count as dropped (`syn_proxy_pending`) and free.
    pub fn push(
        &mut self,
        pkt: B,
        in_port: usize,
        verdict: Verdict,
        now: u32,
        stats: &WorkerStats,
    ) -> Result<(), B> {
        let (client, client_port) = match verdict {
            Verdict::Defer {
                client,
                client_port,
            } => (IpAddr::V4(client), client_port),
            // The untouched frame's source is the client.
            Verdict::Defer6 { client_port } => match source6(&pkt) {
                Some(a) => (IpAddr::V6(a), client_port),
                None => return Err(pkt),
            },
            _ => return Err(pkt),
        };
        if self.q.len() >= self.slots {
            return Err(pkt);
        }
        let source = source_of(client);
        if self
            .q
            .iter()
            .filter(|d| source_of(d.client) == source)
            .count()
            >= self.share()
        {
            return Err(pkt);
        }
        self.q.push_back(Deferred {
            pkt,
            in_port,
            client,
            client_port,
            since: now,
        });
        stats.syn_proxy_deferred.incr();
        Ok(())
    }

    /// After a reload: every frame runs again at the next pass, under the
    /// new config (a removed service drops its frames then, not at
    /// their age limit).
    pub fn recheck(&mut self) {
        self.recheck = !self.q.is_empty();
    }

    /// Whether [`Self::release`] has anything to do now.
    #[inline]
    pub fn due(&self, p: &Pipeline, now: u32) -> bool {
        p.conntrack.defer_ready()
            || p.conntrack6.as_ref().is_some_and(|ct| ct.defer_ready())
            || self.recheck
            || self
                .q
                .front()
                .is_some_and(|d| now.wrapping_sub(d.since) > self.max_age)
    }

    /// The pass, after a burst: frames kept longer than the limit are
    /// dropped; those of flows whose real answered meanwhile (or that
    /// closed) run through `p` again, oldest first, and leave the list
    /// unless the pipeline defers them again. `out` gets each frame that
    /// leaves and its verdict (a drop as `Verdict::Drop`), to act on as on
    /// any verdict. Cheap when not [`due`](Self::due).
    pub fn release(
        &mut self,
        p: &mut Pipeline,
        snap: &Snapshot,
        now: u32,
        mut out: impl FnMut(B, Verdict),
    ) {
        self.release_with(p, snap, now, |_, b, v| out(b, v));
    }

    /// [`Self::release`], `out` also given the pipeline, as it stands right
    /// after the frame's run: what a [`Verdict::Hold6`] names
    /// ([`Pipeline::held_next_hop6`]) is to be read there, before the next
    /// frame's run.
    pub fn release_with(
        &mut self,
        p: &mut Pipeline,
        snap: &Snapshot,
        now: u32,
        mut out: impl FnMut(&Pipeline, B, Verdict),
    ) {
        if !self.due(p, now) {
            return;
        }
        let mut ready = p.conntrack.take_defer_ready();
        let mut ready6 = p
            .conntrack6
            .as_mut()
            .map(|ct| ct.take_defer_ready())
            .unwrap_or_default();
        if std::mem::take(&mut self.recheck) {
            (ready, ready6) = (DeferReady::ALL, DeferReady::ALL);
        }
        // Each frame once, in order: those that stay go to the back, in
        // the order they were in.
        for _ in 0..self.q.len() {
            let Some(mut d) = self.q.pop_front() else {
                break;
            };
            if now.wrapping_sub(d.since) > self.max_age {
                out(p, d.pkt, Verdict::Drop(DropReason::SynProxyPending));
                continue;
            }
            let covered = match d.client {
                IpAddr::V4(a) => ready.covers(a, d.client_port),
                IpAddr::V6(a) => ready6.covers(a, d.client_port),
            };
            if !covered {
                self.q.push_back(d);
                continue;
            }
            match p.process_deferred(snap, d.in_port, &mut d.pkt, now) {
                Verdict::Defer { .. } | Verdict::Defer6 { .. } => self.q.push_back(d),
                v => out(p, d.pkt, v),
            }
        }
    }

    /// The frames still kept and the time each was deferred, oldest first
    /// (checks).
    pub fn iter(&self) -> impl Iterator<Item = (&B, u32)> + '_ {
        self.q.iter().map(|d| (&d.pkt, d.since))
    }

    /// Empties the list (a worker that stops): the frames, oldest first,
    /// for the caller to count and free.
    pub fn drain(&mut self) -> impl Iterator<Item = B> + '_ {
        self.recheck = false;
        self.q.drain(..).map(|d| d.pkt)
    }
}

impl Pipeline {
    /// Runs a frame this pipeline deferred ([`Verdict::Defer`]) again, as
    /// [`Pipeline::process`] does, except that it is not counted against
    /// its flow's deferrals again and never makes a flow: its verdict is
    /// `Defer` again while its flow still waits, and a drop
    /// (`syn_proxy_pending`) when its flow closed or is gone.
    pub fn process_deferred<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        in_port: usize,
        pkt: &mut B,
        now: u32,
    ) -> Verdict {
        self.set_defer_rerun(true);
        let v = self.process(snap, in_port, pkt, now);
        self.set_defer_rerun(false);
        v
    }

    /// Both tables: a deferred frame is of either family.
    fn set_defer_rerun(&mut self, on: bool) {
        self.conntrack.set_defer_rerun(on);
        if let Some(ct) = self.conntrack6.as_mut() {
            ct.set_defer_rerun(on);
        }
    }
}

/// What one source is for [`DeferList::per_source`]: an IPv4 address, or
/// an IPv6 address's /64 (the least a network gives one host), which no
/// IPv4 address equals.
fn source_of(client: IpAddr) -> (bool, u64) {
    match client {
        IpAddr::V4(a) => (false, u64::from(u32::from(a))),
        IpAddr::V6(a) => (true, (u128::from(a) >> 64) as u64),
    }
}

/// The IPv6 source of a frame (a deferred IPv6 client's segment, as it
/// came in: the client's address).
fn source6<B: PacketBuf>(pkt: &B) -> Option<Ipv6Addr> {
    let header = pkt.data().get(IP..)?;
    Ipv6Packet::new_checked_header(header)
        .ok()
        .map(|ip| ip.src_addr())
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::buffer::VecBuf;

    /// A frame whose IPv6 source is `src` (all `push` reads of a `Defer6`).
    fn frame6(src: Ipv6Addr) -> VecBuf {
        let mut f = vec![0u8; IP + 40];
        f[12..14].copy_from_slice(&[0x86, 0xdd]);
        f[IP] = 0x60;
        f[IP + 6] = 6;
        f[IP + 7] = 64;
        f[IP + 8..IP + 24].copy_from_slice(&src.octets());
        f[IP + 24..IP + 40]
            .copy_from_slice(&Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0x80).octets());
        VecBuf::from_bytes(&f)
    }

    fn push4(
        list: &mut DeferList<VecBuf>,
        client: Ipv4Addr,
        port: u16,
        stats: &WorkerStats,
    ) -> bool {
        let v = Verdict::Defer {
            client,
            client_port: port,
        };
        list.push(VecBuf::from_bytes(&[0; 64]), 0, v, 1, stats)
            .is_ok()
    }

    fn push6(
        list: &mut DeferList<VecBuf>,
        client: Ipv6Addr,
        port: u16,
        stats: &WorkerStats,
    ) -> bool {
        let v = Verdict::Defer6 { client_port: port };
        list.push(frame6(client), 0, v, 1, stats).is_ok()
    }

    #[test]
    fn one_source_keeps_at_most_a_quarter_of_the_slots() {
        let stats = WorkerStats::default();
        let mut list = DeferList::<VecBuf>::new(DEFER_SLOTS, DEFER_MS);
        assert_eq!(list.per_source(), DEFER_SLOTS / 4);
        let greedy = Ipv4Addr::new(198, 18, 0, 7);
        let kept = (0..DEFER_SLOTS as u16)
            .filter(|&i| push4(&mut list, greedy, 1024 + i, &stats))
            .count();
        assert_eq!(kept, DEFER_SLOTS / 4, "one address, many connections");
        // Everybody else still gets theirs.
        assert!(push4(&mut list, Ipv4Addr::new(198, 18, 0, 8), 1024, &stats));

        // IPv6: a /64 is one source, whichever of its addresses sends.
        let net = |host: u16| Ipv6Addr::new(0x2001, 2, 0, 0x10, 0, 0, 0, host);
        let kept6 = (0..DEFER_SLOTS as u16)
            .filter(|&i| push6(&mut list, net(i + 1), 1024, &stats))
            .count();
        assert_eq!(kept6, DEFER_SLOTS / 4, "one /64, many addresses");
        let other = Ipv6Addr::new(0x2001, 2, 0, 0x11, 0, 0, 0, 1);
        assert!(push6(&mut list, other, 1024, &stats));
        assert_eq!(list.len(), DEFER_SLOTS / 2 + 2);
        assert_eq!(stats.syn_proxy_deferred.get(), list.len() as u64);

        // The whole list still fills, from enough sources.
        let mut host = 0u8;
        while list.len() < DEFER_SLOTS {
            host += 1;
            assert!(push4(
                &mut list,
                Ipv4Addr::new(198, 19, 0, host),
                80,
                &stats
            ));
        }
        assert!(
            !push4(&mut list, Ipv4Addr::new(198, 19, 1, 1), 80, &stats),
            "full"
        );
    }

    /// Found in audit: four sources (one IPv6 customer's /64s) that keep
    /// proxied flows waiting (a real in TIME_WAIT answers a SYN below its
    /// old sequence with a bare ACK) took every slot, a quarter each, and
    /// every other client's early data cost it a retransmission. The last
    /// quarter of the slots is shared: a source that has one connection's
    /// worth (`DEFER_PER_FLOW`) kept takes none of it.
    #[test]
    fn a_few_sources_cannot_take_every_slot() {
        let stats = WorkerStats::default();
        let mut list = DeferList::<VecBuf>::new(DEFER_SLOTS, DEFER_MS);
        let greedy = |i: u8| Ipv4Addr::new(198, 18, 0, i);
        for round in 0..DEFER_SLOTS as u16 {
            for i in 1..=4 {
                push4(&mut list, greedy(i), 1024 + round, &stats);
            }
        }
        let share = DEFER_PER_FLOW as usize;
        assert!(
            list.len() <= DEFER_SLOTS * 3 / 4 + share,
            "four sources keep {} of {DEFER_SLOTS}",
            list.len()
        );
        // What is left goes to other clients, a connection's worth each.
        let mut others = 0u8;
        while list.len() < DEFER_SLOTS {
            others += 1;
            let c = Ipv4Addr::new(198, 19, 0, others);
            for k in 0..share as u16 {
                assert!(push4(&mut list, c, 80 + k, &stats), "room for {c}");
            }
            assert!(!push4(&mut list, c, 90, &stats), "{c}: its share");
        }
        assert!(usize::from(others) >= DEFER_SLOTS / 4 / share - 1);
    }

    #[test]
    fn a_small_list_still_keeps_one_per_source() {
        let stats = WorkerStats::default();
        let mut list = DeferList::<VecBuf>::new(2, DEFER_MS);
        assert_eq!(list.per_source(), 1);
        let c = Ipv4Addr::new(198, 18, 0, 7);
        assert!(push4(&mut list, c, 1, &stats));
        assert!(!push4(&mut list, c, 2, &stats));
        assert!(push4(&mut list, Ipv4Addr::new(198, 18, 0, 9), 1, &stats));
    }
}
