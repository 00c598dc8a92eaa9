//! The flow side of the SYN proxy (the design is in `crate::synproxy`):
//! when the proxy covers a service's new connections, what a packet for no
//! flow becomes, the state a proxied flow keeps in its entry, and the
//! translation every later segment of it gets.
//!
//! Sequence spaces: the client's sequence numbers pass unchanged (the SYN
//! to the real carries the client's own ISN), so `client_next` tracks them
//! as before. The real's are offset by `proxy_seq` from what the client
//! saw (the cookie); `real_next` tracks them as the real sends them,
//! before translation. So [`Flow::on_segment`] compares every segment,
//! RST and FIN included, with the tracking of its own sender, in its
//! sender's space, and the window checks work as for any flow.

use super::hash::FlowAddr;
use std::cell::Cell;

use super::{seq_near, Flow, FlowKey, FlowState, Segment};
use crate::forward::TcpAdjust;
use crate::snapshot::Snapshot;
use crate::stats::DropReason;
use crate::synproxy::{CookieOptions, ADVERTISED_WSCALE, SYNACK_WINDOW};
use crate::wire::tcp_options::{TcpOptions, Timestamps};
use crate::wire::TcpFlags;

/// The proxy answered this flow's handshake.
pub const PROXY_ON: u8 = 1;
/// The SYN went to the real; its SYN-ACK has not come back yet.
pub const PROXY_WAITING: u8 = 2;
/// Timestamps are in use on both sides: TSval and TSecr are translated.
pub const PROXY_TS: u8 = 4;
/// The client sent window scale (the proxy announced
/// [`ADVERTISED_WSCALE`] to it and passed the client's on to the real).
pub const PROXY_CLIENT_WS: u8 = 8;
/// The real answered with window scale too (scaling is on with it).
pub const PROXY_REAL_WS: u8 = 16;
/// How many of the client's segments were deferred while the flow waited
/// (a count in these two bits, at most [`DEFER_PER_FLOW`]); once the real
/// answered, nonzero until the first of them is re-run (see [`Deferrals`]).
pub const PROXY_DEFERRED: u8 = 32 | 64;
const PROXY_DEFERRED_ONE: u8 = 32;

/// The most client segments one waiting flow may have deferred: a request
/// that takes two segments (a TLS ClientHello with a post-quantum key
/// share is about 1.8 kB) goes through whole, and one client holds at most
/// this many of a worker's slots per connection it proved with a cookie.
pub const DEFER_PER_FLOW: u8 = 2;

/// How many times the SYN to a real is sent again, at most, while its
/// flow waits (see [`SynRetries`]); [`SYN_RTO_MS`] `<<` this after the
/// last (8 s; 15 s after the first SYN), the proxy gives up
/// ([`ProxyReset`]).
pub const SYN_RETRIES: u8 = 3;

/// A proxied connection given up on: its real never answered the SYN nor
/// its three re-sends. The client, which thinks it is connected (it got
/// our SYN-ACK), gets a RST at the sequence number it expects (cookie +
/// 1), as when the real refuses; without it a client whose server speaks
/// first (SSH, SMTP) waited for ever (found in review). Its flow is
/// ended. A flow that expires first (`tcp_syn_timeout` under 15 s) gets
/// none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyReset<A: FlowAddr> {
    pub key: FlowKey<A>,
    /// The RST's sequence number (the cookie + 1) and acknowledgment (the
    /// client's next).
    pub seq: u32,
    pub ack: u32,
}

/// How many resets wait for the worker's pass, at most; a flow given up on
/// when they are full waits for the next look.
const PROXY_RESETS: usize = 16;
/// The first interval before the SYN to a real is sent again (ms), doubled
/// after each: 1 s, 2 s, 4 s, TCP's initial retransmission timeout and its
/// back-off (RFC 6298).
pub const SYN_RTO_MS: u32 = 1_000;

/// The flow's proxy state when the real's SYN-ACK arrives: what the
/// pipeline needs to turn it into the ACK to the real.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Waiting {
    pub entry: u32,
    /// The client's ISN plus one: the SYN-ACK must acknowledge it.
    pub client_next: u32,
    /// The window field of the client's ACK (in the client's scale).
    pub window: u16,
    /// Whether the SYN to the real carried timestamps.
    pub timestamps: bool,
    /// Where the SYN-ACK came from ([`sender_mark`]).
    pub sender: u32,
}

