//! Keyed sync messages (`[sync] key_file`): a sender tags every message,
//! a receiver takes only messages with a valid tag, a fresh time and a
//! counter it has not taken before.
//!
//! Without a key anyone who can send a datagram from the peer's address
//! (a spoofed source is enough over UDP) can install flows in a backup's
//! tables, remove them, or tell it that a dead primary is alive. With it:
//! - **Authentic:** the tag is HMAC-SHA256 over the whole message (header
//!   and flags included) and its counter, keyed with the pair's key, cut
//!   to 16 bytes and compared in constant time. A message without a tag
//!   is refused (`unauthenticated`), one whose tag does not match is
//!   refused (`bad_tag`).
//! - **Fresh:** the counter is the sender's clock in microseconds, so a
//!   message older or newer than `max_clock_skew` by this appliance's
//!   clock is refused (`stale`): a message recorded earlier and sent
//!   again later works for at most that long, even to an appliance that
//!   has just restarted and remembers nothing.
//! - **Once:** the sender's counter grows with every message, across its
//!   restarts too (it is its clock). A receiver takes a counter above the
//!   highest it took, or one among the last [`RECENT`] counters' span that
//!   it has not taken (a datagram overtaken by the next); anything else is
//!   refused (`replayed`).
//!
//! The cost: a sender whose clock went back across a restart is refused
//! (`replayed`) until its clock is past where it was, at most twice
//! `max_clock_skew` (the highest counter taken was at most that far ahead
//! of this clock); the pair's clocks must agree within `max_clock_skew`
//! (NTP). Both are counted and logged by the sync thread.

use hmac::{Hmac, Mac};
use lb_config::SyncKey;
use sha2::Sha256;

use super::Refused;
use crate::wire::sync::{counter_bytes, flags, SyncPacket, AUTH_LEN, TAG_LEN};

type HmacSha256 = Hmac<Sha256>;

/// How many taken counters a receiver remembers, for messages that
/// arrive out of order.
pub const RECENT: usize = 64;

/// The tag of a message (`signed`: its `length` bytes) with `counter`.
pub fn tag(key: &SyncKey, signed: &[u8], counter: u64) -> [u8; TAG_LEN] {
    let mut out = [0u8; TAG_LEN];
    out.copy_from_slice(&mac(key, signed, counter).finalize().into_bytes()[..TAG_LEN]);
    out
}

fn mac(key: &SyncKey, signed: &[u8], counter: u64) -> HmacSha256 {
    // An HMAC key may have any length: `new_from_slice` cannot fail.
    let mut m = match HmacSha256::new_from_slice(&key.0) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    m.update(signed);
    m.update(&counter_bytes(counter));
    m
}

/// Tags the messages a sender builds.
#[derive(Debug)]
pub struct Sealer {
    key: SyncKey,
    last: u64,
}

impl Sealer {
    pub fn new(key: SyncKey) -> Sealer {
        Sealer { key, last: 0 }
    }

    /// The same sender with another key: its counters go on growing.
    pub fn rekey(self, key: SyncKey) -> Sealer {
        Sealer { key, ..self }
    }

    /// Makes the finished message of `len` bytes (its length field) at
    /// the start of `buf` a keyed one at time `now_us` (microseconds since
    /// the Unix epoch): sets [`flags::AUTH`] and appends the trailer.
    /// Returns the datagram's length, `len + AUTH_LEN`; `buf` must have
    /// room for it.
    pub fn seal(&mut self, buf: &mut [u8], len: usize, now_us: u64) -> usize {
        // Never the same counter twice, nor a smaller one, whatever the
        // clock does while this process lives.
        let counter = now_us.max(self.last.saturating_add(1));
        self.last = counter;
        let mut p = SyncPacket::new_unchecked(&mut buf[..len + AUTH_LEN]);
        let f = p.flags();
        p.set_flags(f | flags::AUTH);
        let t = tag(&self.key, p.signed(), counter);
        p.set_trailer(counter, &t);
        len + AUTH_LEN
    }
}

/// Checks the keyed messages a receiver takes.
#[derive(Debug)]
pub struct Verifier {
    key: SyncKey,
    skew_us: u64,
    /// The highest counter taken.
    highest: Option<u64>,
    /// The last counters taken (a ring; 0 marks a free place).
    recent: [u64; RECENT],
    next: usize,
}

impl Verifier {
    /// `skew`: `max_clock_skew`, in microseconds.
    pub fn new(key: SyncKey, skew_us: u64) -> Verifier {
        Verifier {
            key,
            skew_us,
            highest: None,
            recent: [0; RECENT],
            next: 0,
        }
    }

    /// The same receiver with another key or skew: the counters it took
    /// stay taken.
    pub fn rekey(self, key: SyncKey, skew_us: u64) -> Verifier {
        Verifier {
            key,
            skew_us,
            ..self
        }
    }

