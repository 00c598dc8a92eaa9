//! Connection-sync messages (`[sync]`): what a primary appliance tells its
//! backup about its flows, so that the backup carries them on after a
//! takeover with the same real and the same translation. One UDP datagram
//! is one message: a fixed header, then a batch of flow records.
//!
//! Nothing in a record is a local id: service and real ids differ between
//! boxes, so a record names the service by (protocol, VIP, port) and the
//! real by (address, port, forwarding method), which both configurations
//! agree on. Every length is checked before anything is read, every field
//! value is checked on parse (a record either parses whole or ends its
//! batch with a [`Refused`] reason), and an emitted record parses back to
//! itself and re-emits byte for byte.
//!
//! ```text
//! Header (16 bytes, big-endian):
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-------------------------------------------------------------+
//! |                   magic 0x4c425359 ("LBSY")                 |
//! +---------------+---------------+-----------------------------+
//! |  version = 1  | type 1 flows, |     count (records; gaps    |
//! |               |  2 status,    |     of an acks message)     |
//! |               |  3 acks       |                             |
//! +---------------+---------------+-----------------------------+
//! |  length (header + records)    |  flags (the sender's role)  |
//! +-------------------------------+-----------------------------+
//! |                 sequence (per sender, +1 a message)         |
//! +-------------------------------------------------------------+
//!
//! Record (A = 4 or 16: the flow's family; R = 4 or 16: the real's):
//!  off      size  field
//!  0        1     op: 1 = update (created or changed), 2 = removed
//!  1        1     record length in bytes (op and this byte included)
//!  2        1     flow family: 4 or 6 (client and VIP)
//!  3        1     protocol: 6 (TCP) or 17 (UDP)
//!  4        2     client port
//!  6        2     VIP port
//!  8        A     client address
//!  8+A      A     VIP address                  -- a removal ends here
//!  8+2A     1     real family: 4 or 6 (6 under a 4 flow: 4in6, tun only)
//!  9+2A     1     method: 1 nat, 2 tun, 3 dr
//!  10+2A    2     real port
//!  12+2A    1     TCP state: 0 SYN sent, 1 established, 2 FIN wait
//!                 (begun by the real's FIN, or not known), 3 closed,
//!                 4 datagram (UDP), 5 FIN wait begun by the client's FIN
//!  13+2A    1     trust on the sender: 0 unconfirmed, 1 one-way,
//!                 2 confirmed
//!  14+2A    1     SYN proxy flags: 1 proxied, 2 timestamps, 4 client
//!                 window scale, 8 real window scale; 0 for a flow the
//!                 proxy did not answer. Or 16 alone: a TUN or DR TCP
//!                 flow past its handshake whose client is placed (the
//!                 two fields at 16+2A say where, see below)
//!  15+2A    1     SYN proxy window scales: client's (high nibble),
//!                 real's (low)
//!  16+2A    4     SYN proxy sequence offset (real's ISN - cookie); with
//!                 flag 16, the client's next sequence number
//!  20+2A    4     SYN proxy timestamp offset; with flag 16, the client's
//!                 last acknowledgment number believed
//!  24+2A    R     real address
//! ```
//!
//! Flag 16 ([`ClientSeq`]) goes only to a peer that says
//! [`flags::CLIENT_SEQ`] (a version before it refuses the record as
//! `bad_record`); without it a TUN or DR flow's client is not placed on
//! the receiver, which then believes none of its FINs and RSTs (the flow
//! ends by its timeout).
//!
//! Keyed messages (`[sync] key_file`; the header's [`flags::AUTH`]) carry
//! a trailer right after the `length` bytes, which the length does not
//! count (a receiver without a key steps over it, as versions before it
//! did):
//!
//! ```text
//!  off  size  field
//!  0    8     counter: the sender's clock, microseconds since the Unix
//!             epoch, greater in every message than in the one before
//!  8    16    tag: HMAC-SHA256 over the message's `length` bytes and the
//!             counter, keyed with the pair's key, its first 16 bytes
//! ```
//!
//! Lengths: a removal 16 (IPv4) or 40 (IPv6) bytes; an update 36 (IPv4),
//! 48 (4in6) or 72 (IPv6). Type 2 is a [`Status`] (the heartbeat, sent
//! every interval after the interval's flow messages; with
//! [`flags::GOODBYE`], one of the last few of an appliance that stops
//! cleanly). The flags say where the sender stands in the election of
//! the active appliance ([`flags`], `sync::election`); a receiver ignores
//! the bits it does not know, so later ones need no new version.
//!
//! Type 3 is an [`Acks`] (sent only to a peer that says
//! [`flags::SEGMENTS`]): which of the peer's messages arrived, so that a
//! bulk pass is acknowledged datagram by datagram and only the lost ones
//! are sent again (`lb_core::sync::segments`).

use core::ops::Range;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use lb_config::ForwardingMethod;

use super::{read_u16, read_u32, write_u16, write_u32, Error, IpProtocol, Result};
use crate::flow::{FlowState, Trust};
use crate::sync::Refused;

mod field {
    use super::Range;

    pub const MAGIC: Range<usize> = 0..4;
    pub const VERSION: usize = 4;
    pub const KIND: usize = 5;
    pub const COUNT: Range<usize> = 6..8;
    pub const LENGTH: Range<usize> = 8..10;
    pub const FLAGS: Range<usize> = 10..12;
    pub const SEQUENCE: Range<usize> = 12..16;
}

/// The header's flag bits: what the sender says of itself.
pub mod flags {
    /// The sender is the active appliance (it holds the floating gateway).
    pub const ACTIVE: u16 = 1;
    /// The sender, a primary on standby, asks the active backup to hand
    /// its flows over and step down. With [`ACTIVE`]: a primary that took
    /// over by silence while it asked for the gateway back, and still
    /// holds none of the backup's flows; it goes back to standby when it
    /// hears the backup active, and a backup hearing it keeps the gateway
    /// (for `dead_after` at most) instead of stepping down at once
    /// (`sync::election`). A receiver of a version before that reads it
    /// as a plain active primary, as before.
    pub const TAKEBACK: u16 = 2;
    /// The sender's configured role is primary.
    pub const PRIMARY: u16 = 4;
    /// The sender reads records of proxied NAT66 flows (an IPv6 flow with
    /// SYN proxy state; versions before the SYN proxy covered IPv6 refuse
    /// such a record as `bad_record`, and with it the rest of its message,
    /// which later versions step over): a sender holds them back from a
    /// peer that does not say this.
    pub const PROXY6: u16 = 8;
    /// The message is keyed: an [`AUTH_LEN`](super::AUTH_LEN)-byte trailer
    /// (counter and tag) follows its `length` bytes. The flag is under the
    /// tag, so it cannot be taken off to pass a keyed message for an
    /// unkeyed one.
    pub const AUTH: u16 = 16;
    /// On a `Status` only: the sender is stopping cleanly and this is one
    /// of its last messages (it sends a few, datagrams get lost), as
    /// keepalived's VRRP priority-0 advertisement. [`ACTIVE`] then says
    /// the sender was active until now and has let the floating gateway
    /// go: its peer takes over at once instead of `dead_after` later.
    /// Like every bit, under the tag of a keyed message; a receiver that
    /// does not know it takes such a status for a heartbeat (and takes
    /// over `dead_after` after the last one, as before). Ignored on a
    /// `Flows` message.
    pub const GOODBYE: u16 = 32;
    /// The sender acknowledges bulk passes by segment: it sends [`Acks`]
    /// (type 3, `super::MessageKind::Acks`) of the messages it got, and
    /// sends again only the segments of its own passes that the peer's
    /// acks say are missing. A pass of a sender that says this is through
    /// (`Status::passed`) only once every segment was acknowledged
    /// (unless its status says [`WHOLE_PASS`]); a peer that does not
    /// say it gets no acks (a version before them refuses type 3 as
    /// `unknown_type`) and passes acked whole, as before.
    pub const SEGMENTS: u16 = 64;
    /// In a status of a sender that says [`SEGMENTS`]: its pass (the
    /// status's `pass`) is acked whole, not by segment (it was too big to
    /// track, or its peer went silent or stopped saying [`SEGMENTS`]), so
    /// the receiver judges it by what was lost, as a pass of a sender
    /// before segments.
    pub const WHOLE_PASS: u16 = 128;
    /// The sender reads where a TUN or DR flow's client stands in its
    /// records ([`ClientSeq`](super::ClientSeq), record flag 16): a sender
    /// leaves it out of its records to a peer that does not say this (a
    /// version before it refuses such a record as `bad_record`, and marks
    /// the message damaged; versions before records were stepped over
    /// drop the rest of the message too).
    pub const CLIENT_SEQ: u16 = 256;
}

/// Length of the message header.
pub const HEADER_LEN: usize = field::SEQUENCE.end;

/// "LBSY".
pub const MAGIC: u32 = 0x4c42_5359;

/// The format version this code reads and writes.
pub const VERSION: u8 = 1;

/// The longest message a sender builds: 1280 (the IPv6 minimum MTU) less
/// IPv6 and UDP headers, so that no path fragments it.
pub const MAX_MESSAGE_LEN: usize = 1232;

/// The length of a keyed message's trailer: an 8-byte counter and a
/// 16-byte tag.
pub const AUTH_LEN: usize = 24;

/// The length of the tag in a keyed message's trailer: 128 bits of
/// HMAC-SHA256, as IPsec's HMAC-SHA-256-128 keeps.
pub const TAG_LEN: usize = 16;

