//! Bulk passes acknowledged by segment (`wire::sync::flags::SEGMENTS`):
//! the bookkeeping of both ends, socket-free.
//!
//! A bulk pass (every flow a box holds, sent to its peer) is thousands of
//! datagrams; acked only whole, one lost datagram in a pass sent it all
//! again, and at a loss of one in 10,000 a pass of a million flows almost
//! never arrived whole. Here every flows message a box sends until its
//! pass is through is a *segment* of the pass, named by its sequence
//! number:
//!
//! - the receiver notes which of the peer's messages arrived whole
//!   ([`Received`]: every record handed to a worker; one with a record
//!   dropped for want of room is not noted) and tells it every interval
//!   in an [`Acks`] (every message through `cum`, and the gaps after it;
//!   between intervals too, once 4,096 messages arrived or 64 were found
//!   missing since the last);
//! - the sender keeps each segment's records ([`PassSegments`]) until an
//!   ack says it arrived, sends again, as a new message (a new sequence
//!   number: the segment is then known by it), each one an ack says is
//!   missing (but the records a later message superseded: that one is
//!   then waited for too), and takes the pass for through once every
//!   segment of the pass proper is acknowledged (its status's `passed`,
//!   which the peer then acks as before); live changes sent after it
//!   are sent again when lost, but not waited for unless a resend
//!   counted on them;
//! - the sender's own acks carry its floor ([`PassSegments::floor`]: the
//!   first of its messages still wanted), every interval and after a
//!   flush whenever the peer's last acks named a gap before it
//!   ([`PassSegments::floor_wanted`]: mostly a segment that just went
//!   again under a new number), and the receiver forgets the gaps before
//!   it ([`Received::floor`]). An ack names at most 128 gaps, so such a
//!   gap must go soon (found in review: with the floor once an interval,
//!   at 2 % loss a big pass's acks filled with them, stopped acking what
//!   came after them, and its notes overflowed).
//!
//! Everything in an ack is the peer's word, checked: an ack of another
//! life (nonce) than the one the sender is, or that speaks of a message
//! the sender never sent, is ignored whole; an ack never makes the sender
//! forget a segment it did not say arrived, and what it says missing only
//! costs a resend. Memory is bounded: the receiver's window is fixed
//! ([`WINDOW`] messages, allocated once), the sender's record at most
//! [`MAX_PASS_SEGMENTS`] segments not acked yet, of at most a message
//! each, and the notes of at most [`MAX_NOTED`] flows, those of the
//! segments not acked yet (beyond either, the pass is acked whole, as
//! with a peer before segments).

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;

use crate::sync::FlowRecord;
use crate::wire::sync::{records_of, seq_after, Acks, Gap, MAX_RECORDS_END};

/// How many of the peer's messages past `cum` the receiver tracks; one
/// further on forgets the oldest (they are then before `from`, which the
/// sender sends again if it still wants them).
pub const WINDOW: u32 = 1 << 16;

const WORDS: usize = (WINDOW / 64) as usize;

/// The most flows whose newest record a pass remembers at once (see
/// [`PassSegments::note`]): those of the segments not acked yet. One more
/// overflows the pass (it is then acked whole: no segment is sent again
/// without knowing what superseded its records).
pub const MAX_NOTED: usize = 1 << 21;

/// The most segments a pass records at once (acked ones are forgotten):
/// about 17 million IPv4 flows, or some 650 MB of records (each kept in
/// a buffer of its own, of at most 1,208 bytes). One more overflows the
/// pass: it is then acked whole, and its segments are dropped.
pub const MAX_PASS_SEGMENTS: usize = 1 << 19;

/// Which of the peer's messages (of one life of it) arrived.
#[derive(Debug, Clone)]
pub struct Received {
    /// The peer's life tracked (its nonce; 0: none).
    peer: u32,
    /// (`from`, `cum`, `top`): tracked from `from`, every one through
    /// `cum` arrived, `top` the furthest that arrived. `None`: nothing
    /// arrived yet.
    span: Option<(u32, u32, u32)>,
    /// Bit `s % WINDOW`: message `s` in (`cum`, `cum + WINDOW`] arrived.
    bits: Box<[u64; WORDS]>,
}

impl Default for Received {
    fn default() -> Self {
        Received {
            peer: 0,
            span: None,
            bits: Box::new([0; WORDS]),
        }
    }
}

impl Received {
    /// Starts over for the peer's life `peer` (a restart: its numbering
    /// begins again).
    pub fn reset(&mut self, peer: u32) {
        self.peer = peer;
        self.span = None;
        self.bits.fill(0);
    }

    /// The peer's life as its status says: the first one heard is taken
    /// for the life of what arrived before it; another one starts over.
    pub fn life(&mut self, peer: u32) {
        if self.peer == 0 {
            self.peer = peer;
        } else if self.peer != peer {
            self.reset(peer);
        }
    }

