//! The flow table: a slab of 64-byte entries and one index over them.
//!
//! The index is open-addressed with linear probing and backward-shift
//! deletion (no tombstones, so probe chains never rot). A slot is one u64:
//! the high 32 bits of the key's hash as a tag, the entry number, and
//! whether the slot holds the entry's client-side key or its reply key.
//!
//! Every live entry also has a [`Trust`] class and sits in that class's
//! queue (intrusive, doubly linked, in arrays beside the slab), in the
//! order it entered the class. A full table takes its victim from the
//! front of the least trusted queue that has one, giving an entry used
//! since it was queued a second chance (CLOCK): finding a victim costs a
//! bounded number of steps, however the table is filled.

use std::net::Ipv4Addr;

use lb_config::ForwardingMethod;

use super::hash::{flow_hash, FlowAddr, IndexSeed};
use super::state::{
    seq_near, seq_within, FlowState, Segment, Timeouts, ACK_WINDOW, RST_WINDOW, SEQ_WINDOW,
};
use crate::buffer::PacketBuf;
use crate::sync::ClientSeq;
use crate::wire::{IpProtocol, TcpFlags};

/// Marks a persistence template's protocol byte, so that a template key
/// never equals a flow key.
pub const FLOW_TEMPLATE: u8 = 0x80;

/// A flow's client-side key: (protocol, client address and port, VIP and
/// port). Templates use `proto | FLOW_TEMPLATE` and client port 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowKey<A: FlowAddr = Ipv4Addr> {
    pub proto: u8,
    pub client: A,
    pub client_port: u16,
    pub vip: A,
    pub vip_port: u16,
}

impl<A: FlowAddr> FlowKey<A> {
    /// The fixed hash the schedulers pick by (the same on every box).
    #[inline]
    pub fn hash(&self) -> u64 {
        flow_hash(
            self.proto,
            self.client,
            self.client_port,
            self.vip,
            self.vip_port,
        )
    }

    /// Where the key sits in a table keyed with `seed`.
    #[inline]
    pub fn index_hash(&self, seed: &IndexSeed) -> u64 {
        seed.flow(
            self.proto,
            self.client,
            self.client_port,
            self.vip,
            self.vip_port,
        )
    }
}

/// The key a NAT reply is found by: (protocol, real address and port,
/// client address and port).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReplyKey<A: FlowAddr = Ipv4Addr> {
    pub proto: u8,
    pub real: A,
    pub real_port: u16,
    pub client: A,
    pub client_port: u16,
}

impl<A: FlowAddr> ReplyKey<A> {
    /// Where the key sits in a table keyed with `seed`.
    #[inline]
    pub fn index_hash(&self, seed: &IndexSeed) -> u64 {
        seed.reply(
            self.proto,
            self.real,
            self.real_port,
            self.client,
            self.client_port,
        )
    }
}

const SEEN_CLIENT: u8 = 1;
const SEEN_REAL: u8 = 2;
const CONFIRMED: u8 = 4;
const REPEATED: u8 = 8;
/// TCP's use of [`REPEATED`]'s bit (only datagram flows read that one):
/// the flow's first FIN came from the real, so that a FIN from the other
/// side can be told from a retransmission of the first. Sync carries it
/// (`FlowUpdate::fin_by_client`); a flow synced half-closed without it
/// gets it (`flow/sync.rs`), so that only the client's FIN, believed once
/// the real placed it, closes it (NAT; a TUN or DR flow synced
/// half-closed ends by a SYN, by its client's RST where the record
/// placed the client, or by timeout).
pub(super) const FIRST_FIN_REAL: u8 = REPEATED;
const SAW_SYN: u8 = 16;
/// Installed by connection sync, and no packet seen here since: sync may
/// update or remove it (`flow/sync.rs`). The first packet makes it ours.
pub(super) const SYNCED: u8 = 32;
/// The sync peer held it at least one-way: `OneWay` here while
/// established (or a datagram flow), until packets here confirm it.
pub(super) const VOUCHED: u8 = 64;
/// Installed by connection sync, and where its client stands in sequence
/// space is not known yet: the record does not say, and the first
/// segment that claims to be the client's may be a stranger's (a blind
/// RST on a synced flow closed it, found in review). Its client's
/// segments are not followed and a RST, FIN or SYN of it is not
/// believed, until a segment of the real acknowledges what the client
/// sent (NAT: the real's side is seen) and so places it. A TUN or DR
/// flow, where the real's side is never seen, is placed by its record
/// when that says where the peer had the client
/// (`FlowUpdate::client_seq`, [`Flow::place_synced_client`]), and keeps
/// this bit beside `SEEN_CLIENT` until a segment of the client's is
/// believed there (`Flow::client_acks_fit`): until then the place is the
/// peer's word, possibly stale, and ICMP errors quoting the client are
/// not held to it ([`Flow::quotes_client_seq`]). Without a place, it
/// keeps this bit and ends by timeout.
pub(super) const UNSURE_CLIENT: u8 = 128;

/// How far behind what the real sent a client's ACK may be and still
/// confirm a NAT flow.
const CONFIRM_ACK_WINDOW: u32 = 1 << 16;

/// One flow: 64 bytes (one cache line) for IPv4, 128 for IPv6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C, align(64))]
pub struct Flow<A: FlowAddr = Ipv4Addr> {
    client: A,
    vip: A,
    client_port: u16,
    vip_port: u16,
    proto: u8,
    state: FlowState,
    /// How its packets reach the real.
    pub method: ForwardingMethod,
    /// Whether the reply key is indexed too (NAT).
    has_reply: bool,
    /// The real's address; `UNSPECIFIED` when it is of the other family
    /// (an IPv4 flow tunnelled to an IPv6 real, 4in6): the snapshot then
    /// has it by `real_id`.
    real: A,
    real_port: u16,
    /// SYN proxy (`flow/synproxy.rs`): while the flow waits for the
    /// real's SYN-ACK, the window of the client's ACK (unscaled field).
    pub(super) proxy_window: u16,
    /// Stable id of the real (counters, liveness across reloads).
    pub real_id: u32,
    /// Stable id of the service.
    pub service_id: u32,
    /// Milliseconds (worker clock) of the last packet received of the
    /// flow (what expiry and eviction go by; not one the appliance made,
    /// such as a SYN the SYN proxy sends again).
    pub last_seen: u32,
    /// For templates: the persistence timeout; for flows on a connection
    /// sync primary: when the flow was last sent to the peer (worker
    /// clock, ms; `flow/sync.rs`); for a flow the SYN proxy answered,
    /// while it waits for its real (sync sends none such): when its SYN
    /// last went to the real ([`Flow::syn_sent_at`]); otherwise unused.
    pub template_timeout: u32,
    /// For templates: flows currently placed by it. For a flow the SYN
    /// proxy answered, while it waits for its real (no template reads it
    /// then): the TTL of its SYN to the real and how often that SYN was
    /// sent again (`flow/synproxy.rs`, [`SynRetries`](super::synproxy::SynRetries));
    /// once its real answered, where the real sends from
    /// ([`sender_mark`](super::synproxy::sender_mark); 0 on a flow synced
    /// from a peer); 0 otherwise.
    pub children: u32,
    /// Whether this flow was placed through a persistence template.
    pub templated: bool,
    /// What was seen of the flow: `SEEN_CLIENT` and `SEEN_REAL` (TCP:
    /// that side's next sequence number is known; UDP: the real answered),
    /// `CONFIRMED` (NAT: the client acknowledged the real's SYN),
    /// `REPEATED` (UDP: the client sent again; TCP: `FIRST_FIN_REAL`,
    /// which side's FIN began the close), `SAW_SYN` (TCP: the flow
    /// began with the client's SYN, not mid-stream), `SYNCED` and
    /// `VOUCHED` (connection sync).
    pub(super) seq_known: u8,
    /// SYN proxy: its `PROXY_*` flags; 0 for every flow it did not answer
    /// the handshake of (the one byte the fast path tests).
    pub(super) proxy: u8,
    /// SYN proxy: the real's window-scale shift (low nibble) and the
    /// client's (high nibble).
    pub(super) proxy_wscale: u8,
    /// TCP: the next sequence number each side was seen to need (each in
    /// its sender's own sequence space, as received).
    pub(super) client_next: u32,
    /// (While a proxied flow waits for its real, which has sent nothing
    /// yet: the TSval of the client's ACK, which its SYN to the real
    /// carried; see `flow/synproxy.rs`. On a TUN or DR flow, whose real's
    /// side is never seen: the client's last believed acknowledgment
    /// number, [`Flow::client_acks_fit`].)
    pub(super) real_next: u32,
    /// SYN proxy: the real's ISN minus the cookie (the proxy's ISN);
    /// while waiting for the real's SYN-ACK, the cookie. (On a TUN or DR
    /// TCP flow, never proxied: the client's next sequence number as last
    /// told to the sync peer, [`Flow::client_drifted`].)
    pub(super) proxy_seq: u32,
    /// SYN proxy: added to the real's TSval towards the client; while
    /// waiting, the TSval the proxy sent the client. (On a TUN or DR TCP
    /// flow: the client's acknowledgment mark as last told to the sync
    /// peer.)
    pub(super) proxy_ts: u32,
}

const _: () = assert!(std::mem::size_of::<Flow<Ipv4Addr>>() == 64);
const _: () = assert!(std::mem::size_of::<Flow<std::net::Ipv6Addr>>() == 128);

/// Whether a segment without ACK may be believed: a SYN or a RST (as in
/// Linux conntrack's table of valid flags), never one with FIN too (found
/// in review: SYN|FIN passed as a SYN, so a blind one within `RST_WINDOW`
/// was believed as a FIN, where a FIN with ACK must fit the
/// acknowledgment check too).
#[inline(always)]
fn no_ack_fits(flags: TcpFlags) -> bool {
    flags.intersects(TcpFlags::SYN | TcpFlags::RST) && !flags.contains(TcpFlags::FIN)
}

impl<A: FlowAddr> Flow<A> {
    #[inline]
    pub fn key(&self) -> FlowKey<A> {
        FlowKey {
            proto: self.proto,
            client: self.client,
            client_port: self.client_port,
            vip: self.vip,
            vip_port: self.vip_port,
        }
    }

    #[inline]
    pub fn reply_key(&self) -> ReplyKey<A> {
        ReplyKey {
            proto: self.proto,
            real: self.real,
            real_port: self.real_port,
            client: self.client,
            client_port: self.client_port,
        }
    }

    #[inline]
    pub fn real(&self) -> A {
        self.real
    }

    #[inline]
    pub fn real_port(&self) -> u16 {
        self.real_port
    }

    #[inline]
    pub fn vip(&self) -> A {
        self.vip
    }

    #[inline]
    pub fn vip_port(&self) -> u16 {
        self.vip_port
    }

    #[inline]
    pub fn client(&self) -> A {
        self.client
    }

    #[inline]
    pub fn client_port(&self) -> u16 {
        self.client_port
    }

    #[inline]
    pub fn state(&self) -> FlowState {
        self.state
    }

    #[inline]
    pub fn set_state(&mut self, s: FlowState) {
        self.state = s;
    }

    /// Tracks a TCP segment from the client (`from_client`) or the real:
    /// a segment whose sequence number is far from what its sender was
    /// seen to need (more than [`SEQ_WINDOW`](super::SEQ_WINDOW)) is not
    /// believed: it changes neither the state nor the tracking, so a
    /// stranger's RST, FIN or ACK cannot close or confirm the flow; a RST
    /// or FIN must lie within [`RST_WINDOW`](super::state::RST_WINDOW). The
    /// first segment seen from a side sets where it stands, except a synced
    /// flow's client ([`UNSURE_CLIENT`]): the real's first ACK places it
    /// (a TUN or DR flow's: its record, or nothing).
    ///
    /// A NAT flow is confirmed (see [`Trust`]) by the client's ACK of the
    /// real's SYN: an acknowledgment number at most 64 KiB behind what the
    /// real was seen to send, which a stranger who never saw the real's
    /// initial sequence number guesses once in 65,536 tries.
    #[inline(always)]
    pub fn on_segment(&mut self, seg: Segment, from_client: bool) {
        if self.state == FlowState::Established && !seg.ends_or_opens() {
            self.on_plain_segment(seg, from_client);
        } else {
            self.on_any_segment(seg, from_client);
        }
    }

    /// [`Self::on_segment`] for the commonest segment: one with neither
    /// SYN, FIN nor RST on an established flow. It does what the general
    /// path ([`Self::on_any_segment`]) does for such a segment and no
    /// more: no reopen, no SYN to ignore, no RST or FIN window, no close
    /// step, and the state stays what it is (`FlowState::on_tcp` leaves an
    /// established flow established without FIN or RST). A proptest holds
    /// the two to the same entry.
    #[inline(always)]
    fn on_plain_segment(&mut self, seg: Segment, from_client: bool) {
        self.seq_known &= !SYNCED;
        let (bit, other) = if from_client {
            (SEEN_CLIENT, SEEN_REAL)
        } else {
            (SEEN_REAL, SEEN_CLIENT)
        };
        if self.seq_known & bit != 0 {
            let (next, other_next) = if from_client {
                (self.client_next, self.real_next)
            } else {
                (self.real_next, self.client_next)
            };
            if !seq_near(seg.seq, next) {
                return;
            }
            // As in the general path; without SYN or RST a segment must
            // carry an ACK when the other side is seen.
            if self.seq_known & other != 0 {
                if !(seg.flags.contains(TcpFlags::ACK)
                    && seg.ack.wrapping_sub(other_next).wrapping_add(ACK_WINDOW)
                        <= ACK_WINDOW + SEQ_WINDOW)
                {
                    return;
                }
            } else if from_client
                && self.method != ForwardingMethod::Nat
                && !self.client_acks_fit(seg, next)
            {
                return;
            }
            let end = seg.seq.wrapping_add(seg.len);
            if (end.wrapping_sub(next) as i32) > 0 {
                if from_client {
                    self.client_next = end;
                } else {
                    self.real_next = end;
                }
            }
        } else if !(from_client && self.seq_known & UNSURE_CLIENT != 0) {
            self.place_side(seg, from_client, false);
        }
        if from_client
            && self.seq_known & SEEN_REAL != 0
            && seg.flags.contains(TcpFlags::ACK)
            && self.real_next.wrapping_sub(seg.ack) <= CONFIRM_ACK_WINDOW
        {
            self.seq_known |= CONFIRMED;
        }
    }