/// Where the records of a message must end, so that a trailer still fits
/// [`MAX_MESSAGE_LEN`] (kept free whether or not the sender has a key).
pub const MAX_RECORDS_END: usize = MAX_MESSAGE_LEN - AUTH_LEN;

/// The longest record (an IPv6 update).
pub const MAX_RECORD_LEN: usize = 72;

/// The shortest length byte a receiver steps over when it refuses a
/// record: the four bytes every record starts with (kind, length, family,
/// protocol). A smaller one cannot be a record's, and ends its batch.
pub const MIN_RECORD_LEN: usize = 4;

/// What a message carries (an open enum: a newer sender's types are
/// refused by name, not misread).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageKind {
    /// A batch of flow records.
    Flows,
    /// Where the sender stands: [`Status`], every interval (the
    /// heartbeat).
    Status,
    /// Which of the peer's messages arrived: [`Acks`].
    Acks,
    Unknown(u8),
}

impl From<u8> for MessageKind {
    fn from(v: u8) -> Self {
        match v {
            1 => MessageKind::Flows,
            2 => MessageKind::Status,
            3 => MessageKind::Acks,
            v => MessageKind::Unknown(v),
        }
    }
}

impl From<MessageKind> for u8 {
    fn from(k: MessageKind) -> u8 {
        match k {
            MessageKind::Flows => 1,
            MessageKind::Status => 2,
            MessageKind::Acks => 3,
            MessageKind::Unknown(v) => v,
        }
    }
}

/// A read/write view of a sync message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> SyncPacket<T> {
    /// Wraps `buffer` without checking it; accessors may panic.
    pub const fn new_unchecked(buffer: T) -> SyncPacket<T> {
        SyncPacket { buffer }
    }

    /// Wraps `buffer` after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<SyncPacket<T>> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// `Truncated` if the buffer is shorter than the header or than the
    /// length field; `Malformed` if the length field is below the header.
    /// Bytes past the length field are ignored.
    pub fn check_len(&self) -> Result<()> {
        let n = self.buffer.as_ref().len();
        if n < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let len = usize::from(self.len());
        if len < HEADER_LEN {
            return Err(Error::Malformed);
        }
        if len > n {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    pub fn magic(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::MAGIC.start)
    }

    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VERSION]
    }

    #[inline]
    pub fn kind(&self) -> MessageKind {
        self.buffer.as_ref()[field::KIND].into()
    }

    /// How many records follow.
    #[inline]
    pub fn count(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::COUNT.start)
    }

    /// The length field: header and records.
    #[inline]
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::LENGTH.start)
    }

    #[inline]
    pub fn flags(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::FLAGS.start)
    }

    #[inline]
    pub fn sequence(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::SEQUENCE.start)
    }

    /// A keyed message's trailer, the bytes right after `len`: the counter
    /// and the tag. `None` when the buffer does not end exactly there
    /// (no trailer, a short one, or bytes after it).
    pub fn trailer(&self) -> Option<(u64, [u8; TAG_LEN])> {
        let b = self.buffer.as_ref();
        let at = usize::from(self.len());
        if b.len() != at + AUTH_LEN {
            return None;
        }
        let mut c = [0u8; 8];
        c.copy_from_slice(&b[at..at + 8]);
        let counter = u64::from_be_bytes(c);
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&b[at + 8..at + AUTH_LEN]);
        Some((counter, tag))
    }

    /// The bytes a keyed message's tag covers: the message (`0..len`),
    /// flags included.
    pub fn signed(&self) -> &[u8] {
        &self.buffer.as_ref()[..usize::from(self.len())]
    }

    /// The records' bytes: `HEADER_LEN..len`.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..usize::from(self.len())]
    }

    /// The records, each parsed whole or refused with an `Err`. A refused
    /// record of a kind this version does not know, or of a known kind
    /// whose length byte is right but a field out of range, is stepped
    /// over ([`FlowRecord::step_len`]), so one bad or newer record does
    /// not cost the ones after it. The batch ends with an `Err` (the last
    /// item then) for any other refused record (a wrong length, an unknown
    /// family: stepping would be a guess), one that runs past the message,
    /// fewer records than `count` (`Truncated`), or bytes left after
    /// `count` (`BadLength`).
    pub fn records(&self) -> Records<'_> {
        Records {
            data: self.payload(),
            left: self.count(),
            done: false,
        }
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> SyncPacket<T> {
    #[inline]
    pub fn set_magic(&mut self, v: u32) {
        write_u32(self.buffer.as_mut(), field::MAGIC.start, v)
    }

    #[inline]
    pub fn set_version(&mut self, v: u8) {
        self.buffer.as_mut()[field::VERSION] = v
    }

    #[inline]
    pub fn set_kind(&mut self, k: MessageKind) {
        self.buffer.as_mut()[field::KIND] = k.into()
    }

    #[inline]
    pub fn set_count(&mut self, v: u16) {
        write_u16(self.buffer.as_mut(), field::COUNT.start, v)
    }

    #[inline]
    pub fn set_len(&mut self, v: u16) {
        write_u16(self.buffer.as_mut(), field::LENGTH.start, v)
    }

    #[inline]
    pub fn set_flags(&mut self, v: u16) {
        write_u16(self.buffer.as_mut(), field::FLAGS.start, v)
    }

    #[inline]
    pub fn set_sequence(&mut self, v: u32) {
        write_u32(self.buffer.as_mut(), field::SEQUENCE.start, v)
    }

    /// Writes a keyed message's trailer right after its `len` bytes (the
    /// buffer must reach that far: `len + AUTH_LEN` bytes).
    pub fn set_trailer(&mut self, counter: u64, tag: &[u8; TAG_LEN]) {
        let at = usize::from(self.len());
        let b = self.buffer.as_mut();
        b[at..at + 8].copy_from_slice(&counter_bytes(counter));
        b[at + 8..at + AUTH_LEN].copy_from_slice(tag);
    }
}

/// A keyed message's counter as its trailer carries it, which is also how
/// the tag covers it.
#[inline]
pub fn counter_bytes(counter: u64) -> [u8; 8] {
    counter.to_be_bytes()
}

/// A message header, checked: ours (magic), a version we read, a type we
/// know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SyncHeader {
    pub kind: MessageKind,
    pub count: u16,
    pub flags: u16,
    pub sequence: u32,
}

impl SyncHeader {
    /// Checks the header of a datagram `bytes` and returns it with its
    /// view: `Truncated`, `BadLength` (a length field below the header),
    /// `BadMagic`, `BadVersion`, `UnknownType`.
    pub fn parse(bytes: &[u8]) -> core::result::Result<(SyncHeader, SyncPacket<&[u8]>), Refused> {
        let p = SyncPacket::new_checked(bytes).map_err(|e| match e {
            Error::Truncated => Refused::Truncated,
            Error::Malformed => Refused::BadLength,
        })?;
        if p.magic() != MAGIC {
            return Err(Refused::BadMagic);
        }
        if p.version() != VERSION {
            return Err(Refused::BadVersion);
        }
        if let MessageKind::Unknown(_) = p.kind() {
            return Err(Refused::UnknownType);
        }
        let h = SyncHeader {
            kind: p.kind(),
            count: p.count(),
            flags: p.flags(),
            sequence: p.sequence(),
        };
        Ok((h, p))
    }
}

/// The body of a `Status` message (type 2, no records, 20 bytes after
/// the header, big-endian): what the sender tells of itself beside the
/// header's flags, so that the two appliances agree on whether a bulk pass
/// (every flow one holds, sent to the other) arrived whole.
///
/// ```text
///  off  size  field
///  0    4     nonce: random, not 0, fixed for the sender's life (a new
///             one: the peer restarted, whatever the time between)
///  4    4     pass: the bulk pass the sender is sending or sent last (0: none)
///  8    4     passed: the last pass of which every record was sent
///  12   4     acked: the receiver's pass that arrived here whole
///  16   4     nacked: the receiver's pass that arrived here damaged
///             (a message lost, or a record with no room): send another
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Status {
    pub nonce: u32,
    pub pass: u32,
    pub passed: u32,
    pub acked: u32,
    pub nacked: u32,
}

/// The length of a `Status` body.
pub const STATUS_LEN: usize = 20;

impl Status {
    /// The status a checked `Status` message carries: `BadLength` unless
    /// it has no records and exactly [`STATUS_LEN`] bytes after the
    /// header, `BadRecord` for a nonce of 0.
    pub fn parse(p: &SyncPacket<&[u8]>) -> core::result::Result<Status, Refused> {
        let b = p.payload();
        if p.count() != 0 || b.len() != STATUS_LEN {
            return Err(Refused::BadLength);
        }
        let s = Status {
            nonce: read_u32(b, 0),
            pass: read_u32(b, 4),
            passed: read_u32(b, 8),
            acked: read_u32(b, 12),
            nacked: read_u32(b, 16),
        };
        if s.nonce == 0 {
            return Err(Refused::BadRecord);
        }
        Ok(s)
    }

    /// Writes a whole `Status` message with `sequence` and `flags` into
    /// `buf`; returns its length (`HEADER_LEN + STATUS_LEN`).
    pub fn emit(&self, buf: &mut [u8], sequence: u32, flags: u16) -> usize {
        let len = HEADER_LEN + STATUS_LEN;
        let mut p = SyncPacket::new_unchecked(&mut buf[..len]);
        p.set_magic(MAGIC);
        p.set_version(VERSION);
        p.set_kind(MessageKind::Status);
        p.set_count(0);
        p.set_len(len as u16);
        p.set_flags(flags);
        p.set_sequence(sequence);
        let b = &mut buf[HEADER_LEN..len];
        write_u32(b, 0, self.nonce);
        write_u32(b, 4, self.pass);
        write_u32(b, 8, self.passed);
        write_u32(b, 12, self.acked);
        write_u32(b, 16, self.nacked);
        len
    }
}