    /// The peer's life tracked.
    pub fn peer(&self) -> u32 {
        self.peer
    }

    fn bit(&self, s: u32) -> bool {
        let i = s % WINDOW;
        self.bits[(i / 64) as usize] & (1 << (i % 64)) != 0
    }

    fn set(&mut self, s: u32, on: bool) {
        let i = s % WINDOW;
        let w = &mut self.bits[(i / 64) as usize];
        if on {
            *w |= 1 << (i % 64);
        } else {
            *w &= !(1 << (i % 64));
        }
    }

    /// Moves `cum` on to `to` (after it), forgetting what was between:
    /// tracking starts again at `to + 1` (what was missing there is
    /// before `from` now: not said to have arrived).
    fn forget_through(&mut self, cum: u32, to: u32) {
        let d = to.wrapping_sub(cum);
        if d >= WINDOW {
            self.bits.fill(0);
        } else {
            for k in 1..=d {
                self.set(cum.wrapping_add(k), false);
            }
        }
    }

    /// Walks `cum` on over what arrived.
    fn advance(&mut self, mut cum: u32) -> u32 {
        while self.bit(cum.wrapping_add(1)) {
            cum = cum.wrapping_add(1);
            self.set(cum, false);
        }
        cum
    }

    /// Message `seq` of the tracked life arrived whole.
    pub fn arrived(&mut self, seq: u32) {
        let Some((from, cum, top)) = self.span else {
            self.span = Some((seq, seq, seq));
            return;
        };
        let d = match seq_after(cum, seq) {
            Some(d) if d >= 1 => d,
            _ => return, // through `cum` already, or before it
        };
        let (mut from, mut cum) = (from, cum);
        if d > WINDOW {
            let to = seq.wrapping_sub(WINDOW);
            self.forget_through(cum, to);
            (from, cum) = (to.wrapping_add(1), to);
        }
        self.set(seq, true);
        let top = if seq_after(top, seq).is_some() {
            seq
        } else {
            top
        };
        let top = if seq_after(cum, top).is_some() {
            top
        } else {
            seq
        };
        let cum = self.advance(cum);
        self.span = Some((from, cum, top));
    }

    /// The peer wants none of its messages before `floor` any more: the
    /// gaps before it are forgotten (tracking starts at `floor` if it is
    /// past `cum + 1`). A floor that is not further on changes nothing; a
    /// false one only makes the peer send again what it still wanted.
    pub fn floor(&mut self, floor: u32) {
        let Some((_, cum, top)) = self.span else {
            return;
        };
        let to = floor.wrapping_sub(1);
        match seq_after(cum, to) {
            Some(d) if d >= 1 => {}
            _ => return,
        }
        self.forget_through(cum, to);
        let cum = self.advance(to);
        let top = if seq_after(cum, top).is_some() {
            top
        } else {
            cum
        };
        self.span = Some((floor, cum, top));
    }

    /// The acks to send: from `nonce` (this box's life), with its own
    /// `floor`, of the tracked life (none, `peer` 0, when nothing of it
    /// arrived yet). As many gaps as fit; `until` says how far they go.
    pub fn acks(&self, nonce: u32, floor: u32) -> Acks {
        let Some((from, cum, top)) = self.span else {
            return Acks::new(nonce, 0, floor, 1, 0);
        };
        let mut a = Acks::new(nonce, self.peer, floor, from, cum);
        let span = seq_after(cum, top).unwrap_or(0).min(WINDOW);
        let mut gap: Option<Gap> = None;
        for k in 1..=span {
            let s = cum.wrapping_add(k);
            if self.bit(s) {
                if let Some(g) = gap.take() {
                    if !a.push_gap(g) {
                        return a;
                    }
                }
                a.set_until(s);
            } else {
                match gap.as_mut() {
                    Some(g) if g.len < u16::MAX => g.len += 1,
                    _ => {
                        if let Some(g) = gap.replace(Gap { first: s, len: 1 }) {
                            if !a.push_gap(g) {
                                return a;
                            }
                        }
                    }
                }
            }
        }
        // The messages past the last that arrived are not said (`top`
        // arrived, so a gap is always followed by one that did).
        a
    }
}

/// One segment of a pass: a message's records, as sent.
#[derive(Debug, Clone)]
struct Segment {
    /// The sequence number it went out with last, and first.
    seq: u32,
    orig: u32,
    count: u16,
    records: Box<[u8]>,
    /// An ack said it is missing: to be sent again.
    due: bool,
    /// Every record of it was superseded: nothing to send again.
    superseded: bool,
    /// Recorded before every record of the pass went out: the pass is
    /// through only once it is acked.
    in_pass: bool,
    /// A record of an earlier segment was left out of its resend because
    /// this one carried a newer one: the pass is through only once this
    /// one is acked too (found in review: a live change after the pass,
    /// not tracked, was lost, and the pass was through while the peer
    /// never had the flow).
    needed: bool,
}

