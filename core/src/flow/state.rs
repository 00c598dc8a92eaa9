//! The state of a flow and how long each state lives, as IPVS tracks TCP:
//! from the packets it sees (for TUN and DR only the client's side).

use crate::snapshot::{millis, CompileError};
use crate::wire::TcpFlags;

/// The life stage of a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FlowState {
    /// TCP: a SYN was seen, the handshake is not complete.
    SynSent = 0,
    /// TCP: the client acknowledged; data flows.
    Established = 1,
    /// TCP: a FIN was seen from either side.
    FinWait = 2,
    /// TCP: a RST was seen, or a FIN from each side.
    Closed = 3,
    /// UDP (or any datagram flow).
    Datagram = 4,
    /// A persistence template: no packets, it remembers the real of a client.
    Template = 5,
}

impl FlowState {
    /// Whether a flow in this state counts as inactive, as IPVS's
    /// `InActConn`: a TCP connection not (or no longer) established, that
    /// is a SYN without a completed handshake, a FIN or a RST seen.
    /// Established TCP and datagram flows are active; templates are
    /// neither (they are not connections).
    #[inline]
    pub fn is_inactive(self) -> bool {
        matches!(
            self,
            FlowState::SynSent | FlowState::FinWait | FlowState::Closed
        )
    }

    /// [`Self::is_inactive`] of a state as its `u8` (the low byte of
    /// `Flow::trust_inputs`).
    #[inline]
    pub fn is_inactive_code(code: u8) -> bool {
        code == FlowState::SynSent as u8
            || code == FlowState::FinWait as u8
            || code == FlowState::Closed as u8
    }

    /// The next state after a TCP segment with `flags`, from the client
    /// (`from_client`) or the real.
    #[inline]
    pub fn on_tcp(self, flags: TcpFlags, from_client: bool) -> FlowState {
        if flags.contains(TcpFlags::RST) {
            return FlowState::Closed;
        }
        if flags.contains(TcpFlags::FIN) {
            return FlowState::FinWait;
        }
        match self {
            FlowState::SynSent
                if from_client
                    && flags.contains(TcpFlags::ACK)
                    && !flags.contains(TcpFlags::SYN) =>
            {
                FlowState::Established
            }
            s => s,
        }
    }
}

/// A TCP segment as flow tracking sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub flags: TcpFlags,
    /// Its sequence number.
    pub seq: u32,
    /// Its acknowledgment number (meaningful with the ACK flag).
    pub ack: u32,
    /// The sequence space it takes: payload bytes, plus one for SYN and
    /// one for FIN.
    pub len: u32,
}

impl Segment {
    /// A client's SYN that opens a connection: SYN without ACK, and
    /// without RST or FIN, which no opening SYN carries (Linux's conntrack
    /// holds SYN with RST or FIN invalid). Only such a SYN may restart a
    /// half-open flow or replace a closing one (found in audit: a blind
    /// SYN|RST, believed at any sequence number as a SYN, closed a
    /// half-open flow, and the next SYN moved it to another real).
    #[inline]
    pub fn opens(&self) -> bool {
        self.flags.contains(TcpFlags::SYN)
            && !self
                .flags
                .intersects(TcpFlags::ACK | TcpFlags::RST | TcpFlags::FIN)
    }

    /// Whether it could end its flow or start it again (RST, FIN or SYN):
    /// what is believed only from whom the flow trusts with that.
    #[inline]
    pub fn ends_or_opens(&self) -> bool {
        self.flags
            .intersects(TcpFlags::RST | TcpFlags::FIN | TcpFlags::SYN)
    }
}

/// How far a segment's sequence number may lie from the next one its
/// sender was seen to need and still be believed: a RST or FIN outside it
/// changes nothing (a stranger guessing blindly hits it about once in
/// 2,000 tries, where any number used to do), and no segment outside it
/// moves the tracking on. A fixed 1 MiB either side, since the appliance
/// does not read window-scale options: a connection with more than that in
/// flight may see a late RST ignored, and its flow then times out instead.
pub const SEQ_WINDOW: u32 = 1 << 20;

/// A RST or FIN must lie closer still: its sender puts the next sequence
/// number it would send there (RFC 793), which the flow tracks, so 64 KiB
/// either side is room enough for reordering, and a blind guess hits it
/// about once in 32,768 tries. A stranger who knows the tuple could do
/// better in two steps: a segment that lands within [`SEQ_WINDOW`] (once
/// in 2,048 tries) moves the tracking to its end, where a RST is then
/// believed. Where the appliance sees both sides (NAT), that segment must
/// also acknowledge what the other side sent ([`ACK_WINDOW`]), so the
/// first step takes about 2^19 tries; TUN and DR, which see one side, hold
/// it to the client's own last acknowledgment instead (within
/// [`ACK_WINDOW`], unless it is the next segment in order:
/// `Flow::client_acks_fit`), about 2^19 tries too (they took about 2,048
/// pairs, found in review). (A FIN within 1 MiB was believed: it
/// demoted a confirmed flow to an evictable one at 16 times the odds of a
/// RST, and a SYN after it moved the tuple to another real; found in
/// review. A FIN sent behind more than 64 KiB of data the appliance has
/// not seen yet is not believed: its flow ends by its timeout.)
pub const RST_WINDOW: u32 = 1 << 16;