/// The body of an `Acks` message (type 3, big-endian): which of the
/// peer's messages (by their sequence numbers, in the peer's life
/// `peer`) arrived here, and from where the sender's own may be
/// forgotten. `count` is the number of gaps.
///
/// ```text
///  off  size  field
///  0    4     nonce: the sender's own (as its status's; not 0)
///  4    4     peer: the life of the peer whose messages are acked (the
///             nonce of its status; 0: none heard)
///  8    4     floor: the first message of the sender's still wanted by
///             it (a gap before it need not be reported any more)
///  12   4     from: the first of the peer's messages tracked here
///  16   4     cum: every message from `from` through `cum` arrived
///             (`from - 1`: none yet)
///  20   4     until: the gaps below are every message missing in
///             (`cum`, `until`]; what is past `until` is not said
///  24   6n    gaps: first (4), length (2, at least 1), in order, not
///             overlapping, within (`cum`, `until`]
/// ```
///
/// Everything is checked on parse; the sequence arithmetic wraps, and a
/// span (`from` to `until`) of 2^31 or more is refused.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Acks {
    pub nonce: u32,
    pub peer: u32,
    pub floor: u32,
    pub from: u32,
    pub cum: u32,
    pub until: u32,
    gaps: [Gap; MAX_GAPS],
    count: u8,
}

impl core::fmt::Debug for Acks {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Acks")
            .field("nonce", &self.nonce)
            .field("peer", &self.peer)
            .field("floor", &self.floor)
            .field("from", &self.from)
            .field("cum", &self.cum)
            .field("until", &self.until)
            .field("gaps", &self.gaps())
            .finish()
    }
}

/// Messages `first` to `first + len - 1` did not arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Gap {
    pub first: u32,
    pub len: u16,
}

impl Gap {
    /// The last message of the gap.
    pub fn last(&self) -> u32 {
        self.first
            .wrapping_add(u32::from(self.len).saturating_sub(1))
    }
}

/// The most gaps an `Acks` carries (it then says less with `until`).
pub const MAX_GAPS: usize = 128;

/// The length of an `Acks` body without its gaps.
pub const ACKS_LEN: usize = 24;

/// The length of a gap in an `Acks` body.
pub const GAP_LEN: usize = 6;

/// Where `x` stands after `base`, in wrapping sequence arithmetic: `None`
/// when it is before it (2^31 or more after).
#[inline]
pub fn seq_after(base: u32, x: u32) -> Option<u32> {
    let d = x.wrapping_sub(base);
    (d < 1 << 31).then_some(d)
}

impl Acks {
    /// Acks with no gap: `from..=cum` arrived, and nothing is said past
    /// `cum` (`until` = `cum`).
    pub fn new(nonce: u32, peer: u32, floor: u32, from: u32, cum: u32) -> Acks {
        Acks {
            nonce,
            peer,
            floor,
            from,
            cum,
            until: cum,
            gaps: [Gap::default(); MAX_GAPS],
            count: 0,
        }
    }

    /// The gaps, in order.
    pub fn gaps(&self) -> &[Gap] {
        &self.gaps[..usize::from(self.count)]
    }

    /// Adds a gap after the last one (and after `cum`), and moves `until`
    /// to its end; false (nothing added) when it is full, empty, or not
    /// after the last one.
    pub fn push_gap(&mut self, g: Gap) -> bool {
        let after = self.gaps().last().map_or(self.cum, Gap::last);
        let ok = usize::from(self.count) < MAX_GAPS
            && g.len > 0
            && seq_after(after, g.first).is_some_and(|d| d >= 1)
            && seq_after(self.from.wrapping_sub(1), g.last())
                .is_some_and(|d| d > self.cum.wrapping_sub(self.from.wrapping_sub(1)));
        if ok {
            self.gaps[usize::from(self.count)] = g;
            self.count += 1;
            self.until = g.last();
        }
        ok
    }

    /// Says that the messages after the last gap through `until` all
    /// arrived (`until` at or past the last gap's end and `cum`).
    pub fn set_until(&mut self, until: u32) {
        let after = self.gaps().last().map_or(self.cum, Gap::last);
        if seq_after(after, until).is_some() {
            self.until = until;
        }
    }

    /// What the acks say of message `seq`: `Some(true)` it arrived,
    /// `Some(false)` it did not (a gap, or before `from`: never tracked),
    /// `None` not said (past `until`).
    pub fn arrived(&self, seq: u32) -> Option<bool> {
        let before = self.from.wrapping_sub(1);
        let at = match seq_after(before, seq) {
            Some(d) if d >= 1 => d,
            _ => return Some(false),
        };
        if at <= self.cum.wrapping_sub(before) {
            return Some(true);
        }
        if at > self.until.wrapping_sub(before) {
            return None;
        }
        let gaps = self.gaps();
        // The gaps are in order: the last one starting at or before seq.
        let i = gaps.partition_point(|g| g.first.wrapping_sub(before) <= at);
        let in_gap = i > 0 && gaps[i - 1].last().wrapping_sub(before) >= at;
        Some(!in_gap)
    }

    /// The acks of a checked `Acks` message: `BadLength` unless its body
    /// is [`ACKS_LEN`] and `count` gaps of [`GAP_LEN`], at most
    /// [`MAX_GAPS`]; `BadRecord` for a nonce of 0, a span of 2^31 or
    /// more, `cum` before `from - 1` or past `until`, or a gap empty, out
    /// of order, overlapping or outside (`cum`, `until`].
    pub fn parse(p: &SyncPacket<&[u8]>) -> core::result::Result<Acks, Refused> {
        let b = p.payload();
        let n = usize::from(p.count());
        if n > MAX_GAPS || b.len() != ACKS_LEN + n * GAP_LEN {
            return Err(Refused::BadLength);
        }
        let mut a = Acks::new(
            read_u32(b, 0),
            read_u32(b, 4),
            read_u32(b, 8),
            read_u32(b, 12),
            read_u32(b, 16),
        );
        let until = read_u32(b, 20);
        if a.nonce == 0 {
            return Err(Refused::BadRecord);
        }
        let before = a.from.wrapping_sub(1);
        let (Some(cum), Some(end)) = (seq_after(before, a.cum), seq_after(before, until)) else {
            return Err(Refused::BadRecord);
        };
        if cum > end {
            return Err(Refused::BadRecord);
        }
        for i in 0..n {
            let at = ACKS_LEN + i * GAP_LEN;
            let g = Gap {
                first: read_u32(b, at),
                len: read_u16(b, at + 4),
            };
            if !a.push_gap(g) || seq_after(before, g.last()).is_none_or(|d| d > end) {
                return Err(Refused::BadRecord);
            }
        }
        a.until = until;
        Ok(a)
    }

    /// The length of the whole message.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + ACKS_LEN + usize::from(self.count) * GAP_LEN
    }

    /// Writes a whole `Acks` message with `sequence` and `flags` into
    /// `buf` (at least [`buffer_len`](Self::buffer_len) bytes); returns
    /// its length.
    pub fn emit(&self, buf: &mut [u8], sequence: u32, flags: u16) -> usize {
        let len = self.buffer_len();
        let mut p = SyncPacket::new_unchecked(&mut buf[..len]);
        p.set_magic(MAGIC);
        p.set_version(VERSION);
        p.set_kind(MessageKind::Acks);
        p.set_count(u16::from(self.count));
        p.set_len(len as u16);
        p.set_flags(flags);
        p.set_sequence(sequence);
        let b = &mut buf[HEADER_LEN..len];
        write_u32(b, 0, self.nonce);
        write_u32(b, 4, self.peer);
        write_u32(b, 8, self.floor);
        write_u32(b, 12, self.from);
        write_u32(b, 16, self.cum);
        write_u32(b, 20, self.until);
        for (i, g) in self.gaps().iter().enumerate() {
            let at = ACKS_LEN + i * GAP_LEN;
            write_u32(b, at, g.first);
            write_u16(b, at + 4, g.len);
        }
        len
    }
}

/// The longest `Acks` message fits a message with room for a trailer.
const _: () = assert!(HEADER_LEN + ACKS_LEN + MAX_GAPS * GAP_LEN <= MAX_RECORDS_END);

/// The records of a message (see [`SyncPacket::records`]).
#[derive(Debug, Clone)]
pub struct Records<'a> {
    data: &'a [u8],
    left: u16,
    done: bool,
}

/// The records of `count` records' bytes as a [`MessageWriter`] wrote
/// them (a message's payload), read as [`SyncPacket::records`] does.
pub fn records_of(count: u16, payload: &[u8]) -> Records<'_> {
    Records {
        data: payload,
        left: count,
        done: false,
    }
}

impl Iterator for Records<'_> {
    type Item = core::result::Result<FlowRecord, Refused>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if self.left == 0 {
            self.done = true;
            return (!self.data.is_empty()).then_some(Err(Refused::BadLength));
        }
        match FlowRecord::parse(self.data) {
            Ok((r, n)) => {
                self.left -= 1;
                self.data = self.data.get(n..).unwrap_or(&[]);
                Some(Ok(r))
            }
            Err(e) => {
                let step = FlowRecord::step_len(self.data).filter(|_| e != Refused::Truncated);
                match step.and_then(|n| self.data.get(n..)) {
                    Some(rest) => {
                        self.left -= 1;
                        self.data = rest;
                    }
                    None => self.done = true,
                }
                Some(Err(e))
            }
        }
    }
}

