//! Keyed sync messages (`[sync] key_file`): a sender tags every message,
//! a receiver takes only messages with a valid tag, from the other role,
//! with a fresh time and a counter it has not taken before.
//!
//! Without a key anyone who can send a datagram from the peer's address
//! (a spoofed source is enough over UDP) can install flows in a backup's
//! tables, remove them, or tell it that a dead primary is alive. With it:
//! - **Authentic:** the tag is HMAC-SHA256 over a label naming the
//!   sender's role (primary or backup), the whole message (header and
//!   flags included) and its counter, keyed with the pair's key, cut to 16
//!   bytes and compared in constant time. A message without a tag is
//!   refused (`unauthenticated`), one whose tag does not match is refused
//!   (`bad_tag`). The label is why an appliance's own messages, sent back
//!   to it from the peer's address, are refused too (`bad_tag`): both
//!   ends hold the same key, and without it an active backup told "I am
//!   active" by its own reflected heartbeat would stand down.
//! - **Fresh:** the counter is the sender's clock in microseconds, so a
//!   message older or newer than `max_clock_skew` by this appliance's
//!   clock is refused (`stale`): a message recorded earlier and sent
//!   again later works for at most that long, even to an appliance that
//!   has just restarted and remembers nothing.
//! - **Once:** the sender's counter grows with every message, across its
//!   restarts too (it is its clock). A receiver keeps the [`RECENT`]
//!   highest counters it took and takes a counter that is not among them
//!   and, once it holds that many, is above the lowest of them (a
//!   datagram overtaken by later ones is still taken); anything else is
//!   refused (`replayed`). A counter it took and no longer keeps was the
//!   lowest when it went, and the lowest only grows: it stays refused.
//! - **A second key while the key changes:** a receiver may also take
//!   tags made with `accept_key_file`'s key, which it never sends with.
//!   A pair then changes its key in three rounds of reloads, each in any
//!   order, with neither refusing the other at any moment: both accept
//!   the new key, both send with it (accepting the old one), both drop
//!   the old one. One set of counters covers both keys: a message taken
//!   with one key and sealed again with the other is still `replayed`.
//!
//! The cost: the pair's clocks must agree within `max_clock_skew` (NTP);
//! one clock stepped further than that makes the other refuse its
//! messages (`stale`) until it is right again, and the peer then counts
//! as silent. A sender's counters never go back while it runs: if its
//! clock jumped ahead and came back, its messages stay ahead of its clock
//! (stale to the peer once more than `max_clock_skew` ahead) until the
//! clock has caught up, or the appliance restarts. A sender whose clock
//! went back across a restart, by less than `max_clock_skew`, is refused
//! (`replayed`) until its clock is past where it was: at most twice
//! `max_clock_skew`. And the clocks must be honest: a message sealed
//! while the sender's clock ran ahead is fresh when real time gets there,
//! so whoever can move a clock ahead (unauthenticated NTP) and record the
//! messages can replay them then. All of it is counted and logged by the
//! sync thread.

use hmac::{Hmac, Mac};
use lb_config::{SyncKey, SyncRole};
use sha2::Sha256;

use super::Refused;
use crate::wire::sync::{counter_bytes, flags, SyncPacket, AUTH_LEN, TAG_LEN};

type HmacSha256 = Hmac<Sha256>;

/// How many taken counters a receiver keeps, for messages that arrive out
/// of order.
pub const RECENT: usize = 64;

/// What the tag of a message from `sender` covers first: its role, so
/// that a message is good only in one direction.
fn label(sender: SyncRole) -> &'static [u8] {
    match sender {
        SyncRole::Primary => b"lb-sync 1 from primary\0",
        SyncRole::Backup => b"lb-sync 1 from backup\0",
    }
}

/// The tag of a message from `sender` (`signed`: its `length` bytes) with
/// `counter`.
pub fn tag(key: &SyncKey, sender: SyncRole, signed: &[u8], counter: u64) -> [u8; TAG_LEN] {
    let mut out = [0u8; TAG_LEN];
    out.copy_from_slice(&mac(key, sender, signed, counter).finalize().into_bytes()[..TAG_LEN]);
    out
}

fn mac(key: &SyncKey, sender: SyncRole, signed: &[u8], counter: u64) -> HmacSha256 {
    // An HMAC key may have any length: `new_from_slice` cannot fail.
    let mut m = match HmacSha256::new_from_slice(&key.0) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    m.update(label(sender));
    m.update(signed);
    m.update(&counter_bytes(counter));
    m
}