/// A pass of this box's, by segment: what was sent and not yet acked.
#[derive(Debug, Clone)]
pub struct PassSegments {
    /// The pass (its number in the status).
    pub pass: u32,
    /// The sequence number before the pass's first message: every
    /// segment's is after it.
    base: u32,
    segments: Vec<Segment>,
    /// Every record of the pass went out. Flows messages sent after it
    /// are still recorded until the pass is through: a resend may leave
    /// a record out because one of them superseded it.
    sent: bool,
    /// More than [`MAX_PASS_SEGMENTS`] segments, or [`MAX_NOTED`] flows,
    /// at once: the pass cannot be finished by segment.
    overflowed: bool,
    due: usize,
    /// Per flow (its key, hashed with `keys`) of the segments not acked
    /// yet: the message (its first sequence number) that carried its
    /// newest record, and how many of those segments carry it (at 0 the
    /// entry goes). A segment sent again leaves out the records of its
    /// flows that a later message carried (found in review: a segment
    /// sent again after the flow changed or ended set the peer's entry
    /// back, a SYN-sent one to expire there while the connection lived),
    /// and that message is then waited for ([`Segment::needed`]).
    latest: HashMap<u64, (u32, u32)>,
    keys: RandomState,
    /// The first gap the peer's last acks named, until the floor is past
    /// it or nothing is due (see [`Self::floor_wanted`]).
    named: Option<u32>,
}

impl PassSegments {
    /// Pass `pass`, begun after message `base`.
    pub fn new(pass: u32, base: u32) -> PassSegments {
        PassSegments {
            pass,
            base,
            segments: Vec::new(),
            sent: false,
            overflowed: false,
            due: 0,
            latest: HashMap::new(),
            keys: RandomState::new(),
            named: None,
        }
    }

    fn key(keys: &RandomState, r: &FlowRecord) -> u64 {
        keys.hash_one((r.proto, r.client, r.client_port, r.vip, r.vip_port))
    }

    /// Record `r` went out in message `seq` (a first sending, not a
    /// resend), which is then [`Self::record`]ed: it is its flow's
    /// newest, until another one's note. At most [`MAX_NOTED`] flows are
    /// remembered at once; one more overflows the pass (found in review:
    /// beyond, a segment sent again brought back a flow that ended).
    pub fn note(&mut self, r: &FlowRecord, seq: u32) {
        let k = Self::key(&self.keys, r);
        if let Some(e) = self.latest.get_mut(&k) {
            *e = (seq, e.1.saturating_add(1));
        } else if self.latest.len() < MAX_NOTED {
            self.latest.insert(k, (seq, 1));
        } else {
            self.overflowed = true;
        }
    }

    /// The notes of a segment that is acked (or has nothing left to
    /// send): its flows are one segment less.
    fn forget(latest: &mut HashMap<u64, (u32, u32)>, keys: &RandomState, s: &Segment) {
        for r in records_of(s.count, &s.records).filter_map(Result::ok) {
            let k = Self::key(keys, &r);
            if let Some(e) = latest.get_mut(&k) {
                e.1 = e.1.saturating_sub(1);
                if e.1 == 0 {
                    latest.remove(&k);
                }
            }
        }
    }

    /// A flows message sent (or lost sending it) while the pass is not
    /// through: a segment of it, kept until acked.
    pub fn record(&mut self, seq: u32, count: u16, records: &[u8]) {
        if records.len() > MAX_RECORDS_END || self.segments.len() >= MAX_PASS_SEGMENTS {
            self.overflowed = true;
            return;
        }
        self.segments.push(Segment {
            seq,
            orig: seq,
            count,
            records: records.into(),
            due: false,
            superseded: false,
            in_pass: !self.sent,
            needed: false,
        });
    }

    /// Every record of the pass went out.
    pub fn all_sent(&mut self) {
        self.sent = true;
    }

    pub fn is_sent(&self) -> bool {
        self.sent
    }

    /// More segments (or flows) than recorded: the pass is to be acked
    /// whole.
    pub fn overflowed(&self) -> bool {
        self.overflowed
    }

    /// Every segment of the pass went out and was acked, and every later
    /// message whose records a resend counted on: the pass arrived whole.
    /// Other messages sent since (live changes) need not be acked.
    pub fn is_through(&self) -> bool {
        self.sent && !self.overflowed && !self.segments.iter().any(|s| s.in_pass || s.needed)
    }

    /// Segments (and later messages) not acked yet.
    pub fn unacked(&self) -> usize {
        self.segments.len()
    }