/// One flow's news.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowRecord {
    /// 6 (TCP) or 17 (UDP).
    pub proto: u8,
    /// Client and VIP are of one family.
    pub client: IpAddr,
    pub client_port: u16,
    pub vip: IpAddr,
    pub vip_port: u16,
    pub change: FlowChange,
}

/// What happened to the flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowChange {
    /// Created, or its state changed: how it stands now.
    Update(FlowUpdate),
    /// It ended (expired, closed, its real removed).
    Removed,
}

/// What a backup needs to carry a flow on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowUpdate {
    /// In the flow's family, or IPv6 under an IPv4 flow (4in6, `tun`).
    pub real: IpAddr,
    pub real_port: u16,
    pub method: ForwardingMethod,
    /// Never `Template`; `Datagram` exactly for UDP.
    pub state: FlowState,
    /// `FinWait` only: the client's FIN began the close, so the real's
    /// closes the flow (false: the real's began it, or the sender does not
    /// know, and only the client's FIN closes it).
    pub fin_by_client: bool,
    /// The flow's class on the sender.
    pub trust: Trust,
    /// The SYN proxy's translation, for a flow whose handshake it
    /// answered and whose real has answered too (NAT TCP: IPv4 NAT or
    /// NAT66).
    pub proxy: Option<ProxyState>,
    /// Where the client of a TUN or DR TCP flow stands, when the sender
    /// has it placed (never with `proxy`): its receiver holds the
    /// client's segments to it as the sender did, and believes its FIN
    /// and RST. None: not known, or the peer does not read it.
    pub client_seq: Option<ClientSeq>,
}

/// Where a TUN or DR flow's client stands in sequence space: what the
/// appliance, which never sees the real's side of such a flow, holds the
/// client's segments to (`Flow::client_acks_fit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientSeq {
    /// The client's next sequence number.
    pub next: u32,
    /// The client's last acknowledgment number believed.
    pub ack: u32,
}

/// The translation of a proxied flow, fixed once its real answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyState {
    /// The real's ISN minus the cookie (the proxy's ISN).
    pub seq_offset: u32,
    /// Added to the real's TSval towards the client, when both sides use
    /// timestamps.
    pub ts_offset: Option<u32>,
    /// The client's window-scale shift (0..=14), if it sent the option.
    pub client_wscale: Option<u8>,
    /// The real's, if it answered with it (only with the client's).
    pub real_wscale: Option<u8>,
}

const OP_UPDATE: u8 = 1;
const OP_REMOVED: u8 = 2;
const PROXY_ON: u8 = 1;
const PROXY_TS: u8 = 2;
const PROXY_CLIENT_WS: u8 = 4;
const PROXY_REAL_WS: u8 = 8;
/// Not a SYN proxy flag: the record carries a [`ClientSeq`] in the proxy's
/// offset fields.
const CLIENT_PLACED: u8 = 16;
const MAX_WSCALE: u8 = 14;
const STATE_FIN_BY_CLIENT: u8 = 5;

fn family_len(family: u8) -> Option<usize> {
    match family {
        4 => Some(4),
        6 => Some(16),
        _ => None,
    }
}

fn family_of(a: IpAddr) -> u8 {
    match a {
        IpAddr::V4(_) => 4,
        IpAddr::V6(_) => 6,
    }
}

fn read_addr(b: &[u8], at: usize, len: usize) -> Option<IpAddr> {
    let s = b.get(at..at + len)?;
    Some(match len {
        4 => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(s).ok()?)),
        _ => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(s).ok()?)),
    })
}

fn write_addr(b: &mut [u8], at: usize, a: IpAddr) -> usize {
    match a {
        IpAddr::V4(a) => {
            b[at..at + 4].copy_from_slice(&a.octets());
            4
        }
        IpAddr::V6(a) => {
            b[at..at + 16].copy_from_slice(&a.octets());
            16
        }
    }
}

fn method_code(m: ForwardingMethod) -> u8 {
    match m {
        ForwardingMethod::Nat => 1,
        ForwardingMethod::Tunnel => 2,
        ForwardingMethod::DirectRoute => 3,
    }
}

/// The state byte: [`FlowState`]'s own number, but 5 for a FIN wait the
/// client's FIN began (a receiver that predates it refuses the record as
/// `BadRecord`: the flow is then not carried over, as before).
fn state_code(s: FlowState, fin_by_client: bool) -> u8 {
    if s == FlowState::FinWait && fin_by_client {
        STATE_FIN_BY_CLIENT
    } else {
        s as u8
    }
}

/// The state and `fin_by_client` of a state byte.
fn state_of(v: u8) -> Option<(FlowState, bool)> {
    Some(match v {
        0 => (FlowState::SynSent, false),
        1 => (FlowState::Established, false),
        2 => (FlowState::FinWait, false),
        3 => (FlowState::Closed, false),
        4 => (FlowState::Datagram, false),
        STATE_FIN_BY_CLIENT => (FlowState::FinWait, true),
        _ => return None,
    })
}

impl FlowRecord {
    /// The record's length on the wire.
    pub fn buffer_len(&self) -> usize {
        let a = if self.client.is_ipv4() { 4 } else { 16 };
        match &self.change {
            FlowChange::Removed => 8 + 2 * a,
            FlowChange::Update(u) => 24 + 2 * a + if u.real.is_ipv4() { 4 } else { 16 },
        }
    }

    /// How far a receiver may step over the refused record at the start
    /// of `b`, if at all: a kind this version does not know, by its
    /// length byte (at least [`MIN_RECORD_LEN`]: a newer sender's record);
    /// a known kind only when its length byte is that kind's length for
    /// its families, so a field out of range is stepped over but a wrong
    /// length never lands inside the next record (where its bytes could
    /// read as a record nobody sent).
    pub fn step_len(b: &[u8]) -> Option<usize> {
        let (&op, &len) = (b.first()?, b.get(1)?);
        let len = usize::from(len);
        let expected = match op {
            OP_REMOVED | OP_UPDATE => {
                let a = family_len(*b.get(2)?)?;
                if op == OP_REMOVED {
                    8 + 2 * a
                } else {
                    24 + 2 * a + family_len(*b.get(8 + 2 * a)?)?
                }
            }
            _ => return (len >= MIN_RECORD_LEN).then_some(len),
        };
        (len == expected).then_some(len)
    }

    /// Parses the record at the start of `b`; returns it and its length.
    /// `Truncated` when `b` ends inside it, `BadLength` when its length
    /// byte is not its kind's, `BadRecord` for a field value out of range
    /// or a combination no flow has.
    pub fn parse(b: &[u8]) -> core::result::Result<(FlowRecord, usize), Refused> {
        let (&op, rest) = b.split_first().ok_or(Refused::Truncated)?;
        let &len = rest.first().ok_or(Refused::Truncated)?;
        let len = usize::from(len);
        let family = *b.get(2).ok_or(Refused::Truncated)?;
        let a = family_len(family).ok_or(Refused::BadRecord)?;
        let real_family = b.get(8 + 2 * a).copied();
        let expected = match op {
            OP_REMOVED => 8 + 2 * a,
            OP_UPDATE => {
                let r =
                    family_len(real_family.ok_or(Refused::Truncated)?).ok_or(Refused::BadRecord)?;
                24 + 2 * a + r
            }
            _ => return Err(Refused::BadRecord),
        };
        if len != expected {
            return Err(Refused::BadLength);
        }
        let b = b.get(..len).ok_or(Refused::Truncated)?;
        // From here every offset is below `len`, checked above; `get`
        // keeps it so without that argument.
        let u16_at = |at: usize| -> core::result::Result<u16, Refused> {
            b.get(at..at + 2)
                .map(|s| read_u16(s, 0))
                .ok_or(Refused::Truncated)
        };
        let u32_at = |at: usize| -> core::result::Result<u32, Refused> {
            b.get(at..at + 4)
                .map(|s| read_u32(s, 0))
                .ok_or(Refused::Truncated)
        };
        let proto = b[3];
        if proto != u8::from(IpProtocol::Tcp) && proto != u8::from(IpProtocol::Udp) {
            return Err(Refused::BadRecord);
        }
        let client_port = u16_at(4)?;
        let vip_port = u16_at(6)?;
        let client = read_addr(b, 8, a).ok_or(Refused::Truncated)?;
        let vip = read_addr(b, 8 + a, a).ok_or(Refused::Truncated)?;
        let change = if op == OP_REMOVED {
            FlowChange::Removed
        } else {
            let at = 8 + 2 * a;
            let real_len = family_len(b[at]).ok_or(Refused::BadRecord)?;
            let method = match b[at + 1] {
                1 => ForwardingMethod::Nat,
                2 => ForwardingMethod::Tunnel,
                3 => ForwardingMethod::DirectRoute,
                _ => return Err(Refused::BadRecord),
            };
            let real_port = u16_at(at + 2)?;
            let (state, fin_by_client) = state_of(b[at + 4]).ok_or(Refused::BadRecord)?;
            let trust = match b[at + 5] {
                0 => Trust::Unconfirmed,
                1 => Trust::OneWay,
                2 => Trust::Confirmed,
                _ => return Err(Refused::BadRecord),
            };
            let (flags, scales) = (b[at + 6], b[at + 7]);
            let (seq, ts) = (u32_at(at + 8)?, u32_at(at + 12)?);
            let real = read_addr(b, at + 16, real_len).ok_or(Refused::Truncated)?;
            let (proxy, client_seq) = if flags == CLIENT_PLACED {
                if scales != 0 {
                    return Err(Refused::BadRecord);
                }
                (None, Some(ClientSeq { next: seq, ack: ts }))
            } else {
                (proxy_of(flags, scales, seq, ts)?, None)
            };
            FlowChange::Update(FlowUpdate {
                real,
                real_port,
                method,
                state,
                fin_by_client,
                trust,
                proxy,
                client_seq,
            })
        };
        let r = FlowRecord {
            proto,
            client,
            client_port,
            vip,
            vip_port,
            change,
        };
        if !r.is_consistent() {
            return Err(Refused::BadRecord);
        }
        Ok((r, len))
    }