    /// [`Self::on_segment`] for any segment on a flow in any state.
    #[inline(always)]
    fn on_any_segment(&mut self, seg: Segment, from_client: bool) {
        self.seq_known &= !SYNCED;
        let (bit, other) = if from_client {
            (SEEN_CLIENT, SEEN_REAL)
        } else {
            (SEEN_REAL, SEEN_CLIENT)
        };
        // A client's SYN on a half-open flow starts where it says: the
        // flow may have been opened by someone else's SYN on the same tuple
        // (the real will answer the last one; nothing is confirmed yet).
        let reopen = from_client && self.state == FlowState::SynSent && seg.opens();
        if self.seq_known & bit != 0 && !reopen {
            // A SYN on a side already placed, other than a reopen, is not
            // followed (as Linux conntrack ignores a SYN on an
            // established connection): it needs no ACK, so it would move
            // the tracking without the acknowledgment check below (found
            // in audit: a blind SYN within the window, then a RST at its
            // end, closed a NAT flow in ~2,048 pairs of guesses, and 17
            // such SYNs froze its tracking for good).
            if seg.opens() {
                return;
            }
            let (next, other_next) = if from_client {
                (self.client_next, self.real_next)
            } else {
                (self.real_next, self.client_next)
            };
            if !seq_near(seg.seq, next)
                || (seg.flags.intersects(TcpFlags::RST | TcpFlags::FIN)
                    && !seq_within(seg.seq, next, RST_WINDOW))
            {
                return;
            }
            // Where the other side is seen (NAT), a segment must also
            // acknowledge near what that side sent: at most `ACK_WINDOW`
            // behind it, at most `SEQ_WINDOW` ahead (data of that side the
            // tracking did not follow: a retransmission seen first after a
            // failover or a pick-up, a segment not believed; found in
            // review: held to "never ahead", one such segment froze both
            // sides' tracking for good). Only SYN and RST may come without
            // ACK (as in Linux conntrack's table of valid flags). A
            // stranger who knows the tuple then has to guess both numbers
            // to move the tracking.
            if self.seq_known & other != 0 {
                if !if seg.flags.contains(TcpFlags::ACK) {
                    seg.ack.wrapping_sub(other_next).wrapping_add(ACK_WINDOW)
                        <= ACK_WINDOW + SEQ_WINDOW
                } else {
                    no_ack_fits(seg.flags)
                } {
                    return;
                }
            } else if from_client
                && self.method != ForwardingMethod::Nat
                && !self.client_acks_fit(seg, next)
            {
                return;
            }
            let end = seg.seq.wrapping_add(seg.len);
            // Only forward: a retransmission does not move it back.
            if (end.wrapping_sub(next) as i32) > 0 {
                if from_client {
                    self.client_next = end;
                } else {
                    self.real_next = end;
                }
            }
        } else if from_client && self.seq_known & UNSURE_CLIENT != 0 {
            // A synced flow's client not yet placed: none of its RSTs,
            // FINs or SYNs is believed, and nothing of it is followed:
            // anything a stranger sends could be followed, and a stranger
            // who set where the client stands could then close it (found
            // in review, twice: a blind RST, then a blind segment followed
            // by a RST at its end). Only the real's ACK places the client;
            // TUN and DR, whose real's side is never seen, end by timeout
            // unless their record placed it.
            if seg.ends_or_opens() {
                return;
            }
        } else {
            self.place_side(seg, from_client, reopen);
        }
        if from_client && seg.opens() {
            self.seq_known |= SAW_SYN;
        }
        if from_client
            && self.seq_known & SEEN_REAL != 0
            && seg.flags.contains(TcpFlags::ACK)
            && !seg.flags.intersects(TcpFlags::SYN | TcpFlags::RST)
            && self.real_next.wrapping_sub(seg.ack) <= CONFIRM_ACK_WINDOW
        {
            self.seq_known |= CONFIRMED;
        }
        if seg.flags.contains(TcpFlags::FIN) || self.state == FlowState::Closed {
            self.close_step(seg.flags, from_client);
        } else {
            self.state = self.state.on_tcp(seg.flags, from_client);
        }
    }

    /// [`Self::on_segment`]'s acknowledgment check where only the client
    /// is seen (TUN, DR): the real's data never passes here, so a segment
    /// is held to the client's own acknowledgments instead, which move
    /// with the real's data and which a stranger does not know (the real's
    /// sequence space). `real_next`, unused otherwise on such a flow,
    /// holds the last one believed. A segment is believed if it is the
    /// next one in order (`seq` exactly `next`: every pure ACK of a
    /// download, every in-order segment of an upload; a stranger guesses
    /// it once in 2^32 tries), or if its acknowledgment lies within
    /// [`ACK_WINDOW`] of the last one either side (a segment after a gap,
    /// a reordered one); as where both sides are seen, only SYN and RST
    /// may come without ACK. Every believed segment with ACK sets the
    /// mark (the handshake's ACK, in order, places it; a client whose
    /// acknowledgments moved more than `ACK_WINDOW` while none of its
    /// segments came through is followed again from its next one in
    /// order; a reordered segment sets it back a little, within the
    /// window; a stranger's lucky hit moves it at most `ACK_WINDOW`, and
    /// the client's next segment that fits the window sets it right: not
    /// one in order, since the hit moved the tracked next past the
    /// client). While half-open no acknowledgment was believed, so only
    /// the next segment in order is. Found in review: without it a stranger who
    /// knew the tuple moved the client's tracking with a blind segment
    /// within [`SEQ_WINDOW`] once in 4,096 tries, and a RST at its end
    /// closed the flow; two such hits put the client outside the window,
    /// where its own FIN and RST were no longer believed. Now each hit
    /// takes about 2^19 tries, as on NAT.
    #[inline(always)]
    fn client_acks_fit(&mut self, seg: Segment, next: u32) -> bool {
        if !seg.flags.contains(TcpFlags::ACK) {
            return no_ack_fits(seg.flags);
        }
        // While half-open no acknowledgment was believed yet: the mark is
        // 0, which a stranger knows, so only the next segment in order is
        // (found in review: a blind ACK near 0 within the sequence window
        // was believed once in 4,096 tries, and a RST at its end closed
        // the flow).
        if seg.seq != next
            && (self.state == FlowState::SynSent
                || !seq_within(seg.ack, self.real_next, ACK_WINDOW))
        {
            return false;
        }
        self.real_next = seg.ack;
        // A synced flow's client is where this segment says, no longer
        // only where the peer had it (`place_synced_client`).
        self.seq_known &= !UNSURE_CLIENT;
        true
    }

    /// [`Self::on_segment`] for the first segment seen from a side (or a
    /// client's SYN that reopens a half-open flow): where that side stands
    /// from now on. Out of line: once or twice a flow, never on the
    /// established path.
    #[cold]
    fn place_side(&mut self, seg: Segment, from_client: bool, reopen: bool) {
        let (bit, next) = if from_client {
            (SEEN_CLIENT, &mut self.client_next)
        } else {
            (SEEN_REAL, &mut self.real_next)
        };
        let end = seg.seq.wrapping_add(seg.len);
        // A client's SYN sent again without the data the first one carried
        // (TCP Fast Open: Linux retransmits a bare SYN) is the same SYN:
        // the client goes on from the first one's end, which the real may
        // have acknowledged (found in review: put back to the bare SYN's
        // end, a TUN or DR client was never in order again, and nothing of
        // it was believed).
        let behind = next.wrapping_sub(end);
        let same = *next == end || (reopen && behind != 0 && behind < RST_WINDOW);
        if !same {
            *next = end;
        }
        self.seq_known |= bit;
        // Where only the client is seen, its first acknowledgment is the
        // mark its later segments are held to (`client_acks_fit`); a SYN
        // has none: the handshake's ACK, in order, places it.
        if from_client && self.method != ForwardingMethod::Nat && seg.flags.contains(TcpFlags::ACK)
        {
            self.real_next = seg.ack;
        }
        // A new SYN on a half-open flow is a new handshake: the real's
        // answer to it is placed afresh too (found in audit: a client
        // reconnecting from the same port after a lost SYN-ACK got a
        // second SYN-ACK far from the first, never believed, so the flow
        // was never confirmed and none of the real's FINs or RSTs counted;
        // Linux conntrack re-initialises both sides). Not a retransmission
        // of the same SYN, which the real's SYN-ACK already answers (found
        // in review).
        if reopen && !same {
            self.seq_known &= !SEEN_REAL;
        }
        if !from_client && self.seq_known & UNSURE_CLIENT != 0 && seg.flags.contains(TcpFlags::ACK)
        {
            self.place_client(seg.ack);
        }
    }

    /// [`Self::on_segment`]'s state step for a FIN, or on a closed flow
    /// (out of line: the established path has neither). A FIN from each
    /// side closes it (as a RST does): only then may a client's SYN
    /// replace it. One side's FIN leaves a half-closed connection whose
    /// other side still sends; a stranger's SYN on it must not end it
    /// (found in audit: a blind SYN ended a half-closed proxied flow and
    /// its translation with it; `Conntrack::lookup_or_create` has the
    /// rule, and why TUN and DR differ). Closed stays closed (found in
    /// review: a retransmitted last FIN half-opened it again).
    #[cold]
    fn close_step(&mut self, flags: TcpFlags, from_client: bool) {
        if self.state == FlowState::Closed {
            return;
        }
        let state = self.state.on_tcp(flags, from_client);
        if state == FlowState::FinWait {
            let side = if from_client { 0 } else { FIRST_FIN_REAL };
            if self.state != FlowState::FinWait {
                self.seq_known = (self.seq_known & !FIRST_FIN_REAL) | side;
            } else if self.seq_known & FIRST_FIN_REAL != side {
                self.state = FlowState::Closed;
                return;
            }
        }
        self.state = state;
    }

    /// Where this flow's client stands, for the sync peer: a TUN or DR
    /// TCP flow whose client is placed (on such a flow `real_next` holds
    /// its acknowledgment mark, [`Self::client_acks_fit`]), past its
    /// handshake; None for any other flow (NAT's receiver places the
    /// client by the real's ACK). Not while half-open: no acknowledgment
    /// is believed yet, and a peer that took over holding the client to
    /// its handshake (the record of its end lost) would believe none of
    /// its segments once it sent data, and keep the flow half-open; not
    /// placed, the flow becomes established at the client's first ACK
    /// there, as before records said where the client stood (found in
    /// review). A place a sync peer gave and no segment confirmed here yet
    /// (`UNSURE_CLIENT` beside `SEEN_CLIENT`) goes on as it came: a bulk
    /// pass hands it back to a peer that restarted without it.
    pub(super) fn client_seq(&self) -> Option<ClientSeq> {
        (self.proto == u8::from(IpProtocol::Tcp)
            && self.method != ForwardingMethod::Nat
            && self.state != FlowState::SynSent
            && self.seq_known & SEEN_CLIENT != 0)
            .then_some(ClientSeq {
                next: self.client_next,
                ack: self.real_next,
            })
    }

    /// A synced TUN or DR flow's client placed where the peer had it
    /// (`c`): its segments are held to that from now on, as they were on
    /// the peer, and its FIN and RST are believed. A client that moved
    /// further than the windows allow since the peer's record is not
    /// followed, as an unplaced one (the flow ends by its timeout). Also
    /// remembered as what the peer was last told, for
    /// [`Self::client_drifted`] once the flow is ours. [`UNSURE_CLIENT`]
    /// stays until a segment of the client's is believed here (found in
    /// review: a stale place made ICMP errors quoting where the client
    /// really is look forged, and a tunnel's "packet too big" for it was
    /// not relayed for the rest of the flow's life).
    pub(super) fn place_synced_client(&mut self, c: ClientSeq) {
        self.client_next = c.next;
        self.real_next = c.ack;
        self.proxy_seq = c.next;
        self.proxy_ts = c.ack;
        self.seq_known |= SEEN_CLIENT;
    }

    /// Whether this TUN or DR flow's client moved, since the sync peer was
    /// last told ([`Self::client_seq_sent`]), far enough that a record
    /// should tell it again: more than a quarter of the windows its
    /// segments are held to (`SEQ_WINDOW` for its sequence numbers,
    /// `ACK_WINDOW` for its acknowledgments), so that a record or two may
    /// be lost and the peer still follows it after a takeover.
    pub(super) fn client_drifted(&self) -> bool {
        self.client_seq().is_some_and(|c| {
            !seq_within(c.next, self.proxy_seq, SEQ_WINDOW / 4)
                || !seq_within(c.ack, self.proxy_ts, ACK_WINDOW / 4)
        })
    }

    /// Notes what the sync peer was just told of where the client stands
    /// (a record with [`Self::client_seq`] was queued).
    pub(super) fn client_seq_sent(&mut self) {
        if let Some(c) = self.client_seq() {
            self.proxy_seq = c.next;
            self.proxy_ts = c.ack;
        }
    }

    /// The real's first ACK of a synced flow says where its client stands:
    /// at `ack`, a number only the real knows. (A client with more than
    /// 1 MiB in flight then sends beyond where it is believed, and its own
    /// FIN or RST is not believed; the real's FIN still closes the flow.)
    fn place_client(&mut self, ack: u32) {
        self.client_next = ack;
        self.seq_known = (self.seq_known | SEEN_CLIENT) & !UNSURE_CLIENT;
    }

    /// Whether a packet from the real (`tcp`: a TCP segment) could change
    /// what this flow is trusted with: a TCP flow not yet confirmed, or a
    /// synced one whose client the real's ACK is yet to place; a datagram
    /// flow whose real was not heard yet. `Conntrack::reply` believes such
    /// a packet only from where the real is reached.
    #[inline(always)]
    pub fn awaits_real(&self, tcp: bool) -> bool {
        if tcp {
            self.seq_known & CONFIRMED == 0 || self.seq_known & UNSURE_CLIENT != 0
        } else {
            self.seq_known & SEEN_REAL == 0
        }
    }

    /// Whether `seq`, a TCP sequence number an ICMP error quotes as the
    /// client's, lies near where the client was seen to stand (RFC 5927:
    /// an error that quotes a segment nobody sent is not believed). True
    /// while the client's place is not known, or is only a sync peer's
    /// word ([`UNSURE_CLIENT`]).
    pub fn quotes_client_seq(&self, seq: u32) -> bool {
        self.seq_known & SEEN_CLIENT == 0
            || self.seq_known & UNSURE_CLIENT != 0
            || seq_near(seq, self.client_next)
    }

    /// Records that the real answered (NAT UDP: evidence from both ends).
    #[inline]
    pub fn heard_from_real(&mut self) {
        self.seq_known = (self.seq_known | SEEN_REAL) & !SYNCED;
    }

    /// The class this flow's entry belongs in, from what was seen of it:
    /// - a template: `Confirmed` while flows depend on it, else
    ///   `Unconfirmed`;
    /// - TCP: `Confirmed` when established after a handshake seen both
    ///   ways (NAT), and while half-closed after it (found in audit: a
    ///   client that sent its request and FIN and waited for a slow answer
    ///   was evicted first under a SYN flood, and the answer dropped; Linux
    ///   keeps an assured entry through the close), `OneWay` when
    ///   established from a SYN with only the client seen (TUN, DR),
    ///   `Unconfirmed` otherwise (a SYN, an unverified ACK, a Maglev
    ///   pick-up mid-stream, a closed flow, a one-way flow closing);
    /// - UDP: `OneWay` once NAT saw the real answer, or TUN and DR saw a
    ///   second packet (`repeated`), else `Unconfirmed`;
    /// - a synced flow the peer held at least one-way (`VOUCHED`):
    ///   `OneWay` while established, half-closed (found in review: a
    ///   half-closed flow the primary held confirmed came over
    ///   unconfirmed) or a datagram flow, unless confirmed here since.
    ///   The peer's word is evidence from elsewhere, not a handshake seen
    ///   here: it outranks a spoofed SYN, never a confirmed local flow.
    #[inline]
    pub fn trust(&self) -> Trust {
        match self.state {
            FlowState::Template if self.children > 0 => Trust::Confirmed,
            FlowState::Established | FlowState::FinWait if self.seq_known & CONFIRMED != 0 => {
                Trust::Confirmed
            }
            FlowState::Established | FlowState::FinWait | FlowState::Datagram
                if self.seq_known & VOUCHED != 0 =>
            {
                Trust::OneWay
            }
            FlowState::Established
                if self.method != ForwardingMethod::Nat && self.seq_known & SAW_SYN != 0 =>
            {
                Trust::OneWay
            }
            FlowState::Datagram if self.seq_known & (SEEN_REAL | REPEATED) != 0 => Trust::OneWay,
            _ => Trust::Unconfirmed,
        }
    }