/// The role at the other end of a pair.
fn other(role: SyncRole) -> SyncRole {
    match role {
        SyncRole::Primary => SyncRole::Backup,
        SyncRole::Backup => SyncRole::Primary,
    }
}

/// Tags the messages a sender of `role` builds.
#[derive(Debug)]
pub struct Sealer {
    key: SyncKey,
    role: SyncRole,
    last: u64,
}

impl Sealer {
    pub fn new(key: SyncKey, role: SyncRole) -> Sealer {
        Sealer { key, role, last: 0 }
    }

    /// The same sender with another key: its counters go on.
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
        // clock does while this process lives. (Starting again from a
        // clock that came back would land below counters the peer took,
        // if it took any while ours ran ahead, and have it refuse us.)
        let counter = now_us.max(self.last.saturating_add(1));
        self.last = counter;
        let mut p = SyncPacket::new_unchecked(&mut buf[..len + AUTH_LEN]);
        debug_assert_eq!(usize::from(p.len()), len, "a finished message");
        let f = p.flags();
        p.set_flags(f | flags::AUTH);
        let t = tag(&self.key, self.role, p.signed(), counter);
        p.set_trailer(counter, &t);
        len + AUTH_LEN
    }
}

/// Checks the keyed messages a receiver of `role` takes (from the other
/// role).
#[derive(Debug)]
pub struct Verifier {
    key: SyncKey,
    /// `accept_key_file`'s key: a tag made with it is as good.
    accept: Option<SyncKey>,
    /// Whether the last message taken was tagged with `accept`.
    last_accepted: bool,
    peer: SyncRole,
    skew_us: u64,
    /// The highest counters taken, at most [`RECENT`] (in no order).
    taken: [u64; RECENT],
    len: usize,
}

impl Verifier {
    /// `role`: this appliance's; `skew_us`: `max_clock_skew`, in
    /// microseconds.
    pub fn new(key: SyncKey, role: SyncRole, skew_us: u64) -> Verifier {
        Verifier {
            key,
            accept: None,
            last_accepted: false,
            peer: other(role),
            skew_us,
            taken: [0; RECENT],
            len: 0,
        }
    }

    /// The same receiver taking tags made with `accept` too
    /// (`accept_key_file`), or only with its key (None).
    pub fn accepting(self, accept: Option<SyncKey>) -> Verifier {
        Verifier { accept, ..self }
    }

    /// The same receiver with other keys or skew: the counters it took
    /// stay taken.
    pub fn rekey(self, key: SyncKey, accept: Option<SyncKey>, skew_us: u64) -> Verifier {
        Verifier {
            key,
            accept,
            skew_us,
            ..self
        }
    }

    /// The keys a tag may be made with: the key, then the accepted one.
    fn keys(&self) -> impl Iterator<Item = &SyncKey> {
        std::iter::once(&self.key).chain(self.accept.as_ref())
    }

    /// Whether `p`, refused as `bad_tag`, was sealed with one of the keys
    /// by an appliance of this one's own role: a pair of two primaries or
    /// two backups, or this appliance's message sent back to it. For the
    /// log only: such a message is refused all the same.
    pub fn sealed_by_own_role(&self, p: &SyncPacket<&[u8]>) -> bool {
        p.trailer().is_some_and(|(counter, tag)| {
            self.keys().any(|k| {
                mac(k, other(self.peer), p.signed(), counter)
                    .verify_truncated_left(&tag)
                    .is_ok()
            })
        })
    }

    /// Whether the last message taken was tagged with the accepted key
    /// (`accept_key_file`), not with the key: while a pair changes its
    /// key, the peer is a round behind this appliance or ahead of it.
    pub fn last_took_accepted(&self) -> bool {
        self.last_accepted
    }