/// Where a real's segment came from: the port it arrived on and its
/// source MAC, folded into 32 bits, never 0. A flow the SYN proxy answered
/// keeps its real's (`Flow::children`, unused once the real answered),
/// taken from the SYN-ACK that acknowledged the client's ISN, which no
/// stranger knows; from then on the real's RST, FIN and SYN are believed
/// only from there, or from where the appliance reaches the real. Frames a
/// stranger sends from elsewhere through a router carry the router's MAC.
/// Unlike the neighbor check alone, this takes a real whose frames carry
/// another MAC than its ARP answer (bonding balance-tlb/alb, Windows NLB).
/// 0 means not known (a flow synced from a peer): only the neighbor check
/// is then asked.
#[inline]
pub fn sender_mark(port: usize, mac: [u8; 6]) -> u32 {
    let mut b = [0u8; 8];
    b[..6].copy_from_slice(&mac);
    let x = u64::from_le_bytes(b) ^ ((port as u64) << 48);
    ((super::hash::mix64(x) >> 32) as u32) | 1
}

/// The SYN to a waiting flow's real, as the flow rebuilds it: the first
/// (when the flow is made) and every one sent again come from the same
/// entry fields, so they are the same segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxySyn<A: FlowAddr> {
    pub client: A,
    pub client_port: u16,
    pub real: A,
    pub real_port: u16,
    /// The client's ISN: the SYN carries the client's own.
    pub isn: u32,
    /// The window field: the ACK's, in the client's scale, unscaled (a
    /// SYN's window is not scaled), at most 65535.
    pub window: u16,
    /// The client's ACK's TTL less one (forwarded, as NAT does).
    pub ttl: u8,
    /// What the cookie carried (MSS, window scale, SACK permitted), and
    /// the ACK's TSval when it had timestamps.
    pub options: TcpOptions,
}

/// What the SYN proxy makes of a client's packet (in [`Target::proxy`](super::Target)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyStep {
    /// Not a proxied flow: forwarded as ever.
    None,
    /// A proxied flow: forwarded with the translation
    /// [`Conntrack::proxy_adjust`](super::Conntrack::proxy_adjust) holds
    /// (kept out of the target, so that a target stays two registers).
    Translate,
    /// A SYN to answer with a cookie SYN-ACK; no state is kept (the
    /// target's real is not chosen: its fields mean nothing).
    AnswerSyn,
    /// An ACK for no flow: its cookie decides (the target's real is not
    /// chosen). `engaged`: a bad cookie is dropped; else (auto on standby)
    /// the packet goes on as without the proxy.
    CheckCookie { engaged: bool },
    /// Keep the segment, untouched, and run it again later (see
    /// [`Deferrals`]): client data for a flow still waiting for its real's
    /// SYN-ACK, or a segment that must not overtake such data.
    Defer,
    /// An ACK for a flow still waiting for its real that does not
    /// acknowledge the flow's cookie: it may acknowledge a newer one, which
    /// its client got for a new SYN from the same port (it started again:
    /// its connect() gave up, or its application retried). If its cookie
    /// checks out, the waiting flow is ended
    /// ([`Conntrack::syn_proxy_replace`](super::Conntrack::syn_proxy_replace))
    /// and the ACK opens a new one, as for no flow; else it is dropped
    /// (`syn_proxy_pending`), as before. Never for a flow its real
    /// answered: the cookie proves the client's address, not that the
    /// client is done with a live connection.
    Restart,
}

/// What the SYN proxy makes of a real's packet (in
/// [`ReplyTarget::proxy`](super::ReplyTarget)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyStep {
    None,
    /// As [`ProxyStep::Translate`].
    Translate,
    /// The real's SYN-ACK for a waiting flow: turn it into the ACK to the
    /// real ([`Conntrack::syn_proxy_answered`](super::Conntrack::syn_proxy_answered));
    /// [`Conntrack::proxy_waiting`](super::Conntrack::proxy_waiting) says
    /// what the flow waited with.
    AckToReal,
    /// The real's ACK of something else than our SYN, for a waiting flow:
    /// answer the real with a RST at the number it acknowledged, as the
    /// client's TCP in SYN-SENT would (RFC 9293 3.10.7.3), so that the SYN
    /// sent again opens the connection.
    ResetReal,
}

/// How the SYN proxy's mode applies to one new connection now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cover {
    /// Not at all (`off`, or a service it cannot cover).
    Off,
    /// Answering SYNs with cookies (`on`, or `auto` under SYN pressure).
    Engaged,
    /// `auto` without pressure: SYNs go to reals as before, but an ACK
    /// with a good cookie (one answered while engaged) still makes a flow.
    Standby,
}

/// The SYN-pressure hysteresis: engaged at half the table, released
/// below three eighths.
#[derive(Debug, Default)]
pub struct Pressure(Cell<bool>);