/// How far behind what the other side was seen to send a segment's
/// acknowledgment number may lie for the segment to be believed, where
/// the appliance sees both sides (NAT), as Linux conntrack holds segments
/// to the receiver's data; ahead of it, at most [`SEQ_WINDOW`] (data of
/// that side the tracking did not follow: a retransmission seen first
/// after a failover or a pick-up; held to "never ahead", one such segment
/// froze both sides' tracking for good, found in review). The
/// acknowledgment of a stranger's segment lands once in about 240 tries,
/// on top of its sequence number. 16 MiB, not the window the endpoints
/// use (the appliance does not read window scaling): a receiver with more
/// than that unacknowledged (a download of more than 1.3 Gbit/s over
/// 100 ms) is followed again once its acknowledgments catch up, if what
/// it sent meanwhile is within [`SEQ_WINDOW`]; until then its FIN or RST
/// is not believed and the flow may end by its timeout.
pub const ACK_WINDOW: u32 = 1 << 24;

/// Whether `seq` lies within [`SEQ_WINDOW`] of `next`, either side
/// (sequence numbers wrap).
#[inline]
pub fn seq_near(seq: u32, next: u32) -> bool {
    seq_within(seq, next, SEQ_WINDOW)
}

/// Whether `seq` lies within `window` of `next`, either side.
#[inline]
pub fn seq_within(seq: u32, next: u32, window: u32) -> bool {
    seq.wrapping_sub(next).wrapping_add(window) <= 2 * window
}

/// Timeouts in milliseconds, per state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub syn: u32,
    pub established: u32,
    pub fin: u32,
    pub closed: u32,
    pub datagram: u32,
}

impl Timeouts {
    /// How long a flow in `state` lives after its last packet.
    #[inline]
    pub fn of(&self, state: FlowState) -> u32 {
        match state {
            FlowState::SynSent => self.syn,
            FlowState::Established => self.established,
            FlowState::FinWait => self.fin,
            FlowState::Closed => self.closed,
            FlowState::Datagram => self.datagram,
            // Templates carry their own (the service's persistence).
            FlowState::Template => 0,
        }
    }

    /// The `[flows]` timeouts; one above what the worker clock can measure
    /// (validation refuses it already) is an error naming its key.
    pub fn from_config(f: &lb_config::FlowsConfig) -> Result<Timeouts, CompileError> {
        let fin = millis("flows.tcp_fin_timeout", f.tcp_fin_timeout)?;
        Ok(Timeouts {
            syn: millis("flows.tcp_syn_timeout", f.tcp_syn_timeout)?,
            established: millis("flows.tcp_timeout", f.tcp_timeout)?,
            fin,
            // IPVS keeps a reset connection 10 s so that stray segments
            // still find it.
            closed: fin.min(10_000),
            datagram: millis("flows.udp_timeout", f.udp_timeout)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sequence_window_wraps() {
        assert!(seq_near(1000, 1000));
        assert!(seq_near(1000 + SEQ_WINDOW, 1000));
        assert!(!seq_near(1001 + SEQ_WINDOW, 1000));
        assert!(seq_near(1000u32.wrapping_sub(SEQ_WINDOW), 1000));
        assert!(!seq_near(999u32.wrapping_sub(SEQ_WINDOW), 1000));
        assert!(seq_near(5, u32::MAX - 5), "across the wrap");
        assert!(seq_near(u32::MAX - 5, 5));
        assert!(!seq_near(0x8000_0000, 0));
    }

    #[test]
    fn tcp_states_follow_the_handshake_and_the_close() {
        let syn = TcpFlags::SYN;
        let ack = TcpFlags::ACK;
        let s = FlowState::SynSent;
        assert_eq!(
            s.on_tcp(syn | ack, false),
            FlowState::SynSent,
            "SYN-ACK from the real"
        );
        assert_eq!(s.on_tcp(syn, true), FlowState::SynSent, "retransmitted SYN");
        let e = s.on_tcp(ack, true);
        assert_eq!(e, FlowState::Established);
        assert_eq!(e.on_tcp(ack | TcpFlags::PSH, false), FlowState::Established);
        assert_eq!(e.on_tcp(ack | TcpFlags::FIN, false), FlowState::FinWait);
        assert_eq!(e.on_tcp(TcpFlags::RST, true), FlowState::Closed);
        assert_eq!(FlowState::FinWait.on_tcp(ack, true), FlowState::FinWait);
    }
}
