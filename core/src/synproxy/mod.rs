//! The SYN proxy: SYN cookies for NAT services, as Linux's `nf_synproxy`
//! and DPVS's synproxy do it. While it covers a service (`syn_proxy = "on"`,
//! or `"auto"` while the worker is under SYN pressure), the appliance
//! answers a client's SYN itself and keeps nothing; only a client that
//! comes back with the ACK (and so proved it owns its address) gets a flow
//! and reaches a real. A flood of spoofed SYNs then costs a SYN-ACK each
//! and no table entry.
//!
//! The handshake, each step a frame rewritten in place:
//!
//! ```text
//! client                appliance                         real
//!   SYN  ------------>  SYN-ACK back, seq = cookie
//!        <------------  (no state; `syn_proxy_cookies_sent`)
//!   ACK  ------------>  cookie checks out: a NAT flow (scheduled as any
//!                       new flow), waiting; the ACK becomes the SYN  --->
//!                       (client ISN, MSS/WS/SACK from the cookie,
//!                        timestamps if the ACK had them)
//!   data ------------>  the real has not answered: deferred, kept by
//!                       the worker (`pipeline::DeferList`)
//!                                                  <----  SYN-ACK
//!                       offsets recorded, the flow is established;
//!                       the SYN-ACK becomes the ACK to the real  ------>
//!                       the deferred data, run again after the burst,
//!                       translated  ---------------------------------->
//!   data <----------->  translated both ways for the flow's life
//! ```
//!
//! After that, client to real: ack + delta, SACK edges + delta, TSecr -
//! ts offset (and the window shifted up when the real refused window
//! scale); real to client: seq - delta, TSval + ts offset, the window
//! rescaled from the real's scale to the one the proxy announced
//! ([`ADVERTISED_WSCALE`]). `delta` is the real's ISN minus the cookie.
//! All of it is one incremental checksum step with the NAT rewrite
//! (`forward::TcpAdjust` in `forward::Rewrite`). Flows the proxy did not
//! answer pay one predictable branch on a byte of their entry.
//!
//! Where things are:
//! - `cookie` (here): what a cookie carries, its key, its lifetime and its
//!   forgery odds; `siphash`: its MAC.
//! - `frames`, `frames6` (here): the three frames it makes, over IPv4 and
//!   over IPv6.
//! - `flow/synproxy.rs`: the proxy's state in a flow entry, the sequence
//!   spaces, the translations; the `impl Conntrack` block at the end of
//!   `flow/conntrack.rs`: pressure, the hooks, creating and finishing a
//!   proxied flow.
//! - `pipeline/synproxy.rs`: the steps above on the wire.
//! - `wire/tcp_options.rs`: reading, writing and translating options.
//!
//! Early data (the request right after the client's ACK, before the real's
//! SYN-ACK is back) is deferred, not dropped: the rules (which segments,
//! two per flow, order, what a re-run may do) are in
//! `flow::synproxy::Deferrals`, the worker's bounded list (64 frames, 2 s)
//! in `pipeline::DeferList`.
//!
//! A lost SYN to the real (or a lost SYN-ACK from it) would leave the
//! connection hanging: the client thinks it is open and only retransmits
//! its data. So such a segment, from the client that saw the cookie, also
//! sends the SYN again, rebuilt from the flow entry, at most three times
//! with TCP's back-off (1 s, 2 s, 4 s): `flow::synproxy::SynRetries`, and
//! `Pipeline::resend_syns` between bursts (the segment itself keeps its
//! fate; the SYN is a frame of its own). A client that sends nothing (the
//! server speaks first) gets the same from a timer
//! (`flow::synproxy::SynWatch`, `Pipeline::syn_timers`).
//!
//! A client that starts again from the same port (a new SYN, a new ISN)
//! while its flow waits for the real gets a new cookie; the ACK of it,
//! which checks out but is not the waiting flow's, ends that flow and
//! opens a new one (`flow::ProxyStep::Restart`), as Linux conntrack lets a
//! new SYN through on a connection the server has not answered. A flow
//! the real answered is never replaced.
//!
//! Known costs, as with any SYN-cookie proxy:
//! - Early data that cannot be deferred (beyond two segments per flow,
//!   every slot taken, kept longer than 2 s, its flow closed meanwhile)
//!   and anything else the client sends before the real answered (a bare
//!   ACK) is dropped (`syn_proxy_pending`) and the client retransmits what
//!   matters, after its retransmission timeout (200 ms or more on Linux).
//!   Data carried by the handshake's ACK itself is not kept (that frame
//!   becomes the SYN to the real).
//! - Options are only what the cookie carries: the MSS is rounded down to
//!   536, 1220, 1440 or 1460, window scale and SACK permitted pass; other
//!   SYN options (TCP Fast Open, MD5, ECN setup) do not reach the real.
//! - The client sees the proxy's MSS (the smallest port MTU - 40; an IPv6
//!   client - 60) and window scale ([`ADVERTISED_WSCALE`]), whatever the
//!   real would have said: windows are rescaled, the MSS is not (a real
//!   with a smaller MSS gets larger segments than it asked for).
//! - A proxied flow cannot outlive the process (its offsets are in the
//!   table, the cookie key is per process), unless connection sync carried
//!   it to the peer.
//!
//! IPv6 (NAT66 services) is the same design: the flow side is generic over
//! the address family, the cookie covers the IPv6 tuple whole
//! ([`cookie::CookieAddr`]), `frames6` makes the frames over IPv6 and
//! `pipeline/synproxy6.rs` runs the steps in the IPv6 flow table.

pub mod cookie;
pub mod frames;
pub mod frames6;
pub mod siphash;

pub use cookie::{CookieAddr, CookieKey, CookieOptions, CookieTuple, PERIOD_MS};

/// The window-scale shift the proxy announces to clients that sent one
/// (what Linux picks for its default buffers).
pub const ADVERTISED_WSCALE: u8 = 7;

/// The (unscaled) window of the proxy's SYN-ACK: what the client may send
/// before it hears from the real.
pub const SYNACK_WINDOW: u16 = 64240;