impl<A: FlowAddr> Flow<A> {
    /// Whether the SYN proxy answered this flow's handshake (the client
    /// proved its address with a cookie and the real then answered, or is
    /// about to): a confirmed flow for whoever ranks flows by trust.
    #[inline]
    pub fn is_proxied(&self) -> bool {
        self.proxy & PROXY_ON != 0
    }

    /// Whether it still waits for the real's SYN-ACK.
    #[inline]
    pub fn is_proxy_waiting(&self) -> bool {
        self.proxy & PROXY_WAITING != 0
    }

    /// The window-scale shift the client's windows are in.
    fn client_ws(&self) -> u8 {
        self.proxy_wscale >> 4
    }

    fn real_ws(&self) -> u8 {
        self.proxy_wscale & 0xf
    }

    /// The SYN to the real of a flow that waits for it (None for any
    /// other flow), rebuilt from the entry. While waiting, fields the flow
    /// does not use yet hold what it needs besides the tuple and real:
    /// `client_next` is the client's ISN plus one, `proxy_seq` the cookie
    /// (whose option bits are the MSS, window scale and SACK permitted the
    /// SYN carries), `proxy_window` the ACK's window field, `real_next`
    /// the ACK's TSval (the real has sent nothing yet), and the low byte
    /// of `children` (a template's field) the SYN's TTL (the next byte
    /// counts the re-sends: [`Self::syn_retries`]). The 64 bytes of the
    /// entry stay 64.
    pub fn proxy_syn(&self) -> Option<ProxySyn<A>> {
        if !self.is_proxy_waiting() || self.state() != FlowState::SynSent {
            return None;
        }
        let carried = CookieOptions::carried(A::FAMILY, self.proxy_seq);
        let shift = carried.wscale.unwrap_or(0);
        let window = (u64::from(self.proxy_window) << shift).min(0xffff) as u16;
        Some(ProxySyn {
            client: self.client(),
            client_port: self.client_port(),
            real: self.real(),
            real_port: self.real_port(),
            isn: self.client_next.wrapping_sub(1),
            window,
            ttl: (self.children & 0xff) as u8,
            options: TcpOptions {
                mss: Some(carried.mss),
                wscale: carried.wscale,
                sack_permitted: carried.sack_permitted,
                timestamps: (self.proxy & PROXY_TS != 0).then_some(Timestamps {
                    val: self.real_next,
                    ecr: 0,
                }),
            },
        })
    }

    /// How many times its SYN went to the real again (while waiting).
    #[inline]
    pub fn syn_retries(&self) -> u8 {
        (self.children >> 8) as u8
    }

    /// When (worker clock, ms) its SYN last went to the real, first or
    /// again (while waiting): what the back-off counts from. Kept in
    /// `template_timeout`, which a flow uses otherwise only once sync
    /// records it, and sync records no flow that waits; not in
    /// `last_seen`, which is when a packet last came from the client or
    /// the real, and so what expiry and eviction read: our own re-sends
    /// must not keep alive a flow whose client and real are both silent.
    #[inline]
    pub fn syn_sent_at(&self) -> u32 {
        self.template_timeout
    }

    /// Whether a client's segment for this waiting flow is one its client
    /// could send and nobody else blindly: it acknowledges the cookie
    /// exactly (so its sender saw our SYN-ACK), starts where the client's
    /// stream does and fits the window our SYN-ACK offered, to a flow
    /// still opening. What a deferred segment must be (it must also carry
    /// something), and what may make the SYN go to the real again.
    fn plausible_early(&self, seg: Segment) -> bool {
        let offset = u64::from(seg.seq.wrapping_sub(self.client_next));
        seg.flags.contains(TcpFlags::ACK)
            && !seg.flags.intersects(TcpFlags::SYN | TcpFlags::RST)
            && seg.ack == self.proxy_seq.wrapping_add(1)
            && offset + u64::from(seg.len) <= u64::from(SYNACK_WINDOW)
            && self.state() == FlowState::SynSent
    }

    /// The translation of a segment from the client to the real.
    pub fn proxy_to_real(&self) -> TcpAdjust {
        let mut a = TcpAdjust {
            ack_add: self.proxy_seq,
            sack_add: self.proxy_seq,
            ..TcpAdjust::default()
        };
        if self.proxy & PROXY_TS != 0 {
            a.tsecr_add = self.proxy_ts.wrapping_neg();
        }
        // The client scales its windows; a real that did not take window
        // scale reads them unscaled.
        if self.proxy & (PROXY_CLIENT_WS | PROXY_REAL_WS) == PROXY_CLIENT_WS {
            a.win_shl = self.client_ws();
        }
        a
    }