    /// What [`Self::trust`] reads that packets change (the state and what
    /// was seen): when it is the same after a packet, so is the class.
    #[inline(always)]
    pub fn trust_inputs(&self) -> u16 {
        u16::from(self.state as u8) | (u16::from(self.seq_known) << 8)
    }

    /// Records that the client sent more than one packet (UDP trust).
    #[inline]
    pub fn repeated(&mut self) {
        self.seq_known = (self.seq_known | REPEATED) & !SYNCED;
    }

    /// Points a persistence template at another real.
    pub fn retarget(&mut self, real: A, real_port: u16, real_id: u32, method: ForwardingMethod) {
        self.real = real;
        self.real_port = real_port;
        self.real_id = real_id;
        self.method = method;
    }

    pub fn is_template(&self) -> bool {
        self.proto & FLOW_TEMPLATE != 0
    }

    /// Whether the flow has outlived its timeout at `now`.
    #[inline]
    pub fn expired(&self, now: u32, timeouts: &Timeouts) -> bool {
        let timeout = if self.is_template() {
            if self.children > 0 {
                return false;
            }
            self.template_timeout
        } else {
            timeouts.of(self.state())
        };
        now.wrapping_sub(self.last_seen) > timeout
    }
}

/// How far a flow's entry can be trusted, and so whether a full table may
/// evict it to make room. The policy per method is in `conntrack`; in
/// short, no packet a stranger can send blindly earns `Confirmed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Trust {
    /// No evidence that the client exists: a SYN, a handshake not yet
    /// complete, a flow picked up mid-stream, a closed flow, a
    /// persistence template without flows. Evicted first.
    Unconfirmed = 0,
    /// Evidence from one direction only (TUN and DR see only the client;
    /// UDP has no handshake): evicted when no unconfirmed entry is left.
    OneWay = 1,
    /// A real handshake was seen (NAT: the real's SYN-ACK and the client's
    /// ACK of it), or a template that flows depend on. Never evicted.
    Confirmed = 2,
}

impl Trust {
    pub const ALL: [Trust; 3] = [Trust::Unconfirmed, Trust::OneWay, Trust::Confirmed];

    /// The metric label.
    pub fn name(self) -> &'static str {
        match self {
            Trust::Unconfirmed => "unconfirmed",
            Trust::OneWay => "one_way",
            Trust::Confirmed => "confirmed",
        }
    }
}

/// What a new flow is to be created with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewFlow<A: FlowAddr = Ipv4Addr> {
    pub key: FlowKey<A>,
    pub real: A,
    pub real_port: u16,
    pub real_id: u32,
    pub service_id: u32,
    pub method: ForwardingMethod,
    pub state: FlowState,
    /// Its class (and queue) from the start.
    pub trust: Trust,
    /// Index the reply key too (NAT).
    pub index_reply: bool,
    pub now: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertError {
    /// No free entry: the table is at capacity.
    Full,
}

/// How many entries used since they were queued the search for a victim
/// sends to the back of their queue before it takes the front one anyway.
pub const SECOND_CHANCES: usize = 8;

/// A one-way entry is evicted before an unconfirmed one only when it has
/// waited in its queue more than this many times as long.
pub const ONE_WAY_BIAS: u32 = 4;

/// The oldest an entry's queue time is let get (2^30 ms, 12.4 days; the
/// sweep brings older ones forward): with every flow timeout at most 24
/// days, `last_seen - queued_at` and `now - queued_at` then never wrap.
pub const QUEUE_AGE_MAX: u32 = 1 << 30;

/// The class byte of a free entry.
const FREE: u8 = 0xff;
/// No entry (queue links).
const NIL: u32 = u32::MAX;

const EMPTY: u32 = 0;
const DIR_REPLY: u32 = 1;

/// The most flows a table holds: an index slot must keep a few tag bits.
pub const MAX_CAPACITY: usize = (1 << 28) - 1;

/// How a 32-bit index slot is laid out for a table's capacity: bit 0 says
/// whether it holds the reply key; the next `bits` bits the entry number
/// plus one (never zero, so an empty slot is 0); the bits left over hold
/// as many top bits of the key's hash (the tag), which rule out nearly all
/// other keys without reading their entries. Four-byte slots keep the
/// index of a 1M-flow table at 16 MB, half of what eight-byte slots took,
/// so that with tens of thousands of flows it mostly stays in the CPU's
/// last-level cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SlotLayout {
    /// Where the tag starts: the entry bits plus the direction bit.
    tag_shift: u32,
    /// The entry bits, once shifted down past the direction bit. Both are
    /// kept rather than derived from the entry bits' count on every use:
    /// some ten instructions a packet (`scripts/bench-instructions.sh`).
    entry_mask: u32,
}

impl SlotLayout {
    fn for_capacity(capacity: usize) -> SlotLayout {
        let bits = usize::BITS - capacity.leading_zeros();
        SlotLayout {
            tag_shift: bits + 1,
            entry_mask: (1 << bits) - 1,
        }
    }

    #[inline(always)]
    fn tag_shift(self) -> u32 {
        self.tag_shift
    }

    /// The tag of a key with index hash `hash`.
    #[inline(always)]
    fn tag(self, hash: u64) -> u32 {
        ((hash >> 32) as u32) >> self.tag_shift()
    }

    #[inline(always)]
    fn value(self, hash: u64, entry: u32, reply: bool) -> u32 {
        (self.tag(hash) << self.tag_shift()) | ((entry + 1) << 1) | u32::from(reply)
    }

    #[inline(always)]
    fn entry(self, v: u32) -> u32 {
        ((v >> 1) & self.entry_mask) - 1
    }

    /// Whether slot value `v` (not empty) may hold the key of `tag`.
    #[inline(always)]
    fn matches(self, v: u32, tag: u32) -> bool {
        v >> self.tag_shift() == tag
    }
}

/// A vector of `n` copies of `v`, backed by transparent huge pages where
/// the kernel allows (the table is read at random).
fn huge_vec<T: Clone>(n: usize, v: T) -> Vec<T> {
    let mut out = Vec::with_capacity(n);
    crate::hint::advise_huge_pages(out.spare_capacity_mut());
    out.resize(n, v);
    out
}

/// A worker's flow table. Everything is allocated in `with_capacity`.
pub struct FlowTable<A: FlowAddr = Ipv4Addr> {
    /// The index hash's secret key.
    seed: IndexSeed,
    flows: Vec<Flow<A>>,
    /// Each entry's [`Trust`] as a byte, or `FREE`.
    class: Vec<u8>,
    /// The class queues: links, and when each entry was queued (worker
    /// clock, ms), which tells whether it was used since.
    prev: Vec<u32>,
    next: Vec<u32>,
    queued_at: Vec<u32>,
    /// Front of each class's queue (NIL when empty), and its length.
    heads: [u32; 3],
    counts: [usize; 3],
    free: Vec<u32>,
    index: Vec<u32>,
    layout: SlotLayout,
    mask: usize,
    sweep_cursor: usize,
    /// Where [`Self::visit`] goes on (connection sync's refresh).
    visit_cursor: usize,
    /// NAT flows' reply keys (index hash, entry) whose slots
    /// [`Self::insert_deferred`] has not written yet, oldest first: the
    /// first `pending_len` of them.
    pending: [(u64, u32); PENDING],
    pending_len: usize,
}

/// How many new NAT flows' reply keys may wait to be written
/// ([`FlowTable::insert_deferred`]): a burst's worth.
const PENDING: usize = 32;

impl<A: FlowAddr> std::fmt::Debug for FlowTable<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FlowTable({}/{})", self.len(), self.capacity())
    }
}

impl<A: FlowAddr> FlowTable<A> {
    /// A table for `capacity` flows (at least 1). The index has room for
    /// two keys per flow at a load of at most one half.
    pub fn with_capacity(capacity: usize) -> FlowTable<A> {
        Self::with_seed(capacity, IndexSeed::random())
    }

    /// A table whose index is keyed with `seed` (tests that must repeat).
    pub fn with_seed(capacity: usize, seed: IndexSeed) -> FlowTable<A> {
        let capacity = capacity.clamp(1, MAX_CAPACITY);
        let slots = (capacity * 4).next_power_of_two();
        FlowTable {
            seed,
            flows: huge_vec(capacity, Flow::default_entry()),
            class: huge_vec(capacity, FREE),
            prev: huge_vec(capacity, NIL),
            next: huge_vec(capacity, NIL),
            queued_at: huge_vec(capacity, 0),
            heads: [NIL; 3],
            counts: [0; 3],
            free: (0..capacity as u32).rev().collect(),
            index: huge_vec(slots, EMPTY),
            layout: SlotLayout::for_capacity(capacity),
            mask: slots - 1,
            sweep_cursor: 0,
            visit_cursor: 0,
            pending: [(0, 0); PENDING],
            pending_len: 0,
        }
    }

    /// The index hash of a client-side key in this table.
    #[inline]
    pub fn key_hash(&self, key: &FlowKey<A>) -> u64 {
        key.index_hash(&self.seed)
    }

    /// The index hash of a reply key in this table.
    #[inline]
    pub fn reply_key_hash(&self, key: &ReplyKey<A>) -> u64 {
        key.index_hash(&self.seed)
    }

    /// The index's key (for the burst's lookahead, which hashes before it
    /// looks up).
    #[inline]
    pub fn seed(&self) -> &IndexSeed {
        &self.seed
    }

    pub fn capacity(&self) -> usize {
        self.flows.len()
    }