    /// Whether `p` (a datagram whose header parsed) is a keyed message
    /// with a valid tag, a counter within `max_clock_skew` of `now_us`
    /// and not taken before; if so its counter is taken. Nothing is
    /// remembered of a message refused.
    pub fn check(&mut self, p: &SyncPacket<&[u8]>, now_us: u64) -> Result<u64, Refused> {
        if p.flags() & flags::AUTH == 0 {
            return Err(Refused::Unauthenticated);
        }
        let Some((counter, tag)) = p.trailer() else {
            return Err(Refused::BadLength);
        };
        if mac(&self.key, p.signed(), counter)
            .verify_truncated_left(&tag)
            .is_err()
        {
            return Err(Refused::BadTag);
        }
        if counter.abs_diff(now_us) > self.skew_us {
            return Err(Refused::Stale);
        }
        if !self.unseen(counter) {
            return Err(Refused::Replayed);
        }
        self.recent[self.next] = counter;
        self.next = (self.next + 1) % RECENT;
        self.highest = Some(self.highest.map_or(counter, |h| h.max(counter)));
        Ok(counter)
    }

    /// A counter above every one taken, or within the span of the ones
    /// remembered and not among them.
    fn unseen(&self, counter: u64) -> bool {
        let Some(highest) = self.highest else {
            return true;
        };
        if counter > highest {
            return true;
        }
        // The oldest remembered: below it nothing can be told apart from
        // a message taken and forgotten.
        let oldest = self
            .recent
            .iter()
            .copied()
            .filter(|&c| c != 0)
            .min()
            .unwrap_or(highest);
        counter > oldest && !self.recent.contains(&counter)
    }

    /// The highest counter taken (the peer's clock when it sent its
    /// latest message).
    pub fn highest(&self) -> Option<u64> {
        self.highest
    }
}