    /// The translation of a segment from the real to the client.
    pub fn proxy_to_client(&self) -> TcpAdjust {
        let mut a = TcpAdjust {
            seq_add: self.proxy_seq.wrapping_neg(),
            ..TcpAdjust::default()
        };
        if self.proxy & PROXY_TS != 0 {
            a.tsval_add = self.proxy_ts;
        }
        // The client reads windows in the scale the proxy announced.
        if self.proxy & PROXY_CLIENT_WS != 0 {
            a.win_shl = if self.proxy & PROXY_REAL_WS != 0 {
                self.real_ws()
            } else {
                0
            };
            a.win_shr = ADVERTISED_WSCALE;
            if a.win_shl == a.win_shr {
                a.win_shl = 0;
                a.win_shr = 0;
            }
        }
        a
    }

    /// The translation of the sequence number of a segment from the proxy
    /// (the VIP) to the client quoted in an ICMP error, on its way to the
    /// real: back into the real's space.
    pub fn proxy_quote_to_real(&self) -> Option<TcpAdjust> {
        (self.is_proxied() && !self.is_proxy_waiting()).then_some(TcpAdjust {
            seq_add: self.proxy_seq,
            ..TcpAdjust::default()
        })
    }
}

impl Pressure {
    /// Whether a table with `len` of `capacity` entries is under pressure
    /// (updates the hysteresis).
    #[inline]
    pub(super) fn update(&self, len: usize, capacity: usize) -> bool {
        let on = if self.0.get() {
            len * 8 >= capacity * 3
        } else {
            len * 2 >= capacity
        };
        self.0.set(on);
        on
    }
}

/// How many flows [`DeferReady`] names before it stands for all of them.
const READY_FLOWS: usize = 16;

/// The flows whose deferred segments are to run again at the worker's next
/// pass over them, by client address and port (a segment of another flow
/// that shares them only runs again early, and finds it still waits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeferReady {
    /// Client address (folded: IPv6 addresses to a hash, which at worst
    /// runs another flow's segments early) and port.
    flows: [(u64, u16); READY_FLOWS],
    len: u8,
    /// More flows than it names: every deferred segment is to run again.
    all: bool,
}

impl DeferReady {
    /// Every flow.
    pub const ALL: DeferReady = DeferReady {
        flows: [(0, 0); READY_FLOWS],
        len: 0,
        all: true,
    };

    pub fn is_empty(&self) -> bool {
        self.len == 0 && !self.all
    }

    /// Whether segments of the flow of `client`:`client_port` are to run
    /// again.
    pub fn covers<A: FlowAddr>(&self, client: A, client_port: u16) -> bool {
        self.all || self.flows[..usize::from(self.len)].contains(&(client.fold(), client_port))
    }

    fn add<A: FlowAddr>(&mut self, client: A, client_port: u16) {
        if self.covers(client, client_port) {
            return;
        }
        match self.flows.get_mut(usize::from(self.len)) {
            Some(slot) => {
                *slot = (client.fold(), client_port);
                self.len += 1;
            }
            None => self.all = true,
        }
    }
}

/// Client segments the SYN proxy defers instead of dropping, as the flow
/// table sees them (the frames themselves are the worker's, in a
/// `pipeline::DeferList`).
///
/// While a proxied flow waits for its real's SYN-ACK, a segment from its
/// client that carries data or a FIN, acknowledges the cookie exactly (so
/// its sender saw our SYN-ACK: nobody injects blindly) and fits the window
/// our SYN-ACK offered is deferred (`ProxyStep::Defer`), up to
/// [`DEFER_PER_FLOW`] per flow, counted in the flow's [`PROXY_DEFERRED`]
/// bits; beyond that, or anything else, is dropped (`syn_proxy_pending`)
/// as before. Nothing of the flow's tracking moves for a deferred segment.
///
/// When the flow stops waiting (its real answered, or refused) or its
/// client resets it, the flow is named in [`DeferReady`], and the worker
/// runs its deferred segments again, in the order they came, after the
/// burst (`Pipeline::process_deferred`): each then goes on exactly as a
/// segment arriving at that moment would (translated into the real's
/// sequence space), or is dropped if its flow closed or is gone; never
/// does a re-run defer again past its flow's count or make a flow.
///
/// Order: a client segment that arrives after the answer but before that
/// pass (later in the same burst, say) is deferred too, behind them
/// (`after_answer`), so the real gets the client's bytes in the order the
/// client sent them. Once the pass ran, the flow's bits are clear and its
/// segments take the fast path again.
#[derive(Debug, Default)]
pub struct Deferrals {
    /// The pipeline is running a deferred segment again.
    pub(super) rerun: bool,
    ready: DeferReady,
}