    /// Whether `p` (a datagram whose header parsed) is a keyed message
    /// from the peer's role with a valid tag, a counter within
    /// `max_clock_skew` of `now_us` and not taken before; if so its
    /// counter is taken. Nothing is remembered of a message refused.
    pub fn check(&mut self, p: &SyncPacket<&[u8]>, now_us: u64) -> Result<u64, Refused> {
        if p.flags() & flags::AUTH == 0 {
            return Err(Refused::Unauthenticated);
        }
        let Some((counter, tag)) = p.trailer() else {
            return Err(Refused::BadLength);
        };
        let Some(by) = self.keys().position(|k| {
            mac(k, self.peer, p.signed(), counter)
                .verify_truncated_left(&tag)
                .is_ok()
        }) else {
            return Err(Refused::BadTag);
        };
        if counter.abs_diff(now_us) > self.skew_us {
            return Err(Refused::Stale);
        }
        let kept = &self.taken[..self.len];
        let lowest = kept.iter().copied().enumerate().min_by_key(|&(_, c)| c);
        if kept.contains(&counter) {
            return Err(Refused::Replayed);
        }
        match lowest {
            // Full: the lowest kept goes, if the new one is above it.
            Some((at, low)) if self.len == RECENT => {
                if counter <= low {
                    return Err(Refused::Replayed);
                }
                self.taken[at] = counter;
            }
            _ => {
                self.taken[self.len] = counter;
                self.len += 1;
            }
        }
        self.last_accepted = by == 1;
        Ok(counter)
    }

    /// The highest counter taken (the peer's clock when it sent its
    /// latest message).
    pub fn highest(&self) -> Option<u64> {
        self.taken[..self.len].iter().copied().max()
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
        let mut s = Sealer::new(KEY, SyncRole::Primary);
        let d = sealed(&mut s, NOW);
        assert_eq!(d.len(), HEADER_LEN + STATUS_LEN + AUTH_LEN);
        let (h, p) = SyncHeader::parse(&d).unwrap();
        assert_eq!(h.flags, flags::PRIMARY | flags::AUTH);
        assert_eq!(
            Status::parse(&p),
            Ok(status(9)),
            "an unkeyed reader steps over the trailer"
        );
        let mut v = Verifier::new(KEY, SyncRole::Backup, SKEW);
        assert_eq!(check(&mut v, &d, NOW), Ok(NOW));
        assert_eq!(check(&mut v, &d, NOW), Err(Refused::Replayed));
        let later = sealed(&mut s, NOW + 5);
        assert_eq!(check(&mut v, &later, NOW + 5), Ok(NOW + 5));
        assert_eq!(check(&mut v, &d, NOW + 5), Err(Refused::Replayed));
    }