    /// Whether the record describes a flow this appliance could have: one
    /// family for client and VIP; UDP exactly in `Datagram`, never a
    /// template; a real of the other family only as 4in6 (`tun`); the SYN
    /// proxy only on NAT TCP (IPv4 NAT or NAT66: a real of the flow's
    /// family); a [`ClientSeq`] only on TUN or DR TCP.
    pub fn is_consistent(&self) -> bool {
        if self.client.is_ipv4() != self.vip.is_ipv4() {
            return false;
        }
        let FlowChange::Update(u) = &self.change else {
            return true;
        };
        let udp = self.proto == u8::from(IpProtocol::Udp);
        if udp != (u.state == FlowState::Datagram)
            || u.state == FlowState::Template
            || (u.fin_by_client && u.state != FlowState::FinWait)
        {
            return false;
        }
        if u.real.is_ipv4() != self.vip.is_ipv4()
            && !(self.vip.is_ipv4() && u.method == ForwardingMethod::Tunnel)
        {
            return false;
        }
        if u.client_seq.is_some() && (udp || u.method == ForwardingMethod::Nat) {
            return false;
        }
        match u.proxy {
            None => true,
            Some(p) => {
                !udp && u.real.is_ipv4() == self.vip.is_ipv4()
                    && u.method == ForwardingMethod::Nat
                    && !matches!(p.client_wscale, Some(w) if w > MAX_WSCALE)
                    && !matches!(p.real_wscale, Some(w) if w > MAX_WSCALE)
                    && (p.real_wscale.is_none() || p.client_wscale.is_some())
            }
        }
    }

    /// Writes the record at the start of `b`, which must hold
    /// [`buffer_len`](Self::buffer_len) bytes; returns that length.
    pub fn emit(&self, b: &mut [u8]) -> usize {
        let len = self.buffer_len();
        let b = &mut b[..len];
        b[0] = match self.change {
            FlowChange::Update(_) => OP_UPDATE,
            FlowChange::Removed => OP_REMOVED,
        };
        b[1] = u8::try_from(len).expect("a record is at most MAX_RECORD_LEN bytes");
        b[2] = family_of(self.client);
        b[3] = self.proto;
        write_u16(b, 4, self.client_port);
        write_u16(b, 6, self.vip_port);
        let a = write_addr(b, 8, self.client);
        write_addr(b, 8 + a, self.vip);
        if let FlowChange::Update(u) = &self.change {
            let at = 8 + 2 * a;
            b[at] = family_of(u.real);
            b[at + 1] = method_code(u.method);
            write_u16(b, at + 2, u.real_port);
            b[at + 4] = state_code(u.state, u.fin_by_client);
            b[at + 5] = u.trust as u8;
            let (flags, scales, seq, ts) = match u.client_seq {
                Some(c) => (CLIENT_PLACED, 0, c.next, c.ack),
                None => proxy_bytes(u.proxy),
            };
            b[at + 6] = flags;
            b[at + 7] = scales;
            write_u32(b, at + 8, seq);
            write_u32(b, at + 12, ts);
            write_addr(b, at + 16, u.real);
        }
        len
    }
}

fn proxy_of(
    flags: u8,
    scales: u8,
    seq: u32,
    ts: u32,
) -> core::result::Result<Option<ProxyState>, Refused> {
    if flags == 0 {
        // Not proxied: the rest is zero, so that a record has one form.
        return if scales == 0 && seq == 0 && ts == 0 {
            Ok(None)
        } else {
            Err(Refused::BadRecord)
        };
    }
    let known = PROXY_ON | PROXY_TS | PROXY_CLIENT_WS | PROXY_REAL_WS;
    if flags & PROXY_ON == 0 || flags & !known != 0 {
        return Err(Refused::BadRecord);
    }
    let (client, real) = (scales >> 4, scales & 0xf);
    let zero_unless = |bit: u8, v: u32| flags & bit != 0 || v == 0;
    if !zero_unless(PROXY_TS, ts)
        || !zero_unless(PROXY_CLIENT_WS, client.into())
        || !zero_unless(PROXY_REAL_WS, real.into())
    {
        return Err(Refused::BadRecord);
    }
    Ok(Some(ProxyState {
        seq_offset: seq,
        ts_offset: (flags & PROXY_TS != 0).then_some(ts),
        client_wscale: (flags & PROXY_CLIENT_WS != 0).then_some(client),
        real_wscale: (flags & PROXY_REAL_WS != 0).then_some(real),
    }))
}

fn proxy_bytes(p: Option<ProxyState>) -> (u8, u8, u32, u32) {
    let Some(p) = p else {
        return (0, 0, 0, 0);
    };
    let mut flags = PROXY_ON;
    let mut scales = 0;
    if p.ts_offset.is_some() {
        flags |= PROXY_TS;
    }
    if let Some(w) = p.client_wscale {
        flags |= PROXY_CLIENT_WS;
        scales |= (w & 0xf) << 4;
    }
    if let Some(w) = p.real_wscale {
        flags |= PROXY_REAL_WS;
        scales |= w & 0xf;
    }
    (flags, scales, p.seq_offset, p.ts_offset.unwrap_or(0))
}

/// Builds one message in a caller's buffer: the header, then records as
/// long as they fit [`MAX_RECORDS_END`] (and the buffer).
#[derive(Debug)]
pub struct MessageWriter<'a> {
    buf: &'a mut [u8],
    len: usize,
    count: u16,
}