impl Deferrals {
    /// Hook: a client's segment (neither SYN nor RST) for `f`, which still
    /// waits for its real.
    #[inline(never)]
    pub(super) fn early<A: FlowAddr>(
        &mut self,
        f: &mut Flow<A>,
        seg: Segment,
    ) -> Result<ProxyStep, DropReason> {
        if seg.len == 0 || !f.plausible_early(seg) {
            return Err(DropReason::SynProxyPending);
        }
        if self.rerun {
            // Deferred already (and counted): it stays.
            return Ok(ProxyStep::Defer);
        }
        if (f.proxy & PROXY_DEFERRED) / PROXY_DEFERRED_ONE >= DEFER_PER_FLOW {
            return Err(DropReason::SynProxyPending);
        }
        f.proxy += PROXY_DEFERRED_ONE;
        Ok(ProxyStep::Defer)
    }

    /// Hook: a client's segment `seg` for `f`, which no longer waits,
    /// before the flow sees it. None: on as usual.
    #[inline]
    pub(super) fn after_answer<A: FlowAddr>(
        &mut self,
        f: &mut Flow<A>,
        seg: Segment,
    ) -> Option<Result<ProxyStep, DropReason>> {
        if f.proxy & PROXY_DEFERRED == 0 && !self.rerun {
            return None;
        }
        self.after_answer_cold(f, seg)
    }

    #[cold]
    #[inline(never)]
    fn after_answer_cold<A: FlowAddr>(
        &mut self,
        f: &mut Flow<A>,
        seg: Segment,
    ) -> Option<Result<ProxyStep, DropReason>> {
        if self.rerun {
            // Its deferred segments run now, in order: the flow's bits
            // are done with.
            f.proxy &= !PROXY_DEFERRED;
            // Not if the real refused or the flow was reset meanwhile, nor
            // into a later connection on the same tuple (its flow lost,
            // and made again by a retransmission): one that starts
            // elsewhere in the client's sequence space.
            if f.state() == FlowState::Closed || !seq_near(seg.seq, f.client_next) {
                return Some(Err(DropReason::SynProxyPending));
            }
            return None;
        }
        if self.ready.covers(f.client(), f.client_port()) {
            // Answered since the last pass: behind its deferred segments.
            return Some(Ok(ProxyStep::Defer));
        }
        // None of them is left (each ran, or was dropped by the worker):
        // forget them.
        f.proxy &= !PROXY_DEFERRED;
        None
    }

    /// Hook: `f` stopped waiting (its real answered or refused), or its
    /// client reset it: its deferred segments, if any, are to run again.
    #[inline]
    pub(super) fn changed<A: FlowAddr>(&mut self, f: &Flow<A>) {
        if f.proxy & PROXY_DEFERRED != 0 {
            self.ready.add(f.client(), f.client_port());
        }
    }
}

/// How many flows' SYNs can wait to be sent again between two passes of
/// the worker (one poll); a flow that finds them all taken is due again at
/// its client's next segment.
pub const SYN_RETRY_QUEUE: usize = 16;

/// The SYN proxy sending a waiting flow's SYN to its real again, as
/// DPVS's `syn_retry` does (there on the flow's timer, from a copy of the
/// SYN it keeps; here on the client's segments and on a timer of our own,
/// [`SynWatch`], from the entry).
///
/// After a valid cookie ACK the flow sends one SYN to the real and waits
/// for its SYN-ACK. If that SYN or the SYN-ACK is lost, the client (which
/// thinks it is connected) retransmits its data, or its ACK; each such
/// segment is deferred or dropped as before (`Deferrals`), and nothing
/// else would ask the real again: the connection would hang until the
/// flow timed out. So a client's segment for a waiting flow also sends the
/// SYN again when:
/// - it passes the checks a deferred segment passes (the cookie's ACK
///   number exactly, in the window our SYN-ACK offered, the flow still
///   opening; data is not needed: a bare ACK asks as well), so a stranger
///   who never saw the cookie cannot trigger it;
/// - at least [`SYN_RTO_MS`] `<< n` ms passed since the last SYN to the
///   real, after `n` re-sends (1 s, 2 s, 4 s: however fast the segments
///   come, the real gets no more than that);
/// - fewer than [`SYN_RETRIES`] went out again already; after the last,
///   the flow times out as before;
/// - it is not a deferred segment running again (the client did not send
///   it now).
///
/// The flow counts the re-send and when it went (`children`,
/// [`Flow::syn_sent_at`]), and is named here. A re-send is not a packet
/// of the flow: it leaves `last_seen` alone, so a flow waiting for a
/// silent real ages from its client's last segment (its cookie ACK, or
/// a later one that passes the checks above) and expires
/// `tcp_syn_timeout` after it, as any half-open flow, and a full table
/// does not see it as in use. Between bursts the worker takes the names
/// (`Pipeline::resend_syns`): each flow that still waits rebuilds its SYN
/// ([`Flow::proxy_syn`]), which leaves in a buffer of its own by the way
/// the first went (route, neighbor, hold for ARP); the client's segment
/// keeps its own fate. A re-send that finds no buffer (the pool empty)
/// is given back ([`Conntrack::syn_resend_unsent`](super::Conntrack::syn_resend_unsent)):
/// it costs the flow none of its [`SYN_RETRIES`], the flow stays due,
/// and the timer or the client's next segment names it again.
#[derive(Debug, Clone, Copy)]
pub struct SynRetries<A: FlowAddr> {
    due: [Option<DueSyn<A>>; SYN_RETRY_QUEUE],
    len: u8,
}

