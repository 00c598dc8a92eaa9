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

use std::cell::Cell;

use super::Flow;
use crate::forward::TcpAdjust;
use crate::synproxy::ADVERTISED_WSCALE;

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

impl Flow {
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