impl<'a> MessageWriter<'a> {
    /// Starts a `Flows` message with `sequence` in `buf` (at least
    /// [`HEADER_LEN`] bytes; [`MAX_MESSAGE_LEN`] to fill a datagram).
    pub fn new(buf: &'a mut [u8], sequence: u32) -> MessageWriter<'a> {
        let mut p = SyncPacket::new_unchecked(&mut buf[..HEADER_LEN]);
        p.set_magic(MAGIC);
        p.set_version(VERSION);
        p.set_kind(MessageKind::Flows);
        p.set_count(0);
        p.set_len(HEADER_LEN as u16); // 16
        p.set_flags(0);
        p.set_sequence(sequence);
        MessageWriter {
            buf,
            len: HEADER_LEN,
            count: 0,
        }
    }

    /// Sets the header's [`flags`].
    pub fn set_flags(&mut self, flags: u16) {
        SyncPacket::new_unchecked(&mut self.buf[..HEADER_LEN]).set_flags(flags);
    }

    /// Appends `r`; false (and nothing written) when it does not fit
    /// (the records end by [`MAX_RECORDS_END`], leaving room for a
    /// trailer).
    pub fn push(&mut self, r: &FlowRecord) -> bool {
        let n = r.buffer_len();
        let room = self.buf.len().min(MAX_RECORDS_END);
        if self.len + n > room || self.count == u16::MAX {
            return false;
        }
        r.emit(&mut self.buf[self.len..]);
        self.len += n;
        self.count += 1;
        true
    }

    pub fn count(&self) -> u16 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Writes the count and length; returns the message's length.
    pub fn finish(self) -> usize {
        let mut p = SyncPacket::new_unchecked(&mut self.buf[..HEADER_LEN]);
        p.set_count(self.count);
        p.set_len(u16::try_from(self.len).expect("a message is at most MAX_MESSAGE_LEN bytes"));
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_status_message_round_trips_and_refuses_what_is_not_one() {
        let st = Status {
            nonce: 0xdead_beef,
            pass: 3,
            passed: 2,
            acked: 7,
            nacked: 6,
        };
        let mut buf = [0u8; 64];
        let n = st.emit(&mut buf, 41, flags::ACTIVE | flags::PRIMARY);
        assert_eq!(n, HEADER_LEN + STATUS_LEN);
        let (h, p) = SyncHeader::parse(&buf[..n]).unwrap();
        assert_eq!(h.kind, MessageKind::Status);
        assert_eq!(
            (h.sequence, h.flags, h.count),
            (41, flags::ACTIVE | flags::PRIMARY, 0)
        );
        assert_eq!(Status::parse(&p), Ok(st));
        // A flows message is no status; a status with records or a short or
        // long body is refused; so is a nonce of 0.
        let mut w = [0u8; 64];
        let len = MessageWriter::new(&mut w, 1).finish();
        let (_, p) = SyncHeader::parse(&w[..len]).unwrap();
        assert_eq!(Status::parse(&p), Err(Refused::BadLength));
        let mut long = buf;
        SyncPacket::new_unchecked(&mut long[..]).set_len((n + 4) as u16);
        let (_, p) = SyncHeader::parse(&long[..n + 4]).unwrap();
        assert_eq!(Status::parse(&p), Err(Refused::BadLength));
        let mut counted = buf;
        SyncPacket::new_unchecked(&mut counted[..]).set_count(1);
        let (_, p) = SyncHeader::parse(&counted[..n]).unwrap();
        assert_eq!(Status::parse(&p), Err(Refused::BadLength));
        let n0 = Status { nonce: 0, ..st }.emit(&mut buf, 1, 0);
        let (_, p) = SyncHeader::parse(&buf[..n0]).unwrap();
        assert_eq!(Status::parse(&p), Err(Refused::BadRecord));
    }

    /// Every field of an acks message is the peer's word: what does not
    /// hold together is refused whole, nothing is allocated by a count.
    #[test]
    fn an_acks_message_round_trips_and_refuses_what_does_not_hold() {
        let mut a = Acks::new(9, 5, 40, 10, 12);
        assert!(a.push_gap(Gap { first: 14, len: 2 }));
        assert!(!a.push_gap(Gap { first: 15, len: 1 }), "overlapping");
        assert!(!a.push_gap(Gap { first: 20, len: 0 }), "empty");
        assert!(a.push_gap(Gap { first: 20, len: 1 }));
        a.set_until(25);
        let mut buf = [0u8; MAX_MESSAGE_LEN];
        let n = a.emit(&mut buf, 3, flags::SEGMENTS);
        assert_eq!(n, HEADER_LEN + ACKS_LEN + 2 * GAP_LEN);
        let (h, p) = SyncHeader::parse(&buf[..n]).unwrap();
        assert_eq!((h.kind, h.count, h.sequence), (MessageKind::Acks, 2, 3));
        assert_eq!(Acks::parse(&p), Ok(a));
        // Bytes changed one field at a time.
        let refused = |edit: &dyn Fn(&mut [u8]), len: usize| {
            let mut b = buf;
            edit(&mut b);
            let (_, p) = SyncHeader::parse(&b[..len]).unwrap();
            Acks::parse(&p).unwrap_err()
        };
        let at = |o: usize| HEADER_LEN + o;
        assert_eq!(
            refused(&|b| write_u32(b, at(0), 0), n),
            Refused::BadRecord,
            "nonce 0"
        );
        assert_eq!(
            refused(&|b| write_u32(b, at(20), 13), n),
            Refused::BadRecord,
            "gap past until"
        );
        assert_eq!(
            refused(&|b| write_u32(b, at(16), 26), n),
            Refused::BadRecord,
            "cum past until"
        );
        assert_eq!(
            refused(&|b| write_u32(b, at(16), 8), n),
            Refused::BadRecord,
            "cum before from"
        );
        assert_eq!(
            refused(&|b| write_u32(b, at(24), 12), n),
            Refused::BadRecord,
            "gap at cum"
        );
        assert_eq!(
            refused(&|b| write_u32(b, at(30), 14), n),
            Refused::BadRecord,
            "out of order"
        );
        assert_eq!(
            refused(&|b| write_u16(b, at(28), 0), n),
            Refused::BadRecord,
            "empty gap"
        );
        assert_eq!(
            refused(&|b| write_u32(b, at(20), 10 + (1 << 31)), n),
            Refused::BadRecord,
            "a span of 2^31"
        );
        assert_eq!(
            refused(&|b| SyncPacket::new_unchecked(b).set_count(3), n),
            Refused::BadLength,
            "a count the body does not hold"
        );
        assert_eq!(
            refused(&|b| SyncPacket::new_unchecked(b).set_count(u16::MAX), n),
            Refused::BadLength,
            "a count past the most"
        );
        assert_eq!(
            refused(
                &|b| {
                    let mut p = SyncPacket::new_unchecked(b);
                    p.set_count(150);
                    p.set_len((HEADER_LEN + ACKS_LEN + 150 * GAP_LEN) as u16);
                },
                HEADER_LEN + ACKS_LEN + 150 * GAP_LEN
            ),
            Refused::BadLength,
            "more gaps than an ack carries"
        );
    }

    proptest! {
        /// Whatever the bytes, parsing never panics, and what parses
        /// re-emits to them and says of every message what its gaps say.
        #[test]
        fn any_acks_body_parses_whole_or_is_refused(body in proptest::collection::vec(any::<u8>(), 0..120), count in 0u16..20, probe in any::<u32>()) {
            let mut buf = [0u8; MAX_MESSAGE_LEN];
            let len = HEADER_LEN + body.len();
            {
                let mut p = SyncPacket::new_unchecked(&mut buf[..len]);
                p.set_magic(MAGIC);
                p.set_version(VERSION);
                p.set_kind(MessageKind::Acks);
                p.set_count(count);
                p.set_len(len as u16);
            }
            buf[HEADER_LEN..len].copy_from_slice(&body);
            let (h, p) = SyncHeader::parse(&buf[..len]).unwrap();
            if let Ok(a) = Acks::parse(&p) {
                let mut out = [0u8; MAX_MESSAGE_LEN];
                let n = a.emit(&mut out, h.sequence, h.flags);
                prop_assert_eq!(&out[..n], &buf[..len]);
                let in_gap = a.gaps().iter().any(|g| probe.wrapping_sub(g.first) < u32::from(g.len));
                if in_gap {
                    prop_assert_eq!(a.arrived(probe), Some(false));
                }
                if a.arrived(probe) == Some(true) {
                    prop_assert!(probe.wrapping_sub(a.from) <= a.until.wrapping_sub(a.from));
                }
            }
        }
    }

    /// A message of two records: an IPv4 NAT TCP flow established and
    /// confirmed (198.51.100.7:40000 -> 198.18.1.100:80 on real
    /// 198.18.2.11:8080), and the removal of 198.51.100.8:40001's.
    #[rustfmt::skip]
    static MESSAGE: [u8; 68] = [
        0x4c, 0x42, 0x53, 0x59,             // magic "LBSY"
        0x01, 0x01, 0x00, 0x02,             // version 1, flows, 2 records
        0x00, 0x44, 0x00, 0x00,             // length 68, flags 0
        0x00, 0x00, 0x00, 0x2a,             // sequence 42
        // update, 36 bytes, IPv4, TCP
        0x01, 0x24, 0x04, 0x06,
        0x9c, 0x40, 0x00, 0x50,             // client port 40000, VIP port 80
        198, 51, 100, 7,                    // client
        198, 18, 1, 100,                    // VIP
        0x04, 0x01, 0x1f, 0x90,             // real IPv4, nat, port 8080
        0x01, 0x02, 0x00, 0x00,             // established, confirmed, no proxy
        0x00, 0x00, 0x00, 0x00,             // proxy seq offset
        0x00, 0x00, 0x00, 0x00,             // proxy ts offset
        198, 18, 2, 11,                     // real
        // removed, 16 bytes, IPv4, TCP
        0x02, 0x10, 0x04, 0x06,
        0x9c, 0x41, 0x00, 0x50,
        198, 51, 100, 8,
        198, 18, 1, 100,
    ];

    fn update() -> FlowRecord {
        FlowRecord {
            proto: 6,
            client: Ipv4Addr::new(198, 51, 100, 7).into(),
            client_port: 40000,
            vip: Ipv4Addr::new(198, 18, 1, 100).into(),
            vip_port: 80,
            change: FlowChange::Update(FlowUpdate {
                real: Ipv4Addr::new(198, 18, 2, 11).into(),
                real_port: 8080,
                method: ForwardingMethod::Nat,
                state: FlowState::Established,
                fin_by_client: false,
                trust: Trust::Confirmed,
                proxy: None,
                client_seq: None,
            }),
        }
    }

    fn removed() -> FlowRecord {
        FlowRecord {
            client: Ipv4Addr::new(198, 51, 100, 8).into(),
            client_port: 40001,
            change: FlowChange::Removed,
            ..update()
        }
    }

    #[test]
    fn deconstruct() {
        let (h, p) = SyncHeader::parse(&MESSAGE).unwrap();
        assert_eq!(
            h,
            SyncHeader {
                kind: MessageKind::Flows,
                count: 2,
                flags: 0,
                sequence: 42
            }
        );
        assert_eq!(p.len(), 68);
        let records: Vec<_> = p.records().collect();
        assert_eq!(records, vec![Ok(update()), Ok(removed())]);
    }

    #[test]
    fn construct() {
        let mut buf = [0xa5u8; MAX_MESSAGE_LEN];
        let mut w = MessageWriter::new(&mut buf, 42);
        assert!(w.is_empty());
        assert!(w.push(&update()));
        assert!(w.push(&removed()));
        assert_eq!(w.count(), 2);
        let n = w.finish();
        assert_eq!(&buf[..n], &MESSAGE[..]);
    }

    #[test]
    fn a_heartbeat_is_a_header_alone() {
        let mut buf = [0xa5u8; HEADER_LEN];
        let n = MessageWriter::new(&mut buf, 7).finish();
        assert_eq!(n, HEADER_LEN);
        let (h, p) = SyncHeader::parse(&buf).unwrap();
        assert_eq!((h.count, h.sequence), (0, 7));
        assert_eq!(p.records().count(), 0);
    }

    #[test]
    fn record_lengths_are_what_the_diagram_says() {
        let v6 = |s: &str| IpAddr::V6(s.parse().unwrap());
        let r4 = update();
        let mut r46 = update();
        let mut r6 = update();
        r6.client = v6("2001:db8::7");
        r6.vip = v6("2001:2:0:1::100");
        if let FlowChange::Update(u) = &mut r46.change {
            u.real = v6("2001:2:0:2::11");
            u.method = ForwardingMethod::Tunnel;
        }
        if let FlowChange::Update(u) = &mut r6.change {
            u.real = v6("2001:2:0:2::11");
        }
        let r6_removed = FlowRecord {
            change: FlowChange::Removed,
            ..r6
        };
        for (r, len) in [
            (r4, 36),
            (r46, 48),
            (r6, 72),
            (removed(), 16),
            (r6_removed, 40),
        ] {
            assert_eq!(r.buffer_len(), len, "{r:?}");
            let mut b = [0u8; MAX_RECORD_LEN];
            assert_eq!(r.emit(&mut b), len);
            assert_eq!(FlowRecord::parse(&b[..len]), Ok((r, len)));
        }
    }

    #[test]
    fn truncated_anywhere() {
        for len in 0..HEADER_LEN {
            assert_eq!(
                SyncHeader::parse(&MESSAGE[..len]).unwrap_err(),
                Refused::Truncated,
                "{len}"
            );
        }
        for len in HEADER_LEN..MESSAGE.len() {
            assert_eq!(
                SyncHeader::parse(&MESSAGE[..len]).unwrap_err(),
                Refused::Truncated,
                "{len}"
            );
            // The length field cut to match: the records run short.
            let mut m = MESSAGE[..len].to_vec();
            m[9] = u8::try_from(len).unwrap();
            let (_, p) = SyncHeader::parse(&m).unwrap();
            let last = p.records().last().unwrap();
            assert_eq!(last, Err(Refused::Truncated), "{len}");
        }
    }

    #[test]
    fn refused_headers_say_why() {
        let with = |at: usize, v: u8| {
            let mut m = MESSAGE;
            m[at] = v;
            SyncHeader::parse(&m).map(|_| ())
        };
        assert_eq!(with(0, b'X'), Err(Refused::BadMagic));
        assert_eq!(with(4, 2), Err(Refused::BadVersion));
        assert_eq!(with(5, 9), Err(Refused::UnknownType));
        assert_eq!(with(9, 15), Err(Refused::BadLength));
        assert_eq!(with(9, 69), Err(Refused::Truncated));
        // Trailing bytes past the length field are not the message's.
        let mut long = MESSAGE.to_vec();
        long.extend_from_slice(&[0xee; 5]);
        let (_, p) = SyncHeader::parse(&long).unwrap();
        assert_eq!(p.records().filter(|r| r.is_ok()).count(), 2);
    }

    #[test]
    fn a_count_that_disagrees_ends_the_batch() {
        let mut m = MESSAGE;
        m[7] = 1; // one record, 32 bytes left over
        let (_, p) = SyncHeader::parse(&m).unwrap();
        let r: Vec<_> = p.records().collect();
        assert_eq!(r, vec![Ok(update()), Err(Refused::BadLength)]);
        m[7] = 3; // three, two there
        let (_, p) = SyncHeader::parse(&m).unwrap();
        let r: Vec<_> = p.records().collect();
        assert_eq!(
            r,
            vec![Ok(update()), Ok(removed()), Err(Refused::Truncated)]
        );
    }

    #[test]
    fn a_bad_record_is_refused_and_stepped_over_only_where_its_length_is_sure() {
        // Offsets into the first record (16 bytes into the message); whether
        // the record after it is still read.
        let cases: &[(usize, u8, Refused, bool)] = &[
            (0, 3, Refused::BadRecord, true),     // op: a kind we do not know
            (1, 37, Refused::BadLength, false),   // record length
            (2, 5, Refused::BadRecord, false),    // family
            (3, 1, Refused::BadRecord, true),     // protocol (ICMP)
            (3, 17, Refused::BadRecord, true),    // UDP in established
            (16, 5, Refused::BadRecord, false),   // real family
            (16, 6, Refused::BadLength, false),   // real IPv6: 48 bytes, not 36
            (17, 0, Refused::BadRecord, true),    // method
            (17, 4, Refused::BadRecord, true),    // method
            (20, 6, Refused::BadRecord, true),    // state: none such
            (21, 3, Refused::BadRecord, true),    // trust
            (22, 2, Refused::BadRecord, true),    // proxy flags without "proxied"
            (22, 0x11, Refused::BadRecord, true), // an unknown proxy flag
            (23, 1, Refused::BadRecord, true),    // a scale while not proxied
            (27, 1, Refused::BadRecord, true),    // a seq offset while not proxied
        ];
        for &(at, v, why, stepped) in cases {
            let mut m = MESSAGE;
            m[HEADER_LEN + at] = v;
            let (_, p) = SyncHeader::parse(&m).unwrap();
            let r: Vec<_> = p.records().collect();
            if stepped {
                assert_eq!(r, vec![Err(why), Ok(removed())], "byte {at} = {v}");
            } else {
                assert_eq!(r, vec![Err(why)], "byte {at} = {v}");
            }
        }
    }

    /// Found by review: stepping over a record of a known kind by a wrong
    /// length byte landed inside the next record, whose bytes then read as
    /// a removal nobody sent. A known kind is stepped over only by its own
    /// length; any other length ends the batch.
    #[test]
    fn a_wrong_length_never_reads_a_record_nobody_sent() {
        // Eleven removals of the same client: 16 bytes each.
        let one = [
            2u8, 16, 4, 6, 0x9c, 0x41, 0x00, 0x50, 2, 16, 4, 6, 198, 18, 1, 100,
        ];
        let mut m = MESSAGE[..HEADER_LEN].to_vec();
        for _ in 0..11 {
            m.extend_from_slice(&one);
        }
        m[6..8].copy_from_slice(&11u16.to_be_bytes());
        let len = u16::try_from(m.len()).unwrap();
        m[8..10].copy_from_slice(&len.to_be_bytes());
        let (_, p) = SyncHeader::parse(&m).unwrap();
        assert_eq!(p.records().filter(|r| r.is_ok()).count(), 11);
        let sent = FlowRecord::parse(&one).unwrap().0;
        for wrong in (4..=u8::MAX).filter(|&l| l != 16) {
            let mut bad = m.clone();
            bad[HEADER_LEN + 1] = wrong;
            let (_, p) = SyncHeader::parse(&bad).unwrap();
            let r: Vec<_> = p.records().collect();
            assert_eq!(r, vec![Err(Refused::BadLength)], "length byte {wrong}");
            assert!(r.iter().flatten().all(|x| *x == sent));
        }
    }

    /// A record of a kind this version does not know (a newer sender's)
    /// costs only itself; a length byte that cannot be a record's, or that
    /// runs past the message, ends the batch.
    #[test]
    fn an_unknown_record_kind_is_stepped_over_by_its_length() {
        let unknown = [9u8, 6, 4, 6, 0xaa, 0xbb];
        let mut m = MESSAGE[..HEADER_LEN].to_vec();
        m.extend_from_slice(&unknown);
        m.extend_from_slice(&MESSAGE[HEADER_LEN..]);
        m[6..8].copy_from_slice(&3u16.to_be_bytes());
        let len = u16::try_from(m.len()).unwrap();
        m[8..10].copy_from_slice(&len.to_be_bytes());
        let (_, p) = SyncHeader::parse(&m).unwrap();
        let r: Vec<_> = p.records().collect();
        assert_eq!(
            r,
            vec![Err(Refused::BadRecord), Ok(update()), Ok(removed())]
        );
        for (bad_len, why) in [(0u8, Refused::BadRecord), (3, Refused::BadRecord)] {
            let mut short = m.clone();
            short[HEADER_LEN + 1] = bad_len;
            let (_, p) = SyncHeader::parse(&short).unwrap();
            let r: Vec<_> = p.records().collect();
            assert_eq!(r, vec![Err(why)], "length byte {bad_len}");
        }
        // Past the end of the message.
        let mut long = m.clone();
        long[HEADER_LEN + 1] = 255;
        let (_, p) = SyncHeader::parse(&long).unwrap();
        let r: Vec<_> = p.records().collect();
        assert_eq!(r, vec![Err(Refused::BadRecord)]);
    }

    /// A NAT66 flow the SYN proxy answered carries its translation in
    /// the same record fields as an IPv4 one (the format always had room:
    /// the proxy bytes sit before the real's address in both families).
    #[test]
    fn a_proxied_nat66_flow_carries_its_translation() {
        let proxy = ProxyState {
            seq_offset: 0x8765_4321,
            ts_offset: Some(0x0102_0304),
            client_wscale: Some(7),
            real_wscale: Some(9),
        };
        let r = FlowRecord {
            client: "2001:2:0:10::a".parse().unwrap(),
            vip: "2001:2:0:1::100".parse().unwrap(),
            change: FlowChange::Update(FlowUpdate {
                real: "2001:2::11".parse().unwrap(),
                real_port: 8080,
                method: ForwardingMethod::Nat,
                state: FlowState::Established,
                fin_by_client: false,
                trust: Trust::Confirmed,
                proxy: Some(proxy),
                client_seq: None,
            }),
            ..update()
        };
        let mut buf = [0u8; MAX_RECORD_LEN];
        let n = r.emit(&mut buf);
        assert_eq!(n, 72);
        assert_eq!(FlowRecord::parse(&buf[..n]), Ok((r, n)));
        // The proxy bytes at 14+2A: flags, scales, offsets.
        assert_eq!(&buf[46..48], &[1 | 2 | 4 | 8, 0x79]);
        assert_eq!(&buf[48..56], &[0x87, 0x65, 0x43, 0x21, 1, 2, 3, 4]);
        // Under 6in6 TUN or DR it is still no flow an appliance has.
        for method in [ForwardingMethod::Tunnel, ForwardingMethod::DirectRoute] {
            let mut bad = r;
            if let FlowChange::Update(u) = &mut bad.change {
                u.method = method;
            }
            let n = bad.emit(&mut buf);
            assert_eq!(FlowRecord::parse(&buf[..n]), Err(Refused::BadRecord));
        }
    }

    #[test]
    fn inconsistent_records_are_refused() {
        let mut buf = [0u8; MAX_RECORD_LEN];
        let mut check = |r: FlowRecord| {
            let n = r.emit(&mut buf);
            assert_eq!(
                FlowRecord::parse(&buf[..n]),
                Err(Refused::BadRecord),
                "{r:?}"
            );
        };
        let with = |f: &dyn Fn(&mut FlowUpdate)| {
            let mut r = update();
            if let FlowChange::Update(u) = &mut r.change {
                f(u);
            }
            r
        };
        // 6in4, and an IPv6 real under NAT.
        let mut r = update();
        r.client = "2001:db8::7".parse().unwrap();
        r.vip = "2001:2:0:1::100".parse().unwrap();
        check(r);
        check(with(&|u| u.real = "2001:2:0:2::11".parse().unwrap()));
        // The SYN proxy on DR, with a scale above 14, a real's scale alone.
        let proxy = ProxyState {
            seq_offset: 1,
            ts_offset: None,
            client_wscale: Some(7),
            real_wscale: None,
        };
        check(with(&|u| {
            u.proxy = Some(proxy);
            u.method = ForwardingMethod::DirectRoute;
        }));
        check(with(&|u| {
            u.proxy = Some(ProxyState {
                client_wscale: Some(15),
                ..proxy
            })
        }));
        check(with(&|u| {
            u.proxy = Some(ProxyState {
                client_wscale: None,
                real_wscale: Some(3),
                ..proxy
            })
        }));
        // UDP outside Datagram.
        let mut r = update();
        r.proto = 17;
        check(r);
        // Where the client stands, on NAT (the real's ACK places it there).
        check(with(&|u| {
            u.client_seq = Some(ClientSeq { next: 1, ack: 2 });
        }));
    }

    /// A TUN or DR flow's client: flag 16 alone, its next sequence number
    /// and acknowledgment where the SYN proxy's offsets go; with any SYN
    /// proxy flag, a window scale, or on UDP, refused.
    #[test]
    fn where_a_one_way_client_stands_is_in_the_proxy_fields() {
        let mut r = update();
        if let FlowChange::Update(u) = &mut r.change {
            u.method = ForwardingMethod::DirectRoute;
            u.client_seq = Some(ClientSeq {
                next: 0x0102_0304,
                ack: 0xa0b0_c0d0,
            });
        }
        let mut buf = [0u8; MAX_RECORD_LEN];
        let n = r.emit(&mut buf);
        assert_eq!(n, 36);
        let at = 8 + 2 * 4;
        assert_eq!(
            &buf[at + 6..at + 16],
            &[16, 0, 1, 2, 3, 4, 0xa0, 0xb0, 0xc0, 0xd0]
        );
        assert_eq!(FlowRecord::parse(&buf[..n]), Ok((r, n)));
        for (i, v) in [(at + 6, 16 | 1), (at + 6, 16 | 2), (at + 7, 0x10)] {
            let mut b = buf;
            b[i] = v;
            assert_eq!(
                FlowRecord::parse(&b[..n]),
                Err(Refused::BadRecord),
                "{i} {v}"
            );
        }
        let mut udp = r;
        udp.proto = 17;
        if let FlowChange::Update(u) = &mut udp.change {
            u.state = FlowState::Datagram;
        }
        assert!(!udp.is_consistent());
        let mut b = buf;
        b[3] = 17;
        b[at + 4] = FlowState::Datagram as u8;
        assert_eq!(FlowRecord::parse(&b[..n]), Err(Refused::BadRecord));
    }

    /// A FIN wait the client began is state 5 on the wire, one the real
    /// began (or nobody knows who) 2; either parses back as it was.
    #[test]
    fn the_side_that_began_a_close_is_in_the_state_byte() {
        let mut buf = [0u8; MAX_RECORD_LEN];
        let at = 12 + 2 * 4;
        for (by_client, code) in [(false, 2), (true, 5)] {
            let mut r = update();
            if let FlowChange::Update(u) = &mut r.change {
                u.state = FlowState::FinWait;
                u.fin_by_client = by_client;
            }
            let n = r.emit(&mut buf);
            assert_eq!(buf[at], code);
            assert_eq!(FlowRecord::parse(&buf[..n]), Ok((r, n)));
        }
        // Only a FIN wait has a side: the flag elsewhere is inconsistent.
        let mut r = update();
        if let FlowChange::Update(u) = &mut r.change {
            u.fin_by_client = true;
        }
        assert!(!r.is_consistent());
    }

    #[test]
    fn a_full_message_takes_no_more() {
        let mut buf = [0u8; 2 * MAX_MESSAGE_LEN];
        let mut w = MessageWriter::new(&mut buf, 1);
        let mut n = 0;
        while w.push(&update()) {
            n += 1;
        }
        assert_eq!(n, (MAX_MESSAGE_LEN - HEADER_LEN) / 36);
        let len = w.finish();
        assert!(len <= MAX_MESSAGE_LEN);
        let (h, p) = SyncHeader::parse(&buf[..len]).unwrap();
        assert_eq!(usize::from(h.count), n);
        assert!(p.records().all(|r| r == Ok(update())));
    }

    fn arb_ip(v6: bool) -> BoxedStrategy<IpAddr> {
        if v6 {
            any::<u128>().prop_map(|a| IpAddr::V6(a.into())).boxed()
        } else {
            any::<u32>().prop_map(|a| IpAddr::V4(a.into())).boxed()
        }
    }

    fn arb_record() -> impl Strategy<Value = FlowRecord> {
        let shape = (
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            0..3usize,
        );
        shape.prop_flat_map(|(v6, real6, udp, remove, method)| {
            let method = [
                ForwardingMethod::Nat,
                ForwardingMethod::Tunnel,
                ForwardingMethod::DirectRoute,
            ][method];
            // 4in6 under tun only; never 6in4.
            let real_v6 = v6 || (real6 && method == ForwardingMethod::Tunnel);
            (
                arb_ip(v6),
                arb_ip(v6),
                arb_ip(real_v6),
                any::<(u16, u16, u16)>(),
                prop_oneof![0..4u8, Just(STATE_FIN_BY_CLIENT)],
                0..3usize,
                any::<bool>(),
                any::<(u32, Option<u32>, Option<u8>, Option<u8>)>(),
                any::<Option<(u32, u32)>>(),
            )
                .prop_map(
                    move |(client, vip, real, ports, state, trust, proxied, px, placed)| {
                        let (state, fin_by_client) = if udp {
                            (FlowState::Datagram, false)
                        } else {
                            state_of(state).unwrap()
                        };
                        let can_proxy =
                            !udp && real.is_ipv4() != v6 && method == ForwardingMethod::Nat;
                        let proxy = (proxied && can_proxy).then(|| {
                            let cw = px.2.map(|w| w % 15);
                            ProxyState {
                                seq_offset: px.0,
                                ts_offset: px.1,
                                client_wscale: cw,
                                real_wscale: cw.and(px.3.map(|w| w % 15)),
                            }
                        });
                        FlowRecord {
                            proto: if udp { 17 } else { 6 },
                            client,
                            client_port: ports.0,
                            vip,
                            vip_port: ports.1,
                            change: if remove {
                                FlowChange::Removed
                            } else {
                                FlowChange::Update(FlowUpdate {
                                    real,
                                    real_port: ports.2,
                                    method,
                                    state,
                                    fin_by_client,
                                    trust: Trust::ALL[trust],
                                    proxy,
                                    client_seq: placed
                                        .filter(|_| !udp && method != ForwardingMethod::Nat)
                                        .map(|(next, ack)| ClientSeq { next, ack }),
                                })
                            },
                        }
                    },
                )
        })
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            if let Ok((_, p)) = SyncHeader::parse(&bytes) {
                let mut n = 0;
                for r in p.records() {
                    n += 1;
                    if let Ok(r) = r {
                        prop_assert!(r.is_consistent());
                    }
                }
                prop_assert!(n <= usize::from(p.count()) + 1);
            }
            // Records straight from the bytes, past a good header.
            let mut m = MESSAGE[..HEADER_LEN].to_vec();
            m.extend_from_slice(&bytes);
            let len = u16::try_from(m.len()).unwrap();
            m[8..10].copy_from_slice(&len.to_be_bytes());
            m[6..8].copy_from_slice(&[0, 20]);
            let (_, p) = SyncHeader::parse(&m).unwrap();
            let mut at = 0;
            for r in p.records() {
                match r {
                    Ok(r) => {
                        let n = r.buffer_len();
                        let mut b = [0u8; MAX_RECORD_LEN];
                        r.emit(&mut b);
                        prop_assert_eq!(&b[..n], &bytes[at..at + n], "re-emitted as read");
                        at += n;
                    }
                    Err(_) => break,
                }
            }
        }

        #[test]
        fn records_roundtrip(records in proptest::collection::vec(arb_record(), 0..40), seq in any::<u32>()) {
            let mut buf = [0u8; MAX_MESSAGE_LEN];
            let mut w = MessageWriter::new(&mut buf, seq);
            let mut sent = Vec::new();
            for r in &records {
                prop_assert!(r.is_consistent(), "{:?}", r);
                if w.push(r) {
                    sent.push(*r);
                }
            }
            let n = w.finish();
            let (h, p) = SyncHeader::parse(&buf[..n]).unwrap();
            prop_assert_eq!(h.sequence, seq);
            let got: Vec<_> = p.records().collect::<core::result::Result<_, _>>().unwrap();
            prop_assert_eq!(got, sent);
        }
    }
}