/// A flow [`SynRetries`] named for its SYN again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DueSyn<A: FlowAddr> {
    /// Entry and key: the entry may have been reused by the pass, even by
    /// a new flow on the same tuple (a client that reset and opened
    /// again), which must not get its predecessor's re-send.
    entry: u32,
    key: FlowKey<A>,
    /// The flow's re-send count with this one.
    count: u8,
    /// When its SYN went before this one: what it is due from again if
    /// this one cannot go.
    before: u32,
}

impl<A: FlowAddr> Default for SynRetries<A> {
    fn default() -> Self {
        SynRetries {
            due: [None; SYN_RETRY_QUEUE],
            len: 0,
        }
    }
}

impl<A: FlowAddr> SynRetries<A> {
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The flows named, in the order they were.
    pub fn iter(&self) -> impl Iterator<Item = DueSyn<A>> + '_ {
        self.due[..usize::from(self.len)].iter().flatten().copied()
    }

    /// Whether entry `e` is named (its re-send counted but not sent yet).
    fn names(&self, e: u32) -> bool {
        self.iter().any(|d| d.entry == e)
    }

    /// Names waiting flow `f` (entry `e`), whose SYN is due again, for the
    /// next pass, and counts the re-send on it; false if the queue is full
    /// (nothing counted: it is due again at the next chance).
    fn name(&mut self, e: u32, f: &mut Flow<A>, now: u32) -> bool {
        let Some(slot) = self.due.get_mut(usize::from(self.len)) else {
            return false;
        };
        let before = f.syn_sent_at();
        f.children += 1 << 8;
        f.template_timeout = now;
        *slot = Some(DueSyn {
            entry: e,
            key: f.key(),
            count: f.syn_retries(),
            before,
        });
        self.len += 1;
        true
    }
}

/// Whether waiting flow `f`'s SYN may go to the real again at `now`: fewer
/// than [`SYN_RETRIES`] went again, the last at least [`SYN_RTO_MS`]
/// `<< n` ago.
fn syn_due<A: FlowAddr>(f: &Flow<A>, now: u32) -> bool {
    let sent = f.syn_retries();
    sent < SYN_RETRIES && now.wrapping_sub(f.syn_sent_at()) >= SYN_RTO_MS << sent
}

/// How many waiting flows a table watches for [`SynWatch`]; one made when
/// all are watched gets its SYN again only on its client's segments.
pub const SYN_WATCH: usize = 4096;
/// How often the watched flows are looked at (ms).
pub const SYN_WATCH_EVERY_MS: u32 = 50;
/// How many watched flows one poll looks at, at most: a look at all
/// [`SYN_WATCH`] of both families, each a random read of the flow table,
/// took up to a millisecond of one poll (found in audit); a larger list is
/// looked at over several polls in a row.
pub const SYN_WATCH_BUDGET: usize = 256;