    #[test]
    fn every_bit_of_a_message_and_its_trailer_is_under_the_tag() {
        let d = sealed(&mut Sealer::new(KEY, SyncRole::Primary), NOW);
        for i in 0..d.len() {
            for bit in 0..8 {
                let mut bad = d.clone();
                bad[i] ^= 1 << bit;
                let Ok((_, p)) = SyncHeader::parse(&bad) else {
                    continue; // the magic, version, type or length broke
                };
                let mut v = Verifier::new(KEY, SyncRole::Backup, SKEW);
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
        let d = sealed(&mut Sealer::new(KEY, SyncRole::Primary), NOW);
        let mut other = Verifier::new(SyncKey([8; 32]), SyncRole::Backup, SKEW);
        assert_eq!(check(&mut other, &d, NOW), Err(Refused::BadTag));
        let mut v = Verifier::new(KEY, SyncRole::Backup, SKEW);
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
        // The flag taken off a keyed one: unkeyed now, so refused as
        // such (and the tag would no longer match).
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
        let mut s = Sealer::new(KEY, SyncRole::Primary);
        let old = sealed(&mut s, NOW - SKEW - 1);
        let edge = sealed(&mut s, NOW - SKEW);
        let mut v = Verifier::new(KEY, SyncRole::Backup, SKEW);
        assert_eq!(check(&mut v, &old, NOW), Err(Refused::Stale));
        assert_eq!(check(&mut v, &edge, NOW), Ok(NOW - SKEW));
        let ahead = sealed(&mut Sealer::new(KEY, SyncRole::Primary), NOW + SKEW + 1);
        assert_eq!(check(&mut v, &ahead, NOW), Err(Refused::Stale));
        let near = sealed(&mut Sealer::new(KEY, SyncRole::Primary), NOW + SKEW);
        assert_eq!(check(&mut v, &near, NOW), Ok(NOW + SKEW));
    }

    #[test]
    fn counters_only_grow_even_when_the_clock_goes_back() {
        let mut s = Sealer::new(KEY, SyncRole::Primary);
        let a = sealed(&mut s, NOW);
        let b = sealed(&mut s, NOW - 1_000);
        let c = sealed(&mut s, NOW);
        assert_eq!(
            [counter(&a), counter(&b), counter(&c)],
            [NOW, NOW + 1, NOW + 2]
        );
        // A clock that jumped ahead and came back: still never back.
        let near = sealed(&mut s, NOW + 20 + SKEW / 2);
        let after = sealed(&mut s, NOW + 30);
        assert_eq!(counter(&after), counter(&near) + 1);
    }

    fn counter(d: &[u8]) -> u64 {
        SyncHeader::parse(d).unwrap().1.trailer().unwrap().0
    }

    /// Both ends hold the same key: a message sent back to its sender
    /// from the peer's address must not pass for the peer's.
    #[test]
    fn an_appliances_own_message_reflected_to_it_is_refused() {
        let from_primary = sealed(&mut Sealer::new(KEY, SyncRole::Primary), NOW);
        let mut primary = Verifier::new(KEY, SyncRole::Primary, SKEW);
        assert_eq!(
            check(&mut primary, &from_primary, NOW),
            Err(Refused::BadTag)
        );
        let (_, p) = SyncHeader::parse(&from_primary).unwrap();
        assert!(primary.sealed_by_own_role(&p), "told apart for the log");
        let stranger = Verifier::new(SyncKey([8; 32]), SyncRole::Primary, SKEW);
        assert!(!stranger.sealed_by_own_role(&p));
        let mut backup = Verifier::new(KEY, SyncRole::Backup, SKEW);
        assert_eq!(check(&mut backup, &from_primary, NOW), Ok(NOW));
        let from_backup = sealed(&mut Sealer::new(KEY, SyncRole::Backup), NOW + 1);
        assert_eq!(check(&mut backup, &from_backup, NOW), Err(Refused::BadTag));
        assert_eq!(check(&mut primary, &from_backup, NOW), Ok(NOW + 1));
    }

    /// Found in review: with the last counters *taken* kept, one message
    /// overtaken by the next let every later one be replayed.
    #[test]
    fn a_reordering_opens_no_way_to_replay() {
        let mut s = Sealer::new(KEY, SyncRole::Primary);
        let msgs: Vec<Vec<u8>> = (0..200).map(|i| sealed(&mut s, NOW + i)).collect();
        let mut v = Verifier::new(KEY, SyncRole::Backup, SKEW);
        for i in [0, 2, 1] {
            assert!(check(&mut v, &msgs[i], NOW).is_ok());
        }
        for (i, m) in msgs.iter().enumerate().skip(3) {
            assert!(check(&mut v, m, NOW).is_ok());
            for old in &msgs[..=i] {
                assert_eq!(check(&mut v, old, NOW), Err(Refused::Replayed));
            }
        }
    }

    proptest::proptest! {
        /// Against a set of everything taken: whatever the order and
        /// however often each message arrives, none is taken twice, and
        /// one that arrives for the first time above every counter taken
        /// is always taken.
        #[test]
        fn no_counter_is_taken_twice_in_any_order(
            deliveries in proptest::collection::vec(0usize..150, 1..600)
        ) {
            let mut s = Sealer::new(KEY, SyncRole::Primary);
            let msgs: Vec<Vec<u8>> = (0..150).map(|i| sealed(&mut s, NOW + i)).collect();
            let mut v = Verifier::new(KEY, SyncRole::Backup, SKEW);
            let mut taken = std::collections::HashSet::new();
            for i in deliveries {
                let highest = taken.iter().copied().max();
                match check(&mut v, &msgs[i], NOW) {
                    Ok(c) => proptest::prop_assert!(taken.insert(c), "counter {} taken twice", c),
                    Err(why) => {
                        proptest::prop_assert_eq!(why, Refused::Replayed);
                        proptest::prop_assert!(
                            highest.is_some_and(|h| NOW + i as u64 <= h),
                            "message {} refused above everything taken", i
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn a_message_overtaken_by_the_next_is_taken_late_but_once() {
        let mut s = Sealer::new(KEY, SyncRole::Primary);
        let msgs: Vec<Vec<u8>> = (0..10).map(|i| sealed(&mut s, NOW + i * 100)).collect();
        let mut v = Verifier::new(KEY, SyncRole::Backup, SKEW);
        assert!(check(&mut v, &msgs[0], NOW).is_ok());
        assert!(check(&mut v, &msgs[2], NOW).is_ok());
        assert!(check(&mut v, &msgs[1], NOW).is_ok(), "overtaken");
        assert_eq!(check(&mut v, &msgs[1], NOW), Err(Refused::Replayed));
        for m in &msgs[3..] {
            assert!(check(&mut v, m, NOW).is_ok());
        }
        // Until it keeps RECENT counters it keeps every one taken: an
        // older message never taken is taken (once).
        let mut v = Verifier::new(KEY, SyncRole::Backup, SKEW);
        assert!(check(&mut v, &msgs[5], NOW).is_ok());
        assert!(check(&mut v, &msgs[4], NOW).is_ok());
        assert_eq!(check(&mut v, &msgs[4], NOW), Err(Refused::Replayed));
        // Once full, the lowest kept is the bound: one below it cannot be
        // told from one taken and no longer kept.
        let mut v = Verifier::new(KEY, SyncRole::Backup, SKEW);
        let mut s = Sealer::new(KEY, SyncRole::Primary);
        let first = sealed(&mut s, NOW);
        let skipped = sealed(&mut s, NOW + 1);
        assert!(check(&mut v, &first, NOW).is_ok());
        for i in 0..RECENT as u64 {
            let m = sealed(&mut s, NOW + 2 + i);
            assert!(check(&mut v, &m, NOW).is_ok());
        }
        assert_eq!(check(&mut v, &skipped, NOW), Err(Refused::Replayed));
    }

    /// `accept_key_file`: the second key's tags are taken as the key's
    /// (and told apart), a third key's are not, and one set of counters
    /// covers both keys.
    #[test]
    fn a_second_accepted_key_is_taken_as_the_key_and_shares_its_counters() {
        const NEW: SyncKey = SyncKey([9; 32]);
        let mut v = Verifier::new(KEY, SyncRole::Backup, SKEW).accepting(Some(NEW));
        let by_key = sealed(&mut Sealer::new(KEY, SyncRole::Primary), NOW);
        let by_new = sealed(&mut Sealer::new(NEW, SyncRole::Primary), NOW + 1);
        assert_eq!(check(&mut v, &by_new, NOW), Ok(NOW + 1));
        assert!(v.last_took_accepted());
        assert_eq!(check(&mut v, &by_key, NOW), Ok(NOW));
        assert!(!v.last_took_accepted());
        let third = sealed(
            &mut Sealer::new(SyncKey([10; 32]), SyncRole::Primary),
            NOW + 2,
        );
        assert_eq!(check(&mut v, &third, NOW), Err(Refused::BadTag));
        assert!(!v.last_took_accepted(), "a refusal changes nothing");
        // The same counter under the other key: the same message to a
        // replay window, whichever key sealed it.
        let again = sealed(&mut Sealer::new(NEW, SyncRole::Primary), NOW);
        assert_eq!(counter(&again), NOW);
        assert_eq!(check(&mut v, &again, NOW), Err(Refused::Replayed));
        // The own role's tag, with either key, is refused and told apart.
        let own = sealed(&mut Sealer::new(NEW, SyncRole::Backup), NOW + 3);
        assert_eq!(check(&mut v, &own, NOW), Err(Refused::BadTag));
        let (_, p) = SyncHeader::parse(&own).unwrap();
        assert!(v.sealed_by_own_role(&p));
        // Rekeyed without the second key: its tags are refused again, the
        // counters taken stay taken.
        let mut v = v.rekey(KEY, None, SKEW);
        let later = sealed(&mut Sealer::new(NEW, SyncRole::Primary), NOW + 4);
        assert_eq!(check(&mut v, &later, NOW), Err(Refused::BadTag));
        assert!(!v.sealed_by_own_role(&p));
        let mut s = Sealer::new(KEY, SyncRole::Primary);
        assert_eq!(
            check(&mut v, &sealed(&mut s, NOW), NOW),
            Err(Refused::Replayed)
        );
        assert_eq!(check(&mut v, &sealed(&mut s, NOW + 5), NOW), Ok(NOW + 5));
    }

    #[test]
    fn a_restarted_sender_is_taken_and_its_old_life_is_not() {
        let mut life1 = Sealer::new(KEY, SyncRole::Primary);
        let old: Vec<Vec<u8>> = (0..3).map(|i| sealed(&mut life1, NOW + i)).collect();
        let mut v = Verifier::new(KEY, SyncRole::Backup, SKEW);
        for m in &old {
            assert!(check(&mut v, m, NOW).is_ok());
        }
        // A new process, a second later by the same clock.
        let mut life2 = Sealer::new(KEY, SyncRole::Primary);
        let new = sealed(&mut life2, NOW + 1_000_000);
        assert!(check(&mut v, &new, NOW + 1_000_000).is_ok());
        for m in &old {
            assert_eq!(check(&mut v, m, NOW + 1_000_000), Err(Refused::Replayed));
        }
    }
}