/// This machine's clock in microseconds since the Unix epoch (0 before
/// it).
pub fn wall_clock_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::sync::{Status, SyncHeader, HEADER_LEN, MAX_MESSAGE_LEN, STATUS_LEN};

    const KEY: SyncKey = SyncKey([7; 32]);
    const NOW: u64 = 1_800_000_000_000_000;
    const SKEW: u64 = 10_000_000;

    fn status(nonce: u32) -> Status {
        Status {
            nonce,
            pass: 1,
            passed: 1,
            acked: 0,
            nacked: 0,
        }
    }

    /// A keyed status message sealed at `at`.
    fn sealed(sealer: &mut Sealer, at: u64) -> Vec<u8> {
        let mut buf = [0u8; MAX_MESSAGE_LEN];
        let len = status(9).emit(&mut buf, 1, flags::PRIMARY);
        let n = sealer.seal(&mut buf, len, at);
        buf[..n].to_vec()
    }

    fn check(v: &mut Verifier, d: &[u8], now: u64) -> Result<u64, Refused> {
        let (_, p) = SyncHeader::parse(d).expect("the header parses");
        v.check(&p, now)
    }

    #[test]
    fn a_sealed_message_is_taken_once_and_still_parses_as_before() {
        let mut s = Sealer::new(KEY);
        let d = sealed(&mut s, NOW);
        assert_eq!(d.len(), HEADER_LEN + STATUS_LEN + AUTH_LEN);
        let (h, p) = SyncHeader::parse(&d).unwrap();
        assert_eq!(h.flags, flags::PRIMARY | flags::AUTH);
        assert_eq!(
            Status::parse(&p),
            Ok(status(9)),
            "an unkeyed reader steps over the trailer"
        );
        let mut v = Verifier::new(KEY, SKEW);
        assert_eq!(check(&mut v, &d, NOW), Ok(NOW));
        assert_eq!(check(&mut v, &d, NOW), Err(Refused::Replayed));
        let later = sealed(&mut s, NOW + 5);
        assert_eq!(check(&mut v, &later, NOW + 5), Ok(NOW + 5));
        assert_eq!(check(&mut v, &d, NOW + 5), Err(Refused::Replayed));
    }

    #[test]
    fn every_bit_of_a_message_and_its_trailer_is_under_the_tag() {
        let d = sealed(&mut Sealer::new(KEY), NOW);
        for i in 0..d.len() {
            for bit in 0..8 {
                let mut bad = d.clone();
                bad[i] ^= 1 << bit;
                let Ok((_, p)) = SyncHeader::parse(&bad) else {
                    continue; // the magic, version, type or length broke
                };
                let mut v = Verifier::new(KEY, SKEW);
                assert!(
                    v.check(&p, NOW).is_err(),
                    "byte {i} bit {bit} flipped and still taken"
                );
                assert_eq!(v.highest(), None, "nothing remembered of a refusal");
            }
        }
    }

    #[test]
    fn a_wrong_key_an_untagged_or_cut_message_is_refused() {
        let d = sealed(&mut Sealer::new(KEY), NOW);
        let mut other = Verifier::new(SyncKey([8; 32]), SKEW);
        assert_eq!(check(&mut other, &d, NOW), Err(Refused::BadTag));
        let mut v = Verifier::new(KEY, SKEW);
        // Without the trailer: the flag says there should be one.
        assert_eq!(
            check(&mut v, &d[..d.len() - AUTH_LEN], NOW),
            Err(Refused::BadLength)
        );
        assert_eq!(
            check(&mut v, &d[..d.len() - 1], NOW),
            Err(Refused::BadLength)
        );
        let mut longer = d.clone();
        longer.push(0);
        assert_eq!(check(&mut v, &longer, NOW), Err(Refused::BadLength));
        // An unkeyed message (as a sender without a key builds it).
        let mut buf = [0u8; MAX_MESSAGE_LEN];
        let len = status(9).emit(&mut buf, 1, 0);
        assert_eq!(
            check(&mut v, &buf[..len], NOW),
            Err(Refused::Unauthenticated)
        );
        // The flag taken off a keyed one: the tag no longer matches.
        let mut stripped = d.clone();
        stripped[11] &= !(flags::AUTH as u8);
        assert_eq!(check(&mut v, &stripped, NOW), Err(Refused::Unauthenticated));
        assert_eq!(
            check(&mut v, &d, NOW),
            Ok(NOW),
            "the genuine one still goes"
        );
    }

    #[test]
    fn a_message_older_or_newer_than_the_skew_is_stale() {
        let mut s = Sealer::new(KEY);
        let old = sealed(&mut s, NOW - SKEW - 1);
        let edge = sealed(&mut s, NOW - SKEW);
        let mut v = Verifier::new(KEY, SKEW);
        assert_eq!(check(&mut v, &old, NOW), Err(Refused::Stale));
        assert_eq!(check(&mut v, &edge, NOW), Ok(NOW - SKEW));
        let ahead = sealed(&mut Sealer::new(KEY), NOW + SKEW + 1);
        assert_eq!(check(&mut v, &ahead, NOW), Err(Refused::Stale));
        let near = sealed(&mut Sealer::new(KEY), NOW + SKEW);
        assert_eq!(check(&mut v, &near, NOW), Ok(NOW + SKEW));
    }

    #[test]
    fn counters_only_grow_even_when_the_clock_goes_back() {
        let mut s = Sealer::new(KEY);
        let a = sealed(&mut s, NOW);
        let b = sealed(&mut s, NOW - 1_000);
        let c = sealed(&mut s, NOW);
        let counter = |d: &[u8]| SyncHeader::parse(d).unwrap().1.trailer().unwrap().0;
        assert_eq!(
            [counter(&a), counter(&b), counter(&c)],
            [NOW, NOW + 1, NOW + 2]
        );
    }

    #[test]
    fn a_message_overtaken_by_the_next_is_taken_late_but_once() {
        let mut s = Sealer::new(KEY);
        let msgs: Vec<Vec<u8>> = (0..10).map(|i| sealed(&mut s, NOW + i * 100)).collect();
        let mut v = Verifier::new(KEY, SKEW);
        assert!(check(&mut v, &msgs[0], NOW).is_ok());
        assert!(check(&mut v, &msgs[2], NOW).is_ok());
        assert!(check(&mut v, &msgs[1], NOW).is_ok(), "overtaken");
        assert_eq!(check(&mut v, &msgs[1], NOW), Err(Refused::Replayed));
        for m in &msgs[3..] {
            assert!(check(&mut v, m, NOW).is_ok());
        }
        // Older than every remembered counter: cannot be told from one
        // taken and forgotten.
        let mut v = Verifier::new(KEY, SKEW);
        assert!(check(&mut v, &msgs[5], NOW).is_ok());
        assert_eq!(check(&mut v, &msgs[4], NOW), Err(Refused::Replayed));
        // Once the ring turned over, its oldest is the bound.
        let mut v = Verifier::new(KEY, SKEW);
        let mut s = Sealer::new(KEY);
        let first = sealed(&mut s, NOW);
        let skipped = sealed(&mut s, NOW + 1);
        assert!(check(&mut v, &first, NOW).is_ok());
        for i in 0..RECENT as u64 {
            let m = sealed(&mut s, NOW + 2 + i);
            assert!(check(&mut v, &m, NOW).is_ok());
        }
        assert_eq!(check(&mut v, &skipped, NOW), Err(Refused::Replayed));
    }

    #[test]
    fn a_restarted_sender_is_taken_and_its_old_life_is_not() {
        let mut life1 = Sealer::new(KEY);
        let old: Vec<Vec<u8>> = (0..3).map(|i| sealed(&mut life1, NOW + i)).collect();
        let mut v = Verifier::new(KEY, SKEW);
        for m in &old {
            assert!(check(&mut v, m, NOW).is_ok());
        }
        // A new process, a second later by the same clock.
        let mut life2 = Sealer::new(KEY);
        let new = sealed(&mut life2, NOW + 1_000_000);
        assert!(check(&mut v, &new, NOW + 1_000_000).is_ok());
        for m in &old {
            assert_eq!(check(&mut v, m, NOW + 1_000_000), Err(Refused::Replayed));
        }
    }
}