/// The timer side of [`SynRetries`]: a client that sends nothing after its
/// ACK (the server speaks first: SSH, SMTP, many databases) gives no
/// segment to send the SYN again on, and its connection would hang if the
/// first SYN was lost. So every flow the proxy opens is watched here until
/// it stops waiting (its real answered or refused, it closed or expired),
/// and every [`SYN_WATCH_EVERY_MS`] those whose SYN is due ([`SYN_RTO_MS`]
/// `<< n` since the last, fewer than [`SYN_RETRIES`] so far: the same
/// rule, counted on the same flow, so a client's segments and the timer
/// together never send more) are named for the next pass as if their
/// client had asked. Proxied flows are made only for clients that
/// answered a cookie from their own address, and wait about one round
/// trip to the real, so few are watched at once; [`SYN_WATCH`] bounds it
/// all the same (DPVS keeps a timer per connection instead).
#[derive(Debug)]
pub struct SynWatch<A: FlowAddr> {
    /// Entry and key (an entry may have been reused since).
    flows: Vec<(u32, FlowKey<A>)>,
    /// When they were last looked at in full.
    last: u32,
    /// Where a look that filled the queue, or used up its budget
    /// ([`SYN_WATCH_BUDGET`]), stopped, and how many of the look's flows
    /// are still to see: the next look (at the next poll, not a tick
    /// later) goes on from there, so that no flow waits behind others that
    /// keep coming due.
    resume: Option<(usize, usize)>,
}

impl<A: FlowAddr> Default for SynWatch<A> {
    fn default() -> Self {
        SynWatch {
            flows: Vec::new(),
            last: 0,
            resume: None,
        }
    }
}

impl<A: FlowAddr> SynWatch<A> {
    /// Hook: the proxy opened entry `e`, flow `key`, which now waits.
    pub(super) fn add(&mut self, e: u32, key: FlowKey<A>) {
        if self.flows.capacity() == 0 {
            // Once, in full: no reallocation on the packet path later.
            self.flows.reserve_exact(SYN_WATCH);
        }
        if self.flows.len() < SYN_WATCH {
            self.flows.push((e, key));
        }
    }

    pub fn len(&self) -> usize {
        self.flows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }
}

impl<A: FlowAddr> super::Conntrack<A> {
    /// Hook: a client's segment (neither SYN nor RST) for entry `e`, which
    /// still waits for its real: one its client sent (not a deferred one
    /// running again) that only its client could send (it passes the
    /// checks a deferred segment passes) is its last packet, and its SYN
    /// may be due again ([`SynRetries`]); the segment is deferred, or
    /// dropped ([`Deferrals`]). Anything else leaves the flow's age alone,
    /// as it did before: a stranger cannot keep a half-open flow alive.
    pub(super) fn proxy_early(
        &mut self,
        e: u32,
        seg: Segment,
        now: u32,
    ) -> Result<ProxyStep, DropReason> {
        let f = self.table.get_mut(e);
        if !self.defer.rerun && f.plausible_early(seg) {
            f.last_seen = now;
            if syn_due(f, now) {
                self.retries.name(e, f, now);
            }
        }
        self.defer.early(f, seg)
    }

    /// How many waiting flows the SYN timer watches ([`SynWatch`]).
    pub fn syn_watched(&self) -> usize {
        self.syn_watch.len()
    }

    /// Whether some waiting flow's SYN is to go to its real again.
    #[inline]
    pub fn syn_retries_due(&self) -> bool {
        !self.retries.is_empty()
    }

    /// The timer ([`SynWatch`]): at most every [`SYN_WATCH_EVERY_MS`]
    /// (or at once, after a look that filled the queue), forgets the
    /// watched flows that no longer wait and names those whose SYN is due
    /// again, as far as the queue has room. Cheap when nothing is watched
    /// (one test) or it is not time yet (two).
    #[inline]
    pub fn syn_watch_tick(&mut self, snap: &Snapshot, now: u32) {
        let w = &self.syn_watch;
        if w.flows.is_empty()
            || (w.resume.is_none() && now.wrapping_sub(w.last) < SYN_WATCH_EVERY_MS)
        {
            return;
        }
        self.syn_watch_scan(snap, now);
    }