    pub fn len(&self) -> usize {
        self.flows.len() - self.free.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn is_full(&self) -> bool {
        self.free.is_empty()
    }

    /// Hints the CPU (through `B`'s platform) to load the index slot for
    /// `hash`.
    #[inline(always)]
    pub fn prefetch<B: PacketBuf>(&self, hash: u64) {
        let i = (hash as usize) & self.mask;
        B::prefetch((&self.index[i] as *const u32).cast());
    }

    /// Hints the CPU to load the entry the index slot for `hash` points to,
    /// if that slot's tag matches (call after [`Self::prefetch`] had time
    /// to bring the slot in): both cache lines of an IPv6 entry, whose
    /// second holds the times and sequence numbers every packet updates.
    #[inline(always)]
    pub fn prefetch_entry<B: PacketBuf>(&self, hash: u64) {
        let tag = self.layout.tag(hash);
        let mut i = (hash as usize) & self.mask;
        loop {
            let v = self.index[i];
            if v == EMPTY {
                return;
            }
            if self.layout.matches(v, tag) {
                for line in crate::hint::lines(&self.flows[self.layout.entry(v) as usize]) {
                    B::prefetch(line);
                }
                return;
            }
            // A key pushed along by others (linear probing) sits further
            // on: followed as long as its slot is in the cache line the
            // slot prefetch brought in, never to a line not yet loaded.
            let next = std::ptr::from_ref(&self.index[i]) as usize + std::mem::size_of::<u32>();
            i = (i + 1) & self.mask;
            if i == 0 || next % crate::hint::CACHE_LINE == 0 {
                return;
            }
        }
    }

    /// The entry number of the flow with client-side `key` (hash given).
    #[inline]
    pub fn lookup(&self, key: &FlowKey<A>, hash: u64) -> Option<u32> {
        self.find(hash, |f, reply| !reply && f.key() == *key)
    }

    /// The entry number of the NAT flow whose reply key is `key`.
    #[inline]
    pub fn lookup_reply(&self, key: &ReplyKey<A>, hash: u64) -> Option<u32> {
        self.find(hash, |f, reply| {
            reply && f.has_reply && f.reply_key() == *key
        })
        // A copy for the out-of-line search: `key`'s own address not taken
        // (the caller's key stays in registers).
        .or_else(|| {
            let key = *key;
            self.pending_reply(&key, hash)
        })
    }

    #[inline]
    fn find(&self, hash: u64, matches: impl Fn(&Flow<A>, bool) -> bool) -> Option<u32> {
        let tag = self.layout.tag(hash);
        let mut i = (hash as usize) & self.mask;
        loop {
            let v = self.index[i];
            if v == EMPTY {
                return None;
            }
            if self.layout.matches(v, tag) {
                let e = self.layout.entry(v);
                if matches(&self.flows[e as usize], v & DIR_REPLY != 0) {
                    return Some(e);
                }
            }
            i = (i + 1) & self.mask;
        }
    }

    /// [`Self::lookup_reply`] for a key the index does not hold: one of
    /// the reply keys still to be written ([`Self::insert_deferred`]),
    /// found as if it were there. At most [`PENDING`] hashes compared.
    #[cold]
    #[inline(never)]
    fn pending_reply(&self, key: &ReplyKey<A>, hash: u64) -> Option<u32> {
        self.pending[..self.pending_len]
            .iter()
            .find(|&&(h, e)| h == hash && self.flows[e as usize].reply_key() == *key)
            .map(|&(_, e)| e)
    }

    #[inline]
    pub fn get(&self, entry: u32) -> &Flow<A> {
        &self.flows[entry as usize]
    }

    #[inline]
    pub fn get_mut(&mut self, entry: u32) -> &mut Flow<A> {
        &mut self.flows[entry as usize]
    }

    /// Creates a flow. The caller has checked that the key is absent.
    pub fn insert(&mut self, new: &NewFlow<A>) -> Result<u32, InsertError> {
        self.insert_with(new, false)
    }

    /// [`Self::insert`], except that a NAT flow's reply key is not written
    /// into the index yet: its slot, a random one in an index of megabytes,
    /// is a cache miss that would stall the packet that opens the flow. It
    /// is written by [`Self::settle`], which the pipeline calls at the end
    /// of every burst (and of `Pipeline::process`), and every removal (and
    /// an insert that finds [`PENDING`] keys waiting) calls first; lookups
    /// find the flow by it meanwhile. [`Self::prefetch_pending`] asks for
    /// the slot's cache line, so that the rest of the burst hides the miss.
    /// Keys land in other slots than with [`Self::insert`] (the order of
    /// inserts differs), which linear probing allows: every key stays
    /// between its home slot and the next empty one.
    pub fn insert_deferred(&mut self, new: &NewFlow<A>) -> Result<u32, InsertError> {
        self.insert_with(new, true)
    }

    /// Writes the reply keys [`Self::insert_deferred`] left, oldest first.
    #[inline]
    pub fn settle(&mut self) {
        if self.pending_len != 0 {
            self.settle_all();
        }
    }

    #[inline(never)]
    fn settle_all(&mut self) {
        for k in 0..std::mem::take(&mut self.pending_len) {
            let (hash, e) = self.pending[k];
            self.index_insert(hash, e, true);
        }
    }

    /// Hints the CPU to load the index slot of the reply key
    /// [`Self::insert_deferred`] left last, if any.
    #[inline]
    pub fn prefetch_pending<B: PacketBuf>(&self) {
        if let Some(&(hash, _)) = self.pending[..self.pending_len].last() {
            self.prefetch::<B>(hash);
        }
    }

    /// Out of line, as `insert` always was: the new-flow path, kept out of
    /// the established one it is called from.
    #[inline(never)]
    fn insert_with(&mut self, new: &NewFlow<A>, defer: bool) -> Result<u32, InsertError> {
        if !defer || self.pending_len == PENDING {
            self.settle();
        }
        let e = self.free.pop().ok_or(InsertError::Full)?;
        let k = &new.key;
        self.flows[e as usize] = Flow {
            client: k.client,
            vip: k.vip,
            client_port: k.client_port,
            vip_port: k.vip_port,
            proto: k.proto,
            state: new.state,
            method: new.method,
            has_reply: new.index_reply,
            real: new.real,
            real_port: new.real_port,
            proxy_window: 0,
            real_id: new.real_id,
            service_id: new.service_id,
            last_seen: new.now,
            template_timeout: 0,
            children: 0,
            templated: false,
            seq_known: 0,
            proxy: 0,
            proxy_wscale: 0,
            client_next: 0,
            real_next: 0,
            proxy_seq: 0,
            proxy_ts: 0,
        };
        self.enqueue(e, new.trust, new.now);
        self.index_insert(k.index_hash(&self.seed), e, false);
        if new.index_reply {
            let hash = self.flows[e as usize].reply_key().index_hash(&self.seed);
            if defer {
                self.pending[self.pending_len] = (hash, e);
                self.pending_len += 1;
            } else {
                self.index_insert(hash, e, true);
            }
        }
        Ok(e)
    }

    /// Removes a flow and returns it.
    pub fn remove(&mut self, entry: u32) -> Flow<A> {
        self.settle();
        let f = self.flows[entry as usize];
        debug_assert!(self.is_live(entry));
        self.index_remove(f.key().index_hash(&self.seed), entry, false);
        if f.has_reply {
            self.index_remove(f.reply_key().index_hash(&self.seed), entry, true);
        }
        self.dequeue(entry);
        self.class[entry as usize] = FREE;
        self.free.push(entry);
        f
    }

    #[inline]
    pub(super) fn is_live(&self, entry: u32) -> bool {
        self.class[entry as usize] != FREE
    }

    /// Whether live entry `e` is held at `OneWay` though its flow earned
    /// `Confirmed`: its source held its share of a pressed table
    /// (`Conntrack::set_class`).
    #[inline]
    fn is_held(&self, e: usize) -> bool {
        self.class[e] == Trust::OneWay as u8 && self.flows[e].trust() == Trust::Confirmed
    }

    /// The class of live entry `entry`.
    #[inline]
    pub fn trust(&self, entry: u32) -> Trust {
        match self.class[entry as usize] {
            0 => Trust::Unconfirmed,
            1 => Trust::OneWay,
            _ => Trust::Confirmed,
        }
    }

    /// Moves live entry `entry` to class `trust` (to the back of its
    /// queue) unless it is in that class already.
    #[inline]
    pub fn set_trust(&mut self, entry: u32, trust: Trust, now: u32) {
        if self.class[entry as usize] != trust as u8 {
            self.dequeue(entry);
            self.enqueue(entry, trust, now);
        }
    }

    /// How many live entries are in class `trust`.
    #[inline]
    pub fn count(&self, trust: Trust) -> usize {
        self.counts[trust as usize]
    }

    /// Puts free-or-unlinked `e` at the back of `trust`'s queue.
    fn enqueue(&mut self, e: u32, trust: Trust, now: u32) {
        let c = trust as usize;
        let i = e as usize;
        self.class[i] = trust as u8;
        self.queued_at[i] = now;
        let head = self.heads[c];
        if head == NIL {
            self.prev[i] = e;
            self.next[i] = e;
            self.heads[c] = e;
        } else {
            // A circular queue: the back is the front's predecessor.
            let tail = self.prev[head as usize];
            self.prev[i] = tail;
            self.next[i] = head;
            self.next[tail as usize] = e;
            self.prev[head as usize] = e;
        }
        self.counts[c] += 1;
    }

    /// Takes live `e` out of its class's queue (its class byte stays).
    fn dequeue(&mut self, e: u32) {
        let i = e as usize;
        let c = usize::from(self.class[i]);
        let (p, n) = (self.prev[i], self.next[i]);
        if n == e {
            self.heads[c] = NIL;
        } else {
            self.next[p as usize] = n;
            self.prev[n as usize] = p;
            if self.heads[c] == e {
                self.heads[c] = n;
            }
        }
        self.counts[c] -= 1;
    }

    /// The entry a full table should give up for a new one, never a
    /// confirmed one: the front of the unconfirmed queue, unless the front
    /// of the one-way queue has waited more than [`ONE_WAY_BIAS`] times as
    /// long (so a steady flood of one-way entries cannot make every new
    /// unconfirmed entry, a legitimate SYN among them, the next victim);
    /// and within that queue, after giving up to [`SECOND_CHANCES`] entries
    /// that were used since they were queued another turn at the back.
    /// None when every entry is confirmed. At most `SECOND_CHANCES` + 1
    /// steps, however the table is filled.
    pub fn victim(&mut self, now: u32) -> Option<u32> {
        let waited = |t: &FlowTable<A>, c: Trust| {
            let h = t.heads[c as usize];
            (h != NIL).then(|| now.wrapping_sub(t.queued_at[h as usize]))
        };
        let c = match (
            waited(self, Trust::Unconfirmed),
            waited(self, Trust::OneWay),
        ) {
            (Some(u), Some(o)) if o / ONE_WAY_BIAS > u => Trust::OneWay,
            (Some(_), _) => Trust::Unconfirmed,
            (None, Some(_)) => Trust::OneWay,
            (None, None) => return None,
        };
        for _ in 0..SECOND_CHANCES.min(self.counts[c as usize] - 1) {
            let h = self.heads[c as usize];
            let used = self.flows[h as usize]
                .last_seen
                .wrapping_sub(self.queued_at[h as usize]) as i32
                > 0;
            if !used {
                return Some(h);
            }
            // The queue is circular: moving the front on sends it to the back.
            self.queued_at[h as usize] = now;
            self.heads[c as usize] = self.next[h as usize];
        }
        Some(self.heads[c as usize])
    }

    fn index_insert(&mut self, hash: u64, entry: u32, reply: bool) {
        let mut i = (hash as usize) & self.mask;
        while self.index[i] != EMPTY {
            i = (i + 1) & self.mask;
        }
        self.index[i] = self.layout.value(hash, entry, reply);
    }

    fn index_remove(&mut self, hash: u64, entry: u32, reply: bool) {
        let want = self.layout.value(hash, entry, reply);
        let mut i = (hash as usize) & self.mask;
        while self.index[i] != want {
            if self.index[i] == EMPTY {
                debug_assert!(false, "index entry missing");
                return;
            }
            i = (i + 1) & self.mask;
        }
        // Backward-shift deletion: pull later members of the probe chain
        // into the hole when their home slot allows it.
        let mut hole = i;
        let mut j = (i + 1) & self.mask;
        loop {
            let v = self.index[j];
            if v == EMPTY {
                break;
            }
            let e = self.layout.entry(v);
            let f = &self.flows[e as usize];
            let h = if v & DIR_REPLY != 0 {
                f.reply_key().index_hash(&self.seed)
            } else {
                f.key().index_hash(&self.seed)
            };
            let home = (h as usize) & self.mask;
            // Move v to the hole if its home is not strictly inside (hole, j].
            let dist_home = j.wrapping_sub(home) & self.mask;
            let dist_hole = j.wrapping_sub(hole) & self.mask;
            if dist_home >= dist_hole {
                self.index[hole] = v;
                hole = j;
            }
            j = (j + 1) & self.mask;
        }
        self.index[hole] = EMPTY;
    }

    /// Looks at up to `budget` entries after the last one looked at and
    /// removes those `expired` says are over, calling `on_remove` for each,
    /// but no more than `max_removals` of them: a removal (two index
    /// deletions and a queue unlink) costs far more than a look, so this
    /// bounds the time a call takes however many entries expire at once.
    /// Returns how many were removed. `on_held` is called with each live
    /// entry it keeps that is held at `OneWay` though its flow earned
    /// `Confirmed` ([`Self::is_held`]).
    ///
    /// An entry it keeps has its queue time brought to at most
    /// [`QUEUE_AGE_MAX`] before `now`: the victim search compares queue
    /// times with the worker clock and with `last_seen`, which wrap (u32
    /// ms), and an entry that sat in its queue for 25 days or more read as
    /// unused or as new (found in audit).
    pub fn sweep(
        &mut self,
        now: u32,
        budget: usize,
        max_removals: usize,
        mut expired: impl FnMut(&Flow<A>) -> bool,
        mut on_remove: impl FnMut(&Flow<A>, Trust),
        mut on_held: impl FnMut(u32),
    ) -> usize {
        let n = self.flows.len();
        let mut removed = 0;
        for _ in 0..budget.min(n) {
            if removed == max_removals {
                break;
            }
            let e = self.sweep_cursor;
            self.sweep_cursor = if e + 1 == n { 0 } else { e + 1 };
            if self.class[e] == FREE {
                continue;
            }
            if expired(&self.flows[e]) {
                let trust = self.trust(e as u32);
                let f = self.remove(e as u32);
                on_remove(&f, trust);
                removed += 1;
            } else {
                if now.wrapping_sub(self.queued_at[e]) > QUEUE_AGE_MAX {
                    self.queued_at[e] = now.wrapping_sub(QUEUE_AGE_MAX);
                }
                if self.is_held(e) {
                    on_held(e as u32);
                }
            }
        }
        removed
    }

    /// Looks at up to `budget` entries after the last one this looked at
    /// (a cursor of its own, apart from the sweep's) and calls `f` with
    /// each live one; `f` may change what the index does not key on.
    pub fn visit(&mut self, budget: usize, mut f: impl FnMut(u32, &mut Flow<A>)) {
        let n = self.flows.len();
        for _ in 0..budget.min(n) {
            let e = self.visit_cursor;
            self.visit_cursor = if e + 1 == n { 0 } else { e + 1 };
            if self.class[e] != FREE {
                f(e as u32, &mut self.flows[e]);
            }
        }
    }

    /// Calls `f` with each live entry from entry `from` on, `budget`
    /// entries looked at at most (a cursor the caller keeps: a listing in
    /// pages). Returns where to go on, or None at the end.
    pub fn page(
        &self,
        from: usize,
        budget: usize,
        mut f: impl FnMut(u32, &Flow<A>),
    ) -> Option<usize> {
        let n = self.flows.len();
        let end = from.saturating_add(budget).min(n);
        for e in from.min(n)..end {
            if self.class[e] != FREE {
                f(e as u32, &self.flows[e]);
            }
        }
        (end < n).then_some(end)
    }

    /// Looks at up to `budget` entries from entry `from` on (a cursor the
    /// caller keeps, for a pass over the whole table that must not skip
    /// entries) and calls `f` with each live one until it returns false
    /// (no room for more: that entry is looked at again next time).
    /// Returns where to go on, or None when the pass reached the end.
    pub fn visit_from(
        &mut self,
        from: usize,
        budget: usize,
        mut f: impl FnMut(u32, &mut Flow<A>) -> bool,
    ) -> Option<usize> {
        let n = self.flows.len();
        let end = from.saturating_add(budget).min(n);
        for e in from..end {
            if self.class[e] != FREE && !f(e as u32, &mut self.flows[e]) {
                return Some(e);
            }
        }
        (end < n).then_some(end)
    }

    /// The longest distance, in slots, between any key's home slot and
    /// where it sits: what the slowest lookup walks (diagnostics and tests;
    /// reads the whole index; a reply key not yet settled is not in it).
    pub fn longest_probe(&self) -> usize {
        let mut longest = 0;
        for (i, &v) in self.index.iter().enumerate() {
            if v == EMPTY {
                continue;
            }
            let f = &self.flows[self.layout.entry(v) as usize];
            let h = if v & DIR_REPLY != 0 {
                f.reply_key().index_hash(&self.seed)
            } else {
                f.key().index_hash(&self.seed)
            };
            let home = (h as usize) & self.mask;
            longest = longest.max(i.wrapping_sub(home) & self.mask);
        }
        longest
    }

    /// Checks the class queues against the entries (tests, the fuzz
    /// harness): every live entry is in exactly the queue of its class,
    /// which is the class its flow has earned ([`Flow::trust`]); the counts
    /// add up. Reads everything.
    pub fn audit(&self) -> Result<(), String> {
        let mut seen = vec![false; self.flows.len()];
        for c in Trust::ALL {
            let mut n = 0;
            let head = self.heads[c as usize];
            if head != NIL {
                let mut e = head;
                loop {
                    let i = e as usize;
                    if seen[i] {
                        return Err(format!("entry {e} queued twice"));
                    }
                    seen[i] = true;
                    if self.class[i] != c as u8 {
                        return Err(format!("entry {e} in the {} queue", c.name()));
                    }
                    // A flow whose source holds its share is held at
                    // one-way though it earned confirmed
                    // (`Conntrack::set_class`).
                    if self.flows[i].trust() != c && !self.is_held(i) {
                        return Err(format!(
                            "entry {e} is {} but earned {} ({:?})",
                            c.name(),
                            self.flows[i].trust().name(),
                            self.flows[i]
                        ));
                    }
                    let n_ = self.next[i];
                    if self.prev[n_ as usize] != e {
                        return Err(format!("broken link after entry {e}"));
                    }
                    n += 1;
                    e = n_;
                    if e == head {
                        break;
                    }
                    if n > self.flows.len() {
                        return Err(format!("the {} queue does not close", c.name()));
                    }
                }
            }
            if n != self.counts[c as usize] {
                return Err(format!(
                    "{} queue holds {n}, counted {}",
                    c.name(),
                    self.counts[c as usize]
                ));
            }
        }
        for (i, &s) in seen.iter().enumerate() {
            if s != (self.class[i] != FREE) {
                return Err(format!(
                    "entry {i}: live {} but queued {s}",
                    self.class[i] != FREE
                ));
            }
        }
        // Every persistence template counts exactly the live flows it
        // placed (found in audit: a flow that evicted its template later
        // counted itself out of another, which its flows then no longer
        // held).
        let mut placed: std::collections::HashMap<FlowKey<A>, u32> = Default::default();
        for (i, f) in self.flows.iter().enumerate() {
            if self.class[i] != FREE && f.templated && !f.is_template() {
                let k = FlowKey {
                    proto: f.proto | FLOW_TEMPLATE,
                    client_port: 0,
                    ..f.key()
                };
                *placed.entry(k).or_default() += 1;
            }
        }
        for (i, f) in self.flows.iter().enumerate() {
            if self.class[i] != FREE && f.is_template() {
                let n = placed.remove(&f.key()).unwrap_or(0);
                if f.children != n {
                    return Err(format!(
                        "template {i} counts {} children, {n} live flows name it ({f:?})",
                        f.children
                    ));
                }
            }
        }
        if let Some((k, n)) = placed.into_iter().next() {
            return Err(format!(
                "{n} live flows name a template that is gone: {k:?}"
            ));
        }
        Ok(())
    }

    /// Every live entry number (for tests and diagnostics; allocates).
    pub fn entries(&self) -> Vec<u32> {
        (0..self.flows.len() as u32)
            .filter(|&e| self.is_live(e))
            .collect()
    }
}

impl<A: FlowAddr> Flow<A> {
    fn default_entry() -> Flow<A> {
        Flow {
            client: A::UNSPECIFIED,
            vip: A::UNSPECIFIED,
            client_port: 0,
            vip_port: 0,
            proto: 0,
            state: FlowState::Closed,
            method: ForwardingMethod::Nat,
            has_reply: false,
            real: A::UNSPECIFIED,
            real_port: 0,
            proxy_window: 0,
            real_id: 0,
            service_id: 0,
            last_seen: 0,
            template_timeout: 0,
            children: 0,
            templated: false,
            seq_known: 0,
            proxy: 0,
            proxy_wscale: 0,
            client_next: 0,
            real_next: 0,
            proxy_seq: 0,
            proxy_ts: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;
    use std::net::Ipv6Addr;

    proptest! {
        /// An index slot holds the top bits of its key's hash above the
        /// entry number plus one and the direction bit, for any capacity:
        /// what a slot's tag test reads is exactly what was written.
        #[test]
        fn a_slot_holds_its_tag_entry_and_direction(
            capacity in 1usize..=MAX_CAPACITY,
            hash in any::<u64>(),
            other in any::<u64>(),
            entry in any::<u32>(),
            reply in any::<bool>(),
        ) {
            let layout = SlotLayout::for_capacity(capacity);
            let bits = usize::BITS - capacity.leading_zeros();
            let entry = entry % (capacity as u32);
            let v = layout.value(hash, entry, reply);
            prop_assert_ne!(v, EMPTY);
            prop_assert_eq!(v >> (bits + 1), ((hash >> 32) as u32) >> (bits + 1));
            prop_assert_eq!(layout.entry(v), entry);
            prop_assert_eq!(v & DIR_REPLY != 0, reply);
            prop_assert!(layout.matches(v, layout.tag(hash)));
            let same_top = ((other >> 32) as u32) >> (bits + 1) == ((hash >> 32) as u32) >> (bits + 1);
            prop_assert_eq!(layout.matches(v, layout.tag(other)), same_top);
        }
    }

    fn key(i: u32) -> FlowKey {
        FlowKey {
            proto: 6,
            client: Ipv4Addr::from(0xc613_0000 + (i >> 8)),
            client_port: 1024 + (i & 0xff) as u16,
            vip: Ipv4Addr::new(198, 18, 1, 100),
            vip_port: 80,
        }
    }

    fn new(i: u32, nat: bool, now: u32) -> NewFlow {
        NewFlow {
            key: key(i),
            real: Ipv4Addr::new(198, 18, 2, (i % 200) as u8 + 1),
            real_port: 8080,
            real_id: i % 7,
            service_id: 1,
            method: ForwardingMethod::Nat,
            state: FlowState::SynSent,
            trust: Trust::Unconfirmed,
            index_reply: nat,
            now,
        }
    }

    /// IPv6 keys that differ in the top and in the bottom bits of both
    /// addresses (clients of one /64 and of many).
    fn key6(i: u32) -> FlowKey<Ipv6Addr> {
        let client = (0x2001_0002_0010_u128 << 80) | (u128::from(i >> 8) << 96) | u128::from(i);
        FlowKey {
            proto: 6,
            client: Ipv6Addr::from(client),
            client_port: 1024 + (i & 0xff) as u16,
            vip: "2001:2:0:1::100".parse().unwrap(),
            vip_port: 80,
        }
    }

    fn new6(i: u32, nat: bool, now: u32) -> NewFlow<Ipv6Addr> {
        NewFlow {
            key: key6(i),
            real: Ipv6Addr::from((0x2001_0002_u128 << 96) | u128::from(i % 200 + 1)),
            real_port: 8080,
            real_id: i % 7,
            service_id: 1,
            method: ForwardingMethod::Nat,
            state: FlowState::SynSent,
            trust: Trust::Unconfirmed,
            index_reply: nat,
            now,
        }
    }

    thread_local! {
        /// The lines [`Recorder`] was asked to prefetch.
        static PREFETCHED: std::cell::RefCell<Vec<usize>> = const { std::cell::RefCell::new(Vec::new()) };
    }

    /// A buffer type whose platform writes its prefetches down.
    struct Recorder;

    impl PacketBuf for Recorder {
        fn data(&self) -> &[u8] {
            &[]
        }
        fn data_mut(&mut self) -> &mut [u8] {
            &mut []
        }
        fn headroom(&self) -> usize {
            0
        }
        fn prepend(&mut self, _: usize) -> bool {
            false
        }
        fn adj(&mut self, _: usize) -> bool {
            false
        }
        fn trim(&mut self, _: usize) -> bool {
            false
        }
        fn append(&mut self, _: usize) -> bool {
            false
        }
        fn prefetch(line: *const u8) {
            PREFETCHED.with(|p| p.borrow_mut().push(line as usize));
        }
    }

    /// The burst's second prefetch pass finds the entry of a key that
    /// linear probing pushed past its home slot, as far as the slot's
    /// cache line goes (found measuring: only the home slot was looked at,
    /// so at half load a third or so of a NAT table's lookups at 1M flows
    /// waited for their entry; 72 -> 59 ns a packet).
    #[test]
    fn the_entry_of_a_key_past_its_home_slot_is_prefetched() {
        let mut t = FlowTable::with_seed(4096, IndexSeed::fixed(7, 11));
        for i in 0..4096 {
            t.insert(&new(i, true, 0)).unwrap();
        }
        let (mut home, mut further, mut beyond, mut same_tag) = (0, 0, 0, 0);
        for i in 0..4096 {
            let k = key(i);
            let h = t.key_hash(&k);
            let e = t.lookup(&k, h).unwrap();
            // Where the key's slot is, and whether the chain from its home
            // slot stays in the home slot's cache line.
            let start = (h as usize) & t.mask;
            let mut at = start;
            while t.index[at] == EMPTY
                || t.layout.entry(t.index[at]) != e
                || t.index[at] & DIR_REPLY != 0
            {
                at = (at + 1) & t.mask;
            }
            let line =
                |j: usize| std::ptr::from_ref(&t.index[j]) as usize / crate::hint::CACHE_LINE;
            PREFETCHED.with(|p| p.borrow_mut().clear());
            t.prefetch_entry::<Recorder>(h);
            let got = PREFETCHED.with(|p| p.borrow().clone());
            // The first slot on the way with the key's tag: the key's own,
            // or rarely another's whose tag is the same (only a lookup's
            // key compare tells them apart).
            let mut first = start;
            while !t.layout.matches(t.index[first], t.layout.tag(h)) {
                first = (first + 1) & t.mask;
            }
            let entry = std::ptr::from_ref(t.get(t.layout.entry(t.index[first]))) as usize;
            if at == start {
                home += 1;
                assert_eq!(got, vec![entry], "key {i} in its home slot");
            } else if at > start && line(at) == line(start) {
                further += 1;
                assert_eq!(got, vec![entry], "key {i}, {} slots on", at - start);
                if first != at {
                    same_tag += 1;
                }
            } else {
                beyond += 1;
                assert!(got.len() <= 1, "key {i}: at most one entry");
            }
        }
        // The table is as the pipeline's is at full capacity: half loaded
        // (two keys a flow), many keys off their home slot.
        assert!(
            further > 400 && same_tag < 10,
            "{home} home, {further} further ({same_tag} behind another key of their tag), {beyond} beyond"
        );
    }

    #[test]
    fn an_entry_is_one_cache_line() {
        assert_eq!(std::mem::size_of::<Flow>(), 64);
        assert_eq!(std::mem::align_of::<Flow>(), 64);
        // IPv6: two lines (three 16-byte addresses do not fit in one).
        assert_eq!(std::mem::size_of::<Flow<Ipv6Addr>>(), 128);
    }

    #[test]
    fn both_keys_of_an_ipv6_nat_flow_find_it() {
        let mut t = FlowTable::<Ipv6Addr>::with_capacity(16);
        let e = t.insert(&new6(1, true, 0)).unwrap();
        let k = key6(1);
        assert_eq!(t.lookup(&k, t.key_hash(&k)), Some(e));
        let rk = t.get(e).reply_key();
        assert_eq!(rk.real, new6(1, true, 0).real);
        assert_eq!(t.lookup_reply(&rk, t.reply_key_hash(&rk)), Some(e));
        // Another client in the same /64, and the same interface id in
        // another /64: different flows.
        assert_eq!(t.lookup(&key6(2), t.key_hash(&key6(2))), None);
        assert_eq!(t.lookup(&key6(257), t.key_hash(&key6(257))), None);
        t.remove(e);
        assert_eq!(t.lookup(&k, t.key_hash(&k)), None);
        assert_eq!(t.lookup_reply(&rk, t.reply_key_hash(&rk)), None);
        assert_eq!(t.audit(), Ok(()));
    }

    #[test]
    fn both_keys_of_a_nat_flow_find_it() {
        let mut t = FlowTable::with_capacity(16);
        let e = t.insert(&new(1, true, 0)).unwrap();
        let k = key(1);
        assert_eq!(t.lookup(&k, t.key_hash(&k)), Some(e));
        let rk = t.get(e).reply_key();
        assert_eq!(t.lookup_reply(&rk, t.reply_key_hash(&rk)), Some(e));
        let e2 = t.insert(&new(2, false, 0)).unwrap();
        let rk2 = t.get(e2).reply_key();
        assert_eq!(
            t.lookup_reply(&rk2, t.reply_key_hash(&rk2)),
            None,
            "no reply key without NAT"
        );
        t.remove(e);
        assert_eq!(t.lookup(&k, t.key_hash(&k)), None);
        assert_eq!(t.lookup_reply(&rk, t.reply_key_hash(&rk)), None);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn more_deferred_reply_keys_than_can_wait_are_all_found() {
        let mut t = FlowTable::with_capacity(256);
        let made: Vec<u32> = (0..(PENDING as u32 * 2 + 5))
            .map(|i| t.insert_deferred(&new(i, true, 0)).unwrap())
            .collect();
        assert!(t.pending_len <= PENDING && t.pending_len > 0);
        for settled in [false, true] {
            if settled {
                t.settle();
                assert_eq!(t.pending_len, 0);
            }
            for &e in &made {
                let rk = t.get(e).reply_key();
                assert_eq!(t.lookup_reply(&rk, t.reply_key_hash(&rk)), Some(e));
            }
        }
    }

    #[test]
    fn a_full_table_refuses_and_recovers() {
        let mut t = FlowTable::with_capacity(4);
        for i in 0..4 {
            t.insert(&new(i, true, 0)).unwrap();
        }
        assert!(t.is_full());
        assert_eq!(t.insert(&new(9, true, 0)), Err(InsertError::Full));
        let k = key(2);
        let e = t.lookup(&k, t.key_hash(&k)).unwrap();
        t.remove(e);
        assert!(t.insert(&new(9, true, 0)).is_ok());
    }

    #[test]
    fn the_sweep_reclaims_expired_flows_a_budget_at_a_time() {
        let timeouts = Timeouts {
            syn: 100,
            established: 1000,
            fin: 50,
            closed: 10,
            datagram: 500,
        };
        let mut t = FlowTable::with_capacity(64);
        for i in 0..64 {
            let e = t.insert(&new(i, true, 0)).unwrap();
            if i % 2 == 0 {
                t.get_mut(e).set_state(FlowState::Established);
            }
        }
        let mut gone = 0;
        let removed = t.sweep(
            500,
            16,
            16,
            |f| f.expired(500, &timeouts),
            |_, _| gone += 1,
            |_| {},
        );
        assert_eq!(
            removed, 8,
            "16 looked at, half of them SYN-only and expired"
        );
        assert_eq!(gone, 8);
        t.sweep(
            500,
            64,
            64,
            |f| f.expired(500, &timeouts),
            |_, _| {},
            |_| {},
        );
        assert_eq!(t.len(), 32, "established flows stay");
        for i in (0..64).step_by(2) {
            let k = key(i);
            assert!(t.lookup(&k, t.key_hash(&k)).is_some());
        }
    }

    #[test]
    fn templates_wait_for_their_children() {
        let timeouts = Timeouts {
            syn: 1,
            established: 1,
            fin: 1,
            closed: 1,
            datagram: 1,
        };
        let mut t = FlowTable::with_capacity(4);
        let mut spec = new(1, false, 0);
        spec.key.proto |= FLOW_TEMPLATE;
        spec.key.client_port = 0;
        spec.state = FlowState::Template;
        let e = t.insert(&spec).unwrap();
        t.get_mut(e).template_timeout = 100;
        t.get_mut(e).children = 1;
        assert!(!t.get(e).expired(1000, &timeouts));
        t.get_mut(e).children = 0;
        assert!(!t.get(e).expired(100, &timeouts));
        assert!(t.get(e).expired(101, &timeouts));
    }

    /// Hash flooding at a reduced scale: tuples an attacker picks offline
    /// so that the fixed hash puts them in one 64-slot window of the index
    /// (as 8,000 did in 64 of 4M slots) spread out under the table's seeded
    /// hash: no lookup walks more than a short chain.
    #[test]
    fn tuples_that_collide_under_the_fixed_hash_do_not_collide_in_the_index() {
        let mut t = FlowTable::with_capacity(1 << 14);
        let mask = (1u64 << 16) - 1; // the index has 4 x capacity slots
        let vip = Ipv4Addr::new(198, 18, 1, 100);
        let mut crafted = Vec::new();
        'search: for client in 0..4096u32 {
            for port in 1024..1536u16 {
                let key = FlowKey {
                    proto: 6,
                    client: Ipv4Addr::from(0xc613_0000 + client),
                    client_port: port,
                    vip,
                    vip_port: 80,
                };
                if key.hash() & mask < 64 {
                    crafted.push(key);
                    if crafted.len() == 400 {
                        break 'search;
                    }
                }
            }
        }
        assert_eq!(crafted.len(), 400, "the search finds its colliders");
        for (i, key) in crafted.iter().enumerate() {
            let spec = NewFlow {
                key: *key,
                ..new(i as u32, true, 0)
            };
            t.insert(&spec).unwrap();
        }
        let longest = t.longest_probe();
        assert!(
            longest < 16,
            "400 crafted tuples made a {longest}-slot probe chain (fixed hash: 400)"
        );
        for key in &crafted {
            assert!(t.lookup(key, t.key_hash(key)).is_some());
        }
    }

    /// IPv6 clients in different /64s whose interface id is the public
    /// constant of the unkeyed hash's low half do not collide in the index
    /// (found in audit: with that half unkeyed, `folded_mul(_, 0)` made
    /// every such tuple hash alike whatever the secret seed: 2,000 of them
    /// made one 2,000-slot chain).
    #[test]
    fn ipv6_clients_with_a_chosen_interface_id_do_not_collide_in_the_index() {
        const V6_X_LO: u128 = 0x1319_8a2e_0370_7344;
        const V6_Y_LO: u128 = 0xb7e1_5162_8aed_2a6b;
        let vip: Ipv6Addr = "2001:2:0:1::100".parse().unwrap();
        for lo in [V6_X_LO, V6_Y_LO] {
            let mut t = FlowTable::<Ipv6Addr>::with_capacity(1 << 14);
            let mut hashes = std::collections::HashSet::new();
            for i in 0..2_000u32 {
                // One /64 per flow: no per-source limit would stop it.
                let client =
                    Ipv6Addr::from(((0x2001_0db8_0000_0000_u128 + u128::from(i)) << 64) | lo);
                let spec = NewFlow {
                    key: FlowKey {
                        proto: 17,
                        client,
                        client_port: 5353,
                        vip,
                        vip_port: 53,
                    },
                    ..new6(i, true, 0)
                };
                hashes.insert(t.key_hash(&spec.key));
                t.insert(&spec).unwrap();
            }
            assert_eq!(hashes.len(), 2_000, "{lo:x}");
            let longest = t.longest_probe();
            assert!(longest < 16, "{lo:x}: a {longest}-slot probe chain");
        }
    }

    #[test]
    fn a_victim_comes_from_the_least_trusted_queue_oldest_first() {
        let mut t = FlowTable::with_capacity(8);
        let mut spec = new(1, true, 0);
        let confirmed = t.insert(&spec).unwrap();
        t.set_trust(confirmed, Trust::Confirmed, 0);
        assert_eq!(t.victim(5), None, "confirmed entries are never victims");
        spec = new(2, true, 1);
        let one_way = t.insert(&spec).unwrap();
        t.set_trust(one_way, Trust::OneWay, 1);
        assert_eq!(t.victim(5), Some(one_way));
        let u1 = t.insert(&new(3, true, 2)).unwrap();
        let u2 = t.insert(&new(4, true, 3)).unwrap();
        assert_eq!(t.victim(5), Some(u1), "unconfirmed first, oldest first");
        // Used since it was queued: a second chance.
        t.get_mut(u1).last_seen = 4;
        assert_eq!(t.victim(5), Some(u2));
        assert_eq!(t.victim(6), Some(u2), "u1 went to the back");
        t.remove(u2);
        assert_eq!(t.victim(7), Some(u1));
        assert_eq!(t.count(Trust::Unconfirmed), 1);
        assert_eq!(t.count(Trust::OneWay), 1);
        assert_eq!(t.count(Trust::Confirmed), 1);
        // A brand-new unconfirmed entry is not the victim when the one-way
        // front has waited more than 4 times as long.
        t.remove(u1);
        let u3 = t.insert(&new(5, true, 30)).unwrap();
        assert_eq!(t.victim(32), Some(one_way));
        assert_eq!(t.victim(40), Some(u3));
    }

    /// A stranger's SYN that opened the tuple first does not keep the
    /// client's own handshake from confirming the flow.
    #[test]
    fn the_clients_syn_reopens_a_half_open_flow() {
        let mut t = FlowTable::with_capacity(4);
        let e = t.insert(&new(1, true, 0)).unwrap();
        let f = t.get_mut(e);
        let seg = |flags, seq, ack, len| Segment {
            flags,
            seq,
            ack,
            len,
        };
        f.on_segment(seg(TcpFlags::SYN, 0x7000_0000, 0, 1), true);
        f.on_segment(seg(TcpFlags::SYN, 5, 0, 1), true);
        f.on_segment(seg(TcpFlags::SYN | TcpFlags::ACK, 900, 6, 1), false);
        f.on_segment(seg(TcpFlags::ACK, 6, 901, 0), true);
        assert_eq!(f.state(), FlowState::Established);
        assert_eq!(f.trust(), Trust::Confirmed);
        // Once established, a SYN far away changes nothing.
        f.on_segment(seg(TcpFlags::SYN, 0x7000_0000, 0, 1), true);
        f.on_segment(seg(TcpFlags::RST, 0x7000_0001, 0, 0), true);
        assert_eq!(f.state(), FlowState::Established);
    }

    /// Where both sides are seen (NAT), a segment moves the tracking only
    /// if it also acknowledges what the other side sent: a stranger's
    /// segment that lands in the sequence window but acknowledges nothing
    /// sent (or carries no ACK) does not move it, so its RST at that
    /// segment's end is not believed; a client whose acknowledgments lag
    /// 8 MiB behind a download is still followed, its FIN believed.
    #[test]
    fn a_segment_must_acknowledge_what_the_other_side_sent() {
        let seg = |flags, seq, ack, len| Segment {
            flags,
            seq,
            ack,
            len,
        };
        let established = || {
            let mut t = FlowTable::with_capacity(4);
            let e = t.insert(&new(1, true, 0)).unwrap();
            let f = t.get_mut(e);
            f.on_segment(seg(TcpFlags::SYN, 1_000, 0, 1), true);
            f.on_segment(seg(TcpFlags::SYN | TcpFlags::ACK, 50_000, 1_001, 1), false);
            f.on_segment(seg(TcpFlags::ACK, 1_001, 50_001, 0), true);
            assert_eq!(f.trust(), Trust::Confirmed);
            t
        };
        let ahead = 1_001 + (1 << 19);
        for (flags, ack) in [
            (TcpFlags::ACK, 0x9000_0000),
            (TcpFlags::ACK, 50_001 + SEQ_WINDOW + 1),
            (TcpFlags::ACK, 50_001u32.wrapping_sub(ACK_WINDOW + 1)),
            (TcpFlags::PSH, 0),
        ] {
            let mut t = established();
            let f = t.get_mut(0);
            f.on_segment(seg(flags, ahead, ack, 1_000), true);
            f.on_segment(seg(TcpFlags::RST, ahead + 1_000, 0, 0), true);
            assert_eq!(f.state(), FlowState::Established, "{flags:?} ack {ack}");
        }
        // An acknowledgment within the window moves it, as before.
        let mut t = established();
        let f = t.get_mut(0);
        f.on_segment(seg(TcpFlags::ACK, ahead, 50_001, 1_000), true);
        f.on_segment(seg(TcpFlags::RST, ahead + 1_000, 0, 0), true);
        assert_eq!(f.state(), FlowState::Closed);
        // A download: the real has sent 8 MiB more than the client acknowledged.
        let mut t = established();
        let f = t.get_mut(0);
        let mut real_seq = 50_001u32;
        for _ in 0..8 * 1024 {
            f.on_segment(seg(TcpFlags::ACK, real_seq, 1_001, 1_024), false);
            real_seq += 1_024;
        }
        f.on_segment(seg(TcpFlags::FIN | TcpFlags::ACK, 1_001, 50_001, 1), true);
        assert_eq!(f.state(), FlowState::FinWait);
        // The real's segments are held to the client's side the same way.
        let mut t = established();
        let f = t.get_mut(0);
        let far = 1_001 + SEQ_WINDOW + 1;
        f.on_segment(seg(TcpFlags::RST | TcpFlags::ACK, 50_001, far, 0), false);
        assert_eq!(f.state(), FlowState::Established, "acknowledges far ahead");
        f.on_segment(seg(TcpFlags::RST | TcpFlags::ACK, 50_001, 1_001, 0), false);
        assert_eq!(f.state(), FlowState::Closed);
    }

    /// Where only the client is seen (TUN, DR), a segment moves the
    /// tracking only if it is the next one in order or acknowledges near
    /// what the client last acknowledged: a stranger's segment that lands
    /// in the sequence window with any other acknowledgment moves nothing,
    /// so its RST at that segment's end is not believed (found in review:
    /// it was, about once in 4,096 tries, and two such hits put the real
    /// client outside the window). The real client is followed through a
    /// download whose acknowledgments jump, a gap and reordering, and its
    /// FIN is believed.
    #[test]
    fn a_one_sided_flow_holds_the_client_to_its_own_acknowledgments() {
        let seg = |flags, seq, ack, len| Segment {
            flags,
            seq,
            ack,
            len,
        };
        // The real's ISN, which only the client (and the real) knows.
        const REAL_ISN: u32 = 0x5000_0000;
        let established = |method| {
            let mut t = FlowTable::with_capacity(4);
            let e = t
                .insert(&NewFlow {
                    method,
                    ..new(1, false, 0)
                })
                .unwrap();
            let f = t.get_mut(e);
            f.on_segment(seg(TcpFlags::SYN, 1_000, 0, 1), true);
            f.on_segment(seg(TcpFlags::ACK, 1_001, REAL_ISN + 1, 0), true);
            assert_eq!(f.state(), FlowState::Established);
            assert_eq!(f.trust(), Trust::OneWay);
            t
        };
        let ahead = 1_001 + (1 << 19);
        for method in [ForwardingMethod::Tunnel, ForwardingMethod::DirectRoute] {
            for (flags, ack) in [
                (TcpFlags::ACK, 0x9000_0000),
                (TcpFlags::ACK, REAL_ISN + 1 + ACK_WINDOW + 1),
                (TcpFlags::ACK, (REAL_ISN + 1).wrapping_sub(ACK_WINDOW + 1)),
                (TcpFlags::PSH, REAL_ISN + 1),
            ] {
                let mut t = established(method);
                let f = t.get_mut(0);
                f.on_segment(seg(flags, ahead, ack, 1_000), true);
                f.on_segment(seg(TcpFlags::RST, ahead + 1_000, 0, 0), true);
                assert_eq!(
                    f.state(),
                    FlowState::Established,
                    "{method:?} {flags:?} ack {ack}"
                );
                // Nor a FIN there, nor a second hit beyond.
                f.on_segment(seg(flags, ahead + 1_000, ack, 1_000), true);
                f.on_segment(
                    seg(TcpFlags::FIN | TcpFlags::ACK, ahead + 2_000, ack, 1),
                    true,
                );
                assert_eq!(
                    f.state(),
                    FlowState::Established,
                    "{method:?} {flags:?} ack {ack}"
                );
                // The real client is followed as before: its FIN is believed.
                f.on_segment(
                    seg(TcpFlags::FIN | TcpFlags::ACK, 1_001, REAL_ISN + 1, 1),
                    true,
                );
                assert_eq!(
                    f.state(),
                    FlowState::FinWait,
                    "{method:?} {flags:?} ack {ack}"
                );
            }
            // A segment after a gap that acknowledges near the client's
            // last acknowledgment moves it, as before (the window's reach).
            let mut t = established(method);
            let f = t.get_mut(0);
            f.on_segment(seg(TcpFlags::ACK, ahead, REAL_ISN + 1 + 4_000, 1_000), true);
            f.on_segment(seg(TcpFlags::RST, ahead + 1_000, 0, 0), true);
            assert_eq!(f.state(), FlowState::Closed, "{method:?}");

            // A download: the client's acknowledgments jump 20 MiB at a
            // time (all its segments between were lost), in order: still
            // followed, and its FIN believed.
            let mut t = established(method);
            let f = t.get_mut(0);
            let mut ack = REAL_ISN + 1;
            for _ in 0..300 {
                ack = ack.wrapping_add(20 << 20);
                f.on_segment(seg(TcpFlags::ACK, 1_001, ack, 0), true);
            }
            // An upload after it: a gap (a lost segment), then one
            // reordered, all acknowledging the download's end.
            f.on_segment(seg(TcpFlags::ACK, 1_001 + 1_448, ack, 1_448), true);
            f.on_segment(seg(TcpFlags::ACK, 1_001, ack, 1_448), true);
            f.on_segment(seg(TcpFlags::ACK, 1_001 + 2 * 1_448, ack, 1_448), true);
            assert_eq!(f.client_next, 1_001 + 3 * 1_448, "{method:?}");
            f.on_segment(
                seg(TcpFlags::FIN | TcpFlags::ACK, 1_001 + 3 * 1_448, ack, 1),
                true,
            );
            assert_eq!(f.state(), FlowState::FinWait, "{method:?}");

            // Picked up mid-stream: the first segment's acknowledgment is
            // the mark.
            let mut t = FlowTable::with_capacity(4);
            let e = t
                .insert(&NewFlow {
                    method,
                    state: FlowState::Established,
                    ..new(1, false, 0)
                })
                .unwrap();
            let f = t.get_mut(e);
            f.on_segment(seg(TcpFlags::ACK, 7_000, REAL_ISN, 100), true);
            let gap = 7_100 + (1 << 19);
            f.on_segment(seg(TcpFlags::ACK, gap, 0x9000_0000, 100), true);
            f.on_segment(seg(TcpFlags::RST, gap + 100, 0, 0), true);
            assert_eq!(f.state(), FlowState::Established, "{method:?}");
            f.on_segment(seg(TcpFlags::ACK, gap, REAL_ISN + 50, 100), true);
            f.on_segment(seg(TcpFlags::RST, gap + 100, 0, 0), true);
            assert_eq!(f.state(), FlowState::Closed, "{method:?}");
        }
    }

    /// At a reduced scale, the odds a blind stranger has on a TUN or DR
    /// flow whose tuple it knows: of 200,000 segments that all land in the
    /// sequence window ahead of the client (the stranger's luck, 1 in
    /// 4,096), those with random acknowledgment numbers move the tracking
    /// about once in 128 (within `ACK_WINDOW` either side), not every time.
    #[test]
    fn blind_segments_rarely_move_a_one_sided_flow() {
        // SplitMix64, seeded: the same draws every run.
        let mut state = 0x5eed_0042_u64;
        let mut next_u32 = || {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            ((z ^ (z >> 31)) >> 32) as u32
        };
        let mut moved = 0u32;
        const TRIES: u32 = 200_000;
        for i in 0..TRIES {
            let mut t = FlowTable::with_capacity(4);
            let e = t
                .insert(&NewFlow {
                    method: if i % 2 == 0 {
                        ForwardingMethod::Tunnel
                    } else {
                        ForwardingMethod::DirectRoute
                    },
                    ..new(1, false, 0)
                })
                .unwrap();
            let f = t.get_mut(e);
            let isn = next_u32();
            f.on_segment(
                Segment {
                    flags: TcpFlags::SYN,
                    seq: isn,
                    ack: 0,
                    len: 1,
                },
                true,
            );
            f.on_segment(
                Segment {
                    flags: TcpFlags::ACK,
                    seq: isn.wrapping_add(1),
                    ack: next_u32(),
                    len: 0,
                },
                true,
            );
            let before = f.client_next;
            f.on_segment(
                Segment {
                    flags: TcpFlags::ACK,
                    seq: before.wrapping_add(1 + next_u32() % SEQ_WINDOW),
                    ack: next_u32(),
                    len: 1,
                },
                true,
            );
            moved += u32::from(f.client_next != before);
        }
        let expected = TRIES / 128;
        assert!(
            moved > expected / 2 && moved < expected * 2,
            "{moved} of {TRIES} moved, about {expected} expected"
        );
    }

    /// A segment for the review tests below.
    fn sg(flags: TcpFlags, seq: u32, ack: u32, len: u32) -> Segment {
        Segment {
            flags,
            seq,
            ack,
            len,
        }
    }

    /// A TUN or DR flow (`A`: its address family) that saw the client's SYN
    /// at `isn`, nothing more.
    fn half_open_one_sided<A: FlowAddr>(method: ForwardingMethod, isn: u32, len: u32) -> Flow<A> {
        let mut f = Flow::<A>::default_entry();
        f.state = FlowState::SynSent;
        f.method = method;
        f.on_segment(sg(TcpFlags::SYN, isn, 0, len), true);
        assert_eq!(f.state(), FlowState::SynSent);
        f
    }

    /// Review (h2): while a TUN or DR flow is half-open no acknowledgment
    /// of the client's was believed yet, so the mark `client_acks_fit`
    /// holds a segment to is 0, which every stranger knows: a blind
    /// segment in the sequence window that acknowledged near 0 was
    /// believed (once in 4,096 tries, as before the mark), and a RST at
    /// its end closed the flow; or the real client's handshake ACK, no
    /// longer in order and acknowledging far from the stranger's mark, was
    /// not believed, nor anything of the client after it.
    #[test]
    fn a_half_open_one_sided_flow_has_no_mark_a_stranger_knows() {
        fn run<A: FlowAddr>(method: ForwardingMethod) {
            const REAL_ISN: u32 = 0x5000_0000;
            let ahead = 1_001 + (1 << 19);
            for ack in [0, 0x10, ACK_WINDOW, 0u32.wrapping_sub(ACK_WINDOW)] {
                let mut f = half_open_one_sided::<A>(method, 1_000, 1);
                f.on_segment(sg(TcpFlags::ACK, ahead, ack, 1_000), true);
                f.on_segment(sg(TcpFlags::RST, ahead + 1_000, 0, 0), true);
                assert_ne!(f.state(), FlowState::Closed, "{method:?} ack {ack}");
                assert_eq!(f.client_next, 1_001, "{method:?} ack {ack}");
                // The real client's handshake ACK and FIN are believed.
                f.on_segment(sg(TcpFlags::ACK, 1_001, REAL_ISN + 1, 0), true);
                assert_eq!(f.state(), FlowState::Established, "{method:?} ack {ack}");
                f.on_segment(
                    sg(TcpFlags::FIN | TcpFlags::ACK, 1_001, REAL_ISN + 1, 1),
                    true,
                );
                assert_eq!(f.state(), FlowState::FinWait, "{method:?} ack {ack}");
            }
        }
        for method in [ForwardingMethod::Tunnel, ForwardingMethod::DirectRoute] {
            run::<Ipv4Addr>(method);
            run::<Ipv6Addr>(method);
        }
    }

    /// Review (h2): only SYN and RST may come without ACK, but a SYN with
    /// FIN and no ACK passed as a SYN: a blind one within `RST_WINDOW`
    /// (once in 32,768 tries) was believed as a FIN, where a FIN with ACK
    /// must also acknowledge near the mark (TUN, DR) or the real's data
    /// (NAT); on TUN and DR a SYN then replaces the half-closed flow.
    /// Linux conntrack holds SYN|FIN invalid.
    #[test]
    fn a_syn_with_fin_and_no_ack_is_not_believed() {
        const REAL_ISN: u32 = 0x5000_0000;
        for method in [
            ForwardingMethod::Nat,
            ForwardingMethod::Tunnel,
            ForwardingMethod::DirectRoute,
        ] {
            let mut f = Flow::<Ipv4Addr>::default_entry();
            f.state = FlowState::SynSent;
            f.method = method;
            f.on_segment(sg(TcpFlags::SYN, 1_000, 0, 1), true);
            if method == ForwardingMethod::Nat {
                f.on_segment(sg(TcpFlags::SYN | TcpFlags::ACK, REAL_ISN, 1_001, 1), false);
            }
            f.on_segment(sg(TcpFlags::ACK, 1_001, REAL_ISN + 1, 0), true);
            assert_eq!(f.state(), FlowState::Established, "{method:?}");
            for flags in [TcpFlags::SYN | TcpFlags::FIN, TcpFlags::FIN] {
                let mut g = f;
                g.on_segment(sg(flags, 1_001 + 100, 0, 2), true);
                assert_eq!(g.state(), FlowState::Established, "{method:?} {flags:?}");
            }
        }
    }

    /// Review (h2): a TCP Fast Open client (data on its SYN) whose SYN-ACK
    /// is late sends its SYN again without the data (as Linux does), which
    /// reopens the half-open flow at its ISN plus one; the real had taken
    /// the data, so every later segment of the client lies beyond that,
    /// never in order, and acknowledges far from the mark (0, none
    /// believed yet). Before `client_acks_fit` the window took the first
    /// of them; now nothing of the client is believed: the flow stays
    /// half-open (its FIN is not believed, it times out after
    /// `tcp_syn_timeout` of quiet while the connection lives, and is the
    /// first evicted).
    #[test]
    fn a_fast_open_client_that_sent_its_syn_again_is_followed() {
        fn run<A: FlowAddr>(method: ForwardingMethod) {
            const REAL_ISN: u32 = 0x5000_0000;
            // SYN with 100 bytes, then the bare SYN again.
            let mut f = half_open_one_sided::<A>(method, 1_000, 101);
            f.on_segment(sg(TcpFlags::SYN, 1_000, 0, 1), true);
            // The real acknowledged the SYN's data: the client goes on
            // from there.
            f.on_segment(sg(TcpFlags::ACK, 1_101, REAL_ISN + 1, 0), true);
            f.on_segment(sg(TcpFlags::ACK, 1_101, REAL_ISN + 1_449, 0), true);
            assert_eq!(f.state(), FlowState::Established, "{method:?}");
            f.on_segment(
                sg(TcpFlags::FIN | TcpFlags::ACK, 1_101, REAL_ISN + 2_897, 1),
                true,
            );
            assert_eq!(f.state(), FlowState::FinWait, "{method:?}");
        }
        for method in [ForwardingMethod::Tunnel, ForwardingMethod::DirectRoute] {
            run::<Ipv4Addr>(method);
            run::<Ipv6Addr>(method);
        }
    }

    /// Review (h2): what real clients send through TUN and DR is followed
    /// with the mark, and their FIN or RST believed after it: keepalive
    /// probes (one behind the tracked next, Linux's without data and
    /// Windows' with a byte), zero-window probes (one behind the oldest
    /// unacknowledged byte), Fast Open with data on the SYN (taken or
    /// not), a half-close after which the download goes on, a RST without
    /// ACK at what the real acknowledged, a RST with ACK, and a late
    /// retransmission.
    #[test]
    fn a_one_sided_flow_follows_what_real_clients_send() {
        const REAL_ISN: u32 = 0x5000_0000;
        let established = |method, len| {
            let mut f = half_open_one_sided::<Ipv4Addr>(method, 1_000, len);
            f.on_segment(sg(TcpFlags::ACK, 1_000 + len, REAL_ISN + 1, 0), true);
            assert_eq!(f.state(), FlowState::Established);
            f
        };
        let fin = TcpFlags::FIN | TcpFlags::ACK;
        let rst_ack = TcpFlags::RST | TcpFlags::ACK;
        for method in [ForwardingMethod::Tunnel, ForwardingMethod::DirectRoute] {
            // Keepalives after a download of 12 MiB, one ACK per 8 MiB.
            for len in [0, 1] {
                let mut f = established(method, 1);
                let ack = REAL_ISN + 1 + (12 << 20);
                f.on_segment(sg(TcpFlags::ACK, 1_001, ack - (4 << 20), 0), true);
                f.on_segment(sg(TcpFlags::ACK, 1_001, ack, 0), true);
                for _ in 0..10 {
                    f.on_segment(sg(TcpFlags::ACK, 1_000, ack, len), true);
                }
                assert_eq!(f.client_next, 1_001);
                f.on_segment(sg(rst_ack, 1_001, ack, 0), true);
                assert_eq!(f.state(), FlowState::Closed, "{method:?} keepalive {len}");
            }
            // An upload of 1 MiB against a zero window: probes one behind
            // the oldest unacknowledged byte, then the FIN.
            let mut f = established(method, 1);
            let mut seq = 1_001u32;
            for _ in 0..700 {
                f.on_segment(sg(TcpFlags::ACK, seq, REAL_ISN + 1, 1_448), true);
                seq += 1_448;
            }
            for _ in 0..5 {
                f.on_segment(sg(TcpFlags::ACK, seq - 60_001, REAL_ISN + 1, 0), true);
            }
            f.on_segment(sg(fin, seq, REAL_ISN + 1, 1), true);
            assert_eq!(f.state(), FlowState::FinWait, "{method:?} zero window");
            // Fast Open: the real took the data, or not (the data comes
            // again, behind the tracked next).
            let mut f = half_open_one_sided::<Ipv4Addr>(method, 1_000, 101);
            f.on_segment(sg(TcpFlags::ACK, 1_101, REAL_ISN + 1, 0), true);
            f.on_segment(sg(fin, 1_101, REAL_ISN + 1, 1), true);
            assert_eq!(f.state(), FlowState::FinWait, "{method:?} fast open");
            let mut f = half_open_one_sided::<Ipv4Addr>(method, 1_000, 101);
            f.on_segment(
                sg(TcpFlags::ACK | TcpFlags::PSH, 1_001, REAL_ISN + 1, 100),
                true,
            );
            f.on_segment(sg(TcpFlags::ACK, 1_101, REAL_ISN + 1_449, 0), true);
            assert_eq!(
                f.state(),
                FlowState::Established,
                "{method:?} fast open refused"
            );
            f.on_segment(sg(fin, 1_101, REAL_ISN + 1_449, 1), true);
            assert_eq!(
                f.state(),
                FlowState::FinWait,
                "{method:?} fast open refused"
            );
            // A half-close: the download goes on after the client's FIN,
            // 20 MiB between ACKs; the real's FIN acknowledged.
            let mut f = established(method, 1);
            f.on_segment(sg(fin, 1_001, REAL_ISN + 1, 1), true);
            let mut ack = REAL_ISN + 1;
            for _ in 0..10 {
                ack = ack.wrapping_add(20 << 20);
                f.on_segment(sg(TcpFlags::ACK, 1_002, ack, 0), true);
            }
            assert_eq!(f.real_next, ack, "{method:?} half-close");
            f.on_segment(sg(TcpFlags::ACK, 1_002, ack + 1, 0), true);
            f.on_segment(sg(TcpFlags::RST, 1_002, 0, 0), true);
            assert_eq!(f.state(), FlowState::Closed, "{method:?} half-close");
            // A RST without ACK, at what the real acknowledged, after a
            // tail of data the appliance did not see.
            let mut f = established(method, 1);
            f.on_segment(sg(TcpFlags::RST, 1_001 + 30_000, 0, 0), true);
            assert_eq!(f.state(), FlowState::Closed, "{method:?} RST");
            // A late retransmission, acknowledging 8 MiB behind, does not
            // stop the next segment after a lost one.
            let mut f = established(method, 1);
            let ack = REAL_ISN + 1 + (8 << 20);
            f.on_segment(sg(TcpFlags::ACK, 1_001, ack, 1_448), true);
            f.on_segment(sg(TcpFlags::ACK, 1_001, REAL_ISN + 1, 1_448), true);
            f.on_segment(
                sg(TcpFlags::ACK, 1_001 + 2 * 1_448, ack + (8 << 20), 1_448),
                true,
            );
            f.on_segment(sg(fin, 1_001 + 3 * 1_448, ack + (8 << 20), 1), true);
            assert_eq!(f.state(), FlowState::FinWait, "{method:?} late");
        }
    }

    /// Found in review: where the tracking of one side fell behind what
    /// that side really sent, the other side's acknowledgments are ahead
    /// of it; held to "never ahead", they were not believed, so neither
    /// side's tracking moved again and no FIN closed the flow. Each way in
    /// now closes by its FINs: a NAT pick-up mid-stream whose real is
    /// first seen retransmitting, a flow synced from a peer that failed
    /// (the same), and a client that sends data while its
    /// acknowledgments lag more than `ACK_WINDOW` behind a download.
    #[test]
    fn tracking_that_fell_behind_catches_up_and_fins_close() {
        let seg = |flags, seq, ack, len| Segment {
            flags,
            seq,
            ack,
            len,
        };
        let fins_close = |f: &mut Flow, client: u32, real: u32, what: &str| {
            f.on_segment(seg(TcpFlags::FIN | TcpFlags::ACK, client, real, 1), true);
            f.on_segment(
                seg(TcpFlags::FIN | TcpFlags::ACK, real, client + 1, 1),
                false,
            );
            f.on_segment(seg(TcpFlags::ACK, client + 1, real + 1, 0), true);
            assert_eq!(f.state(), FlowState::Closed, "{what}");
        };
        let (c, r) = (7_000u32, 900_000u32);
        for synced in [false, true] {
            let mut t = FlowTable::with_capacity(4);
            let e = t.insert(&new(1, true, 0)).unwrap();
            let f = t.get_mut(e);
            let what = if synced { "synced" } else { "pick-up" };
            if synced {
                f.seq_known = SYNCED | UNSURE_CLIENT | VOUCHED;
                f.set_state(FlowState::Established);
            } else {
                // The client's ACK, mid-stream: it has the real's data up to r.
                f.on_segment(seg(TcpFlags::ACK, c, r, 0), true);
            }
            // The real's first segment here: a retransmission from before.
            f.on_segment(
                seg(TcpFlags::ACK | TcpFlags::PSH, r - 5_000, c, 1_000),
                false,
            );
            // The client's data, acknowledging beyond it; the real's answer.
            f.on_segment(seg(TcpFlags::ACK | TcpFlags::PSH, c, r, 100), true);
            f.on_segment(seg(TcpFlags::ACK | TcpFlags::PSH, r, c + 100, 1_000), false);
            fins_close(f, c + 100, r + 1_000, what);
        }
        // The lagging client of a download: the real is 20 MiB ahead of
        // its acknowledgments when it sends a request of its own, which is
        // not followed; the real acknowledges it all the same; once the
        // client's acknowledgments catch up, the FINs close the flow.
        let mut t = FlowTable::with_capacity(4);
        let e = t.insert(&new(1, true, 0)).unwrap();
        let f = t.get_mut(e);
        f.on_segment(seg(TcpFlags::SYN, c - 1, 0, 1), true);
        f.on_segment(seg(TcpFlags::SYN | TcpFlags::ACK, r - 1, c, 1), false);
        f.on_segment(seg(TcpFlags::ACK, c, r, 0), true);
        let sent = 20 << 20;
        let mut at = r;
        while at.wrapping_sub(r) < sent {
            f.on_segment(seg(TcpFlags::ACK, at, c, 65_536), false);
            at += 65_536;
        }
        f.on_segment(seg(TcpFlags::ACK | TcpFlags::PSH, c, r, 500), true);
        f.on_segment(seg(TcpFlags::ACK, at, c + 500, 0), false);
        fins_close(f, c + 500, at, "lagging client");
    }

    /// A SYN that also carries RST or FIN is no opening SYN: on a
    /// half-open flow it is held to the window as a RST or FIN is (found
    /// in audit: a blind SYN|RST, believed at any sequence number, closed
    /// the flow).
    #[test]
    fn a_blind_syn_with_rst_or_fin_does_not_close_a_half_open_flow() {
        for extra in [TcpFlags::RST, TcpFlags::FIN] {
            let mut t = FlowTable::with_capacity(16);
            let e = t.insert(&new(1, true, 0)).unwrap();
            let syn = Segment {
                flags: TcpFlags::SYN,
                seq: 1_000,
                ack: 0,
                len: 1,
            };
            t.get_mut(e).on_segment(syn, true);
            let blind = Segment {
                flags: TcpFlags::SYN | extra,
                seq: 0x8000_0000,
                ack: 0,
                len: 1,
            };
            t.get_mut(e).on_segment(blind, true);
            assert_eq!(t.get(e).state(), FlowState::SynSent, "{extra:?}");
            // In the window it is a RST or FIN as any other.
            let near = Segment {
                seq: 1_001,
                ..blind
            };
            t.get_mut(e).on_segment(near, true);
            assert_ne!(t.get(e).state(), FlowState::SynSent, "{extra:?}");
        }
    }

    /// An entry that sat in its queue for more than 24.8 days, used a
    /// moment ago, still gets its second chance: the sweep keeps queue
    /// times within `QUEUE_AGE_MAX` of now, so the victim search's
    /// comparisons never wrap (found in audit: `last_seen - queued_at`
    /// read as negative, and the busy flow went first).
    #[test]
    fn a_long_queued_entry_used_lately_keeps_its_second_chance() {
        let mut t = FlowTable::with_capacity(8);
        let a = t.insert(&new(1, false, 0)).unwrap();
        t.set_trust(a, Trust::OneWay, 0);
        let b = t.insert(&new(2, false, 5)).unwrap();
        t.set_trust(b, Trust::OneWay, 5);
        let now = (1u32 << 31) + 100;
        t.get_mut(a).last_seen = now - 10;
        t.get_mut(b).last_seen = 5;
        // The sweep passes (nothing expires here).
        t.sweep(now, 64, 64, |_| false, |_, _| {}, |_| {});
        assert_eq!(t.victim(now), Some(b), "a was used, b was not");
    }

    #[test]
    fn a_busy_queue_still_gives_up_a_victim_in_bounded_steps() {
        let mut t = FlowTable::with_capacity(64);
        for i in 0..64 {
            let e = t.insert(&new(i, false, 0)).unwrap();
            t.get_mut(e).last_seen = 10;
        }
        // Every entry was used since it was queued: after SECOND_CHANCES
        // of them go to the back, the front one is taken anyway.
        let v = t.victim(20).unwrap();
        assert_eq!(v, SECOND_CHANCES as u32, "the first 8 went to the back");
    }

    #[test]
    fn a_sweep_removes_no_more_than_it_may() {
        let timeouts = Timeouts {
            syn: 1,
            established: 1,
            fin: 1,
            closed: 1,
            datagram: 1,
        };
        let mut t = FlowTable::with_capacity(256);
        for i in 0..256 {
            t.insert(&new(i, true, 0)).unwrap();
        }
        let removed = t.sweep(
            100,
            256,
            10,
            |f| f.expired(100, &timeouts),
            |_, _| {},
            |_| {},
        );
        assert_eq!(removed, 10);
        assert_eq!(t.len(), 246);
        assert_eq!(t.audit(), Ok(()));
    }

    /// The flags of byte `bits`, as on the wire.
    fn flags_of(bits: u8) -> TcpFlags {
        [
            TcpFlags::FIN,
            TcpFlags::SYN,
            TcpFlags::RST,
            TcpFlags::PSH,
            TcpFlags::ACK,
            TcpFlags::URG,
            TcpFlags::ECE,
            TcpFlags::CWR,
        ]
        .into_iter()
        .enumerate()
        .filter(|&(i, _)| bits & (1 << i) != 0)
        .fold(TcpFlags::empty(), |a, (_, f)| a | f)
    }

    /// A distance from a sequence number that lands near the edges of the
    /// windows the tracking checks, or anywhere.
    fn near_edges() -> impl Strategy<Value = u32> {
        let w =
            |x: u32| (x - 3..x + 3).prop_flat_map(|d| prop_oneof![Just(d), Just(d.wrapping_neg())]);
        prop_oneof![
            (0u32..70_000).prop_flat_map(|d| prop_oneof![Just(d), Just(d.wrapping_neg())]),
            w(super::super::RST_WINDOW),
            w(super::super::SEQ_WINDOW),
            w(super::super::ACK_WINDOW),
            w(CONFIRM_ACK_WINDOW),
            any::<u32>(),
        ]
    }

    proptest! {
        // Cheap cases, and the windows' edges are narrow targets.
        #![proptest_config(ProptestConfig::with_cases(4096))]

        /// The established path's segment tracking (`on_plain_segment`,
        /// taken for a segment without SYN, FIN or RST on an established
        /// flow) leaves every entry as the general path does.
        #[test]
        fn the_plain_segment_path_is_the_general_one(
            seq_known in any::<u8>(),
            client_next in any::<u32>(),
            real_next in any::<u32>(),
            bits in any::<u8>(),
            from_client in any::<bool>(),
            dseq in near_edges(),
            dack in near_edges(),
            len in prop_oneof![Just(0u32), 1u32..1500, any::<u32>()],
            method in prop_oneof![
                Just(ForwardingMethod::Nat),
                Just(ForwardingMethod::Tunnel),
                Just(ForwardingMethod::DirectRoute),
            ],
            in_order in any::<bool>(),
        ) {
            let mut f = Flow::<Ipv4Addr>::default_entry();
            f.state = FlowState::Established;
            f.method = method;
            f.seq_known = seq_known;
            f.client_next = client_next;
            f.real_next = real_next;
            let (next, other_next) = if from_client {
                (client_next, real_next)
            } else {
                (real_next, client_next)
            };
            let seg = Segment {
                flags: flags_of(bits & !0x07),
                // Exactly in order half the time (TUN and DR believe it
                // whatever it acknowledges).
                seq: if in_order { next } else { next.wrapping_add(dseq) },
                ack: other_next.wrapping_add(dack),
                len,
            };
            let (mut plain, mut any) = (f, f);
            plain.on_plain_segment(seg, from_client);
            any.on_any_segment(seg, from_client);
            prop_assert_eq!(plain, any);
            // And `on_segment` takes the plain path for it.
            let mut via = f;
            via.on_segment(seg, from_client);
            prop_assert_eq!(via, any);
        }
    }

    proptest! {
        /// Random inserts, removes and class changes keep the queues
        /// sound, and the victim is always the least trusted class there is.
        #[test]
        fn the_queues_stay_sound(ops in proptest::collection::vec((0u32..64, 0u8..4), 1..400)) {
            let mut t = FlowTable::with_capacity(32);
            let mut model: HashMap<FlowKey, u32> = HashMap::new();
            for (now, (i, op)) in ops.into_iter().enumerate() {
                let now = now as u32;
                let k = key(i);
                match (model.get(&k).copied(), op) {
                    (None, _) => {
                        if let Ok(e) = t.insert(&new(i, i % 2 == 0, now)) {
                            model.insert(k, e);
                        } else {
                            // The least trusted class there is, unless the
                            // front one-way entry waited ONE_WAY_BIAS times
                            // as long as the front unconfirmed one.
                            let waited = |c: Trust| {
                                let h = t.heads[c as usize];
                                (h != NIL).then(|| now.wrapping_sub(t.queued_at[h as usize]))
                            };
                            let least = match (waited(Trust::Unconfirmed), waited(Trust::OneWay)) {
                                (Some(u), Some(o)) if o / ONE_WAY_BIAS > u => Some(Trust::OneWay),
                                (Some(_), _) => Some(Trust::Unconfirmed),
                                (None, Some(_)) => Some(Trust::OneWay),
                                (None, None) => None,
                            };
                            let v = t.victim(now);
                            match v {
                                Some(v) => {
                                    prop_assert_eq!(Some(t.trust(v)), least);
                                    prop_assert!(t.trust(v) != Trust::Confirmed);
                                }
                                None => prop_assert_eq!(t.count(Trust::Confirmed), t.len()),
                            }
                        }
                    }
                    (Some(e), 0) => {
                        t.remove(e);
                        model.remove(&k);
                    }
                    (Some(e), c) => {
                        // The flow earns the class (so the audit agrees).
                        let f = t.get_mut(e);
                        match c {
                            1 => f.set_state(FlowState::SynSent),
                            2 => {
                                f.method = ForwardingMethod::DirectRoute;
                                f.on_segment(Segment { flags: TcpFlags::SYN, seq: 1, ack: 0, len: 1 }, true);
                                f.on_segment(Segment { flags: TcpFlags::ACK, seq: 2, ack: 0, len: 0 }, true);
                            }
                            _ => {
                                f.method = ForwardingMethod::Nat;
                                f.set_state(FlowState::SynSent);
                                f.on_segment(Segment { flags: TcpFlags::SYN, seq: 1, ack: 0, len: 1 }, true);
                                f.on_segment(Segment { flags: TcpFlags::SYN | TcpFlags::ACK, seq: 50, ack: 2, len: 1 }, false);
                                f.on_segment(Segment { flags: TcpFlags::ACK, seq: 2, ack: 51, len: 0 }, true);
                            }
                        }
                        let earned = t.get(e).trust();
                        t.set_trust(e, earned, now);
                    }
                }
                prop_assert_eq!(t.audit(), Ok(()));
                prop_assert_eq!(t.len(), model.len());
            }
        }

        /// Random inserts and removes agree with a HashMap model, including
        /// after backward-shift deletions in a crowded index.
        #[test]
        fn the_index_agrees_with_a_model(ops in proptest::collection::vec((0u32..300, any::<bool>(), any::<bool>()), 1..600)) {
            let mut t = FlowTable::with_capacity(128);
            let mut model: HashMap<FlowKey, (u32, bool)> = HashMap::new();
            for (i, insert, nat) in ops {
                let k = key(i);
                match (model.get(&k).copied(), insert) {
                    (None, true) => {
                        if let Ok(e) = t.insert(&new(i, nat, 0)) {
                            model.insert(k, (e, nat));
                        } else {
                            prop_assert_eq!(model.len(), 128);
                        }
                    }
                    (Some((e, _)), false) => {
                        t.remove(e);
                        model.remove(&k);
                    }
                    _ => {}
                }
                prop_assert_eq!(t.len(), model.len());
            }
            for i in 0..300 {
                let k = key(i);
                let found = t.lookup(&k, t.key_hash(&k));
                prop_assert_eq!(found, model.get(&k).map(|v| v.0));
                if let Some((e, nat)) = model.get(&k).copied() {
                    let rk = t.get(e).reply_key();
                    prop_assert_eq!(t.lookup_reply(&rk, t.reply_key_hash(&rk)).is_some(), nat);
                }
            }
        }

        /// Inserts that leave their reply key to be written later
        /// (`insert_deferred`, up to `PENDING` of them) find every flow by
        /// both keys all along, before and after they settle, through
        /// removals' backward shifts; a settled index holds each key once.
        #[test]
        fn deferred_reply_keys_are_found_and_settle_in_place(ops in proptest::collection::vec((0u32..300, 0u8..4, any::<bool>()), 1..600)) {
            let mut t = FlowTable::with_capacity(128);
            let mut model: HashMap<FlowKey, (u32, bool)> = HashMap::new();
            let check = |t: &FlowTable, model: &HashMap<FlowKey, (u32, bool)>, i: u32| -> Result<(), TestCaseError> {
                let k = key(i);
                prop_assert_eq!(t.lookup(&k, t.key_hash(&k)), model.get(&k).map(|v| v.0));
                if let Some((e, nat)) = model.get(&k).copied() {
                    let rk = t.get(e).reply_key();
                    let found = t.lookup_reply(&rk, t.reply_key_hash(&rk));
                    prop_assert_eq!(found, nat.then_some(e));
                }
                Ok(())
            };
            for (i, op, nat) in ops {
                let k = key(i);
                match (model.get(&k).copied(), op) {
                    (None, 0 | 1) => {
                        let made = if op == 0 { t.insert(&new(i, nat, 0)) } else { t.insert_deferred(&new(i, nat, 0)) };
                        match made {
                            Ok(e) => {
                                model.insert(k, (e, nat));
                            }
                            Err(_) => prop_assert_eq!(model.len(), 128),
                        }
                    }
                    (Some((e, _)), 2) => {
                        t.remove(e);
                        model.remove(&k);
                    }
                    (_, 3) => t.settle(),
                    _ => {}
                }
                check(&t, &model, i)?;
                for &(_, e) in &t.pending[..t.pending_len] {
                    let f = *t.get(e);
                    let i = (0..300).find(|&i| key(i) == f.key()).unwrap();
                    check(&t, &model, i)?;
                }
            }
            for i in 0..300 {
                check(&t, &model, i)?;
            }
            t.settle();
            prop_assert_eq!(t.pending_len, 0);
            let keys: usize = model.values().map(|&(_, nat)| 1 + usize::from(nat)).sum();
            prop_assert_eq!(t.index.iter().filter(|&&v| v != EMPTY).count(), keys);
            for i in 0..300 {
                check(&t, &model, i)?;
            }
        }

        /// The same for an IPv6 table.
        #[test]
        fn the_ipv6_index_agrees_with_a_model(ops in proptest::collection::vec((0u32..600, any::<bool>(), any::<bool>()), 1..600)) {
            let mut t = FlowTable::<Ipv6Addr>::with_capacity(128);
            let mut model: HashMap<FlowKey<Ipv6Addr>, (u32, bool)> = HashMap::new();
            for (i, insert, nat) in ops {
                let k = key6(i);
                match (model.get(&k).copied(), insert) {
                    (None, true) => {
                        if let Ok(e) = t.insert(&new6(i, nat, 0)) {
                            model.insert(k, (e, nat));
                        } else {
                            prop_assert_eq!(model.len(), 128);
                        }
                    }
                    (Some((e, _)), false) => {
                        t.remove(e);
                        model.remove(&k);
                    }
                    _ => {}
                }
            }
            prop_assert_eq!(t.audit(), Ok(()));
            for i in 0..600 {
                let k = key6(i);
                prop_assert_eq!(t.lookup(&k, t.key_hash(&k)), model.get(&k).map(|v| v.0));
                if let Some((e, nat)) = model.get(&k).copied() {
                    let rk = t.get(e).reply_key();
                    prop_assert_eq!(t.lookup_reply(&rk, t.reply_key_hash(&rk)).is_some(), nat);
                }
            }
        }
    }
}