    /// The sequence numbers of the segments not acked yet.
    pub fn unacked_seqs(&self) -> impl Iterator<Item = u32> + '_ {
        self.segments.iter().map(|s| s.seq)
    }

    /// Segments an ack said are missing, not yet sent again.
    pub fn due(&self) -> usize {
        self.due
    }

    /// The first message of this pass's still wanted (`next`, the next
    /// sequence number, when none is).
    pub fn floor(&self, next: u32) -> u32 {
        self.segments
            .iter()
            .map(|s| s.seq.wrapping_sub(self.base))
            .min()
            .map_or(next, |d| self.base.wrapping_add(d))
    }

    /// Whether the peer is to be sent the floor now (`next`: the next
    /// sequence number): its last acks named a gap before it, a message
    /// this box no longer wants (its segment went again under a new
    /// number, was acked or superseded since, or it was no segment). An
    /// acks message names at most [`MAX_GAPS`](crate::wire::sync::MAX_GAPS)
    /// gaps, and the peer keeps each until the floor comes: found in
    /// review, with the floor once an interval, at 2 % loss a big pass's
    /// acks filled with such gaps, nothing after them was acked, and the
    /// notes overflowed. Asked after every resend (and a lost floor is
    /// asked for again by the next acks, which still name the gap); true
    /// once per such acks. While the gap is still wanted it is kept only
    /// as long as something is due (a resend may pass it): the floor is
    /// computed over every segment, as a resend goes over them.
    pub fn floor_wanted(&mut self, next: u32) -> bool {
        let Some(g) = self.named else {
            return false;
        };
        if seq_after(g, self.floor(next)).is_some_and(|d| d >= 1) {
            self.named = None;
            return true;
        }
        if self.due == 0 {
            self.named = None;
        }
        false
    }

    /// Takes the peer's acks: each segment they say arrived is forgotten,
    /// each they say is missing is due again. Ignored whole (0) unless
    /// they are of this box's life `own` and speak of nothing past `last`,
    /// the last message this box sent. Returns the segments acked.
    pub fn take_acks(&mut self, a: &Acks, own: u32, last: u32) -> usize {
        if a.peer != own || own == 0 {
            return 0;
        }
        // Past the last sent (or before the pass, by 2^31): not a word of
        // this life's.
        if seq_after(a.until, last).is_none() {
            return 0;
        }
        let before = self.segments.len();
        let mut due = 0;
        let (segments, latest, keys) = (&mut self.segments, &mut self.latest, &self.keys);
        segments.retain_mut(|s| match a.arrived(s.seq) {
            Some(true) => {
                Self::forget(latest, keys, s);
                false
            }
            Some(false) => {
                s.due = true;
                due += 1;
                true
            }
            None => {
                due += usize::from(s.due);
                true
            }
        });
        self.due = due;
        self.named = a.gaps().first().map(|g| g.first);
        before - self.segments.len()
    }

    /// Sends the due segments again, at most `max`, each as a new message
    /// whose sequence number `send` returns; `send` gets the segment's
    /// records but those of flows a later message carried (their newest
    /// went since: those messages are then waited for, see
    /// [`Self::is_through`]). A segment with none left is done, nothing
    /// is sent for it. An overflowed pass sends nothing again (it is
    /// acked whole). Returns how many messages went.
    pub fn resend(&mut self, max: usize, mut send: impl FnMut(&[FlowRecord]) -> u32) -> usize {
        if self.overflowed {
            return 0;
        }
        let (mut n, mut done, mut tried) = (0, 0, 0);
        let mut kept = Vec::new();
        let mut needed = HashSet::new();
        let (segments, latest, keys) = (&mut self.segments, &self.latest, &self.keys);
        for s in segments.iter_mut().filter(|s| s.due) {
            if n >= max {
                break;
            }
            tried += 1;
            s.due = false;
            kept.clear();
            for r in records_of(s.count, &s.records).filter_map(Result::ok) {
                match latest.get(&Self::key(keys, &r)) {
                    // Every flow of a segment is noted (else the pass
                    // overflowed); a later message carried this one's.
                    Some(&(o, _)) if o != s.orig => {
                        needed.insert(o);
                    }
                    _ => kept.push(r),
                }
            }
            if kept.is_empty() {
                s.superseded = true;
                done += 1;
                continue;
            }
            s.seq = send(&kept);
            n += 1;
        }
        if !needed.is_empty() {
            // Not found: acked already (or itself superseded, and what
            // superseded it marked in turn).
            for s in segments.iter_mut().filter(|s| needed.contains(&s.orig)) {
                s.needed = true;
            }
        }
        if done > 0 {
            segments.retain(|s| {
                if s.superseded {
                    Self::forget(&mut self.latest, keys, s);
                }
                !s.superseded
            });
        }
        self.due -= tried;
        n
    }
}

#[cfg(test)]
mod tests;