    #[cold]
    #[inline(never)]
    fn syn_watch_scan(&mut self, snap: &Snapshot, now: u32) {
        let (mut i, mut left) = self
            .syn_watch
            .resume
            .take()
            .unwrap_or((0, self.syn_watch.flows.len()));
        // Each watched flow once: from where the look began to the end,
        // then from the beginning (a removal moves the last one into `i`,
        // which is then looked at; one moved from the part already done
        // is looked at twice, which names nothing twice, once named it is
        // not due again, but counts against the look, as a flow added
        // between polls does: a few flows may then wait for the next
        // look, `SYN_WATCH_EVERY_MS` later). At most `SYN_WATCH_BUDGET` a
        // poll.
        let mut budget = SYN_WATCH_BUDGET;
        while left > 0 {
            if budget == 0 {
                self.syn_watch.resume = Some((i, left));
                return;
            }
            budget -= 1;
            left -= 1;
            if i >= self.syn_watch.flows.len() {
                i = 0;
            }
            let Some(&(e, key)) = self.syn_watch.flows.get(i) else {
                break;
            };
            // Not a flow that expired and waits for the sweep (found by
            // fuzzing), nor one whose real a reload removed (found in
            // review): a packet would end either, not send its SYN.
            // One whose last re-send is named but not sent yet stays: if
            // it finds no buffer, it is given back and due again.
            let waiting = self.table.is_live(e) && {
                let f = self.table.get(e);
                f.key() == key
                    && f.proxy_syn().is_some()
                    && !f.expired(now, &snap.timeouts)
                    && snap.real_present(f.real_id)
            };
            if !waiting {
                self.syn_watch.flows.swap_remove(i);
                continue;
            }
            let f = self.table.get(e);
            if f.syn_retries() >= SYN_RETRIES
                && !self.retries.names(e)
                && now.wrapping_sub(f.syn_sent_at()) >= SYN_RTO_MS << SYN_RETRIES
            {
                if self.resets.len() >= PROXY_RESETS {
                    // On from here at the next poll.
                    self.syn_watch.resume = Some((i, left + 1));
                    return;
                }
                // While it waits, the flow's offset field holds the cookie.
                self.resets.push(ProxyReset {
                    key,
                    seq: f.proxy_seq.wrapping_add(1),
                    ack: f.client_next,
                });
                self.end(e, now);
                self.syn_watch.flows.swap_remove(i);
                continue;
            }
            let f = self.table.get_mut(e);
            if syn_due(f, now) && !self.retries.name(e, f, now) {
                // The queue is full: on from here at the next poll.
                self.syn_watch.resume = Some((i, left + 1));
                return;
            }
            i += 1;
        }
        self.syn_watch.last = now;
    }

    /// Whether proxied connections given up on wait for their RST to the
    /// client ([`ProxyReset`]).
    #[inline]
    pub fn proxy_resets_due(&self) -> bool {
        !self.resets.is_empty()
    }

    /// The connections given up on, forgotten here: the caller sends each
    /// client its RST now.
    pub fn take_proxy_resets(&mut self) -> Vec<ProxyReset<A>> {
        std::mem::take(&mut self.resets)
    }

    /// The flows whose SYN is to go to the real again, forgotten here: the
    /// caller sends them now ([`Self::syn_to_resend`]).
    pub fn take_syn_retries(&mut self) -> SynRetries<A> {
        std::mem::take(&mut *self.retries)
    }

    /// The SYN to send again for flow `due`, named by
    /// [`Self::take_syn_retries`]: None if the flow no longer waits (its
    /// real answered meanwhile, it closed, or the entry is another's now).
    pub fn syn_to_resend(&self, snap: &Snapshot, due: DueSyn<A>) -> Option<ProxySyn<A>> {
        let f = self.named(due)?;
        if !snap.real_present(f.real_id) {
            return None;
        }
        f.proxy_syn()
    }

    /// The SYN [`Self::syn_to_resend`] gave for `due` could not go (no
    /// buffer to build it in): the flow's count and back-off go back to
    /// what they were before it was named, so it costs none of the flow's
    /// [`SYN_RETRIES`] and the flow stays due (the timer's next look or
    /// the client's next segment names it again; never within the same
    /// pass, which took the names).
    pub fn syn_resend_unsent(&mut self, due: DueSyn<A>) {
        if self.named(due).is_some() {
            let f = self.table.get_mut(due.entry);
            f.children -= 1 << 8;
            f.template_timeout = due.before;
        }
    }

    /// The flow `due` names, if its entry still holds it with the count it
    /// was named with.
    fn named(&self, due: DueSyn<A>) -> Option<&Flow<A>> {
        if !self.table.is_live(due.entry) {
            return None;
        }
        let f = self.table.get(due.entry);
        (f.key() == due.key && f.is_proxy_waiting() && f.syn_retries() == due.count).then_some(f)
    }

    /// Whether the packets looked up from now on are deferred segments
    /// running again (`Pipeline::process_deferred`).
    pub fn set_defer_rerun(&mut self, on: bool) {
        self.defer.rerun = on;
    }

    pub fn defer_rerun(&self) -> bool {
        self.defer.rerun
    }

    /// Whether some flow's deferred segments are ready to run again.
    #[inline]
    pub fn defer_ready(&self) -> bool {
        !self.defer.ready.is_empty()
    }

    /// The flows whose deferred segments are ready to run again, forgotten
    /// here: the caller runs them now.
    pub fn take_defer_ready(&mut self) -> DeferReady {
        std::mem::take(&mut self.defer.ready)
    }
}
