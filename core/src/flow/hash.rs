//! Hashes of flow keys, of two kinds:
//! - fixed ([`flow_hash`], [`source_hash`]): constants, no per-process
//!   seed, because the Maglev and source-hash choice for a flow must be the
//!   same after a restart and on another box;
//! - seeded ([`IndexSeed`]): where a key sits in a worker's flow-table
//!   index. A random key per table, so that nobody outside can compute
//!   which tuples share a probe chain and flood one (with the fixed hash,
//!   8,000 crafted client tuples landed in 64 of 4M slots).

use std::fmt;
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An address family's address as flows key on it: `Ipv4Addr` or
/// `Ipv6Addr`. The flow table, its keys and conntrack are generic over it,
/// so that each family has its own table with entries sized for it (an
/// IPv4 entry stays one 64-byte cache line; an IPv6 entry takes two), and
/// the IPv4 fast path is exactly what it was.
pub trait FlowAddr: Copy + Eq + Hash + fmt::Debug + fmt::Display + Send + Sync + 'static {
    /// `0.0.0.0` or `::`.
    const UNSPECIFIED: Self;
    /// The family's index in per-family counters: 0 for IPv4, 1 for IPv6.
    const FAMILY: usize;

    /// Two addresses folded into 64 bits, starting from `k` (a secret key
    /// or a constant). For IPv4 this is the two addresses side by side,
    /// XORed with `k`: the hashes of IPv4 keys are what they were before
    /// IPv6, so Maglev picks the same reals across an upgrade.
    fn fold_pair(k: u64, x: Self, y: Self) -> u64;

    /// One address folded into 64 bits, unkeyed (source hashing, which
    /// must agree across boxes). Anyone can find addresses that fold
    /// alike: whatever must resist that takes [`Self::fold_keyed`].
    fn fold(self) -> u64;

    /// One address folded into 64 bits under a secret `k`: which
    /// addresses fold alike cannot be worked out without it (worker
    /// owners, neighbor-cache slots). For IPv4, `fold() ^ k`.
    fn fold_keyed(self, k: u64) -> u64;

    /// This family's address, if `ip` is one.
    fn from_ip(ip: IpAddr) -> Option<Self>;

    /// What per-source limits count as one source: an IPv4 address, an
    /// IPv6 address's /64 (the least a network gives one host; a host
    /// with a /64 has 2^64 addresses to spread its flows over).
    fn source(self) -> Self;

    fn to_ip(self) -> IpAddr;
}

impl FlowAddr for Ipv4Addr {
    const UNSPECIFIED: Self = Ipv4Addr::UNSPECIFIED;
    const FAMILY: usize = 0;

    #[inline(always)]
    fn fold_pair(k: u64, x: Self, y: Self) -> u64 {
        ((u64::from(u32::from(x)) << 32) | u64::from(u32::from(y))) ^ k
    }

    #[inline(always)]
    fn fold(self) -> u64 {
        u64::from(u32::from(self))
    }

    #[inline(always)]
    fn fold_keyed(self, k: u64) -> u64 {
        self.fold() ^ k
    }

    #[inline]
    fn from_ip(ip: IpAddr) -> Option<Self> {
        match ip {
            IpAddr::V4(a) => Some(a),
            IpAddr::V6(_) => None,
        }
    }

    #[inline]
    fn to_ip(self) -> IpAddr {
        IpAddr::V4(self)
    }

    #[inline]
    fn source(self) -> Self {
        self
    }
}

impl FlowAddr for Ipv6Addr {
    const UNSPECIFIED: Self = Ipv6Addr::UNSPECIFIED;
    const FAMILY: usize = 1;

    /// Two folded 64 x 64 -> 128-bit multiplies, one per address, each of
    /// its two halves (both XORed with `k`), run side by side: every bit of
    /// both full addresses counts (so Maglev spreads the clients of one
    /// /64 too), the halves are weighted differently so that swapping them
    /// or the addresses is another key, and with a secret `k` nothing of
    /// the result can be worked out offline. A chain of four mixes did the
    /// same at about twice the latency on every IPv6 packet.
    ///
    /// Both halves of each factor are keyed: a factor of 0 makes the
    /// product 0 whatever the other half, so an unkeyed half let anyone
    /// choose an interface id (`V6_X_LO`) that made every /64 hash alike,
    /// one probe chain for a flood (found in audit). With `k` = 0 (the
    /// fixed hashes) the result is what it always was.
    #[inline]
    fn fold_pair(k: u64, x: Self, y: Self) -> u64 {
        let (x, y) = (u128::from(x), u128::from(y));
        let a = folded_mul(
            (x >> 64) as u64 ^ k ^ V6_X_HI,
            x as u64 ^ k.rotate_left(29) ^ V6_X_LO,
        );
        let b = folded_mul(
            (y >> 64) as u64 ^ k.rotate_left(32) ^ V6_Y_HI,
            y as u64 ^ k.rotate_left(47) ^ V6_Y_LO,
        );
        a ^ b.rotate_left(23)
    }

    #[inline]
    fn fold(self) -> u64 {
        let x = u128::from(self);
        mix64((x >> 64) as u64 ^ V6_FOLD) ^ x as u64
    }

    /// One keyed multiply over both halves (as in [`Self::fold_pair`]):
    /// [`Self::fold`] lets anyone pick, for any prefix, the interface id
    /// that folds to a chosen value (found in audit: IPv6 sources could be
    /// chosen to share one worker whatever the owner key).
    #[inline]
    fn fold_keyed(self, k: u64) -> u64 {
        let x = u128::from(self);
        folded_mul(
            (x >> 64) as u64 ^ k ^ V6_X_HI,
            x as u64 ^ k.rotate_left(29) ^ V6_X_LO,
        ) ^ k
    }

    #[inline]
    fn from_ip(ip: IpAddr) -> Option<Self> {
        match ip {
            IpAddr::V6(a) => Some(a),
            IpAddr::V4(_) => None,
        }
    }

    #[inline]
    fn to_ip(self) -> IpAddr {
        IpAddr::V6(self)
    }

    #[inline]
    fn source(self) -> Self {
        Ipv6Addr::from(u128::from(self) & !u128::from(u64::MAX))
    }
}

/// Keeps `Ipv6Addr::fold` of `::` and of `::x` apart from IPv4's.
const V6_FOLD: u64 = 0x3c6e_f372_fe94_f82b;
/// The constants of `Ipv6Addr::fold_pair` (digits of pi and e): a factor
/// of 0 would make the product ignore the other half, so each half is
/// offset first (and keyed, where a key is given).
const V6_X_HI: u64 = 0x243f_6a88_85a3_08d3;
const V6_X_LO: u64 = 0x1319_8a2e_0370_7344;
const V6_Y_HI: u64 = 0xa409_3822_299f_31d0;
const V6_Y_LO: u64 = 0xb7e1_5162_8aed_2a6b;

/// The 128-bit product of `a` and `b`, its two halves XORed together.
#[inline(always)]
fn folded_mul(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

/// A strong 64-bit mixer (the splitmix64 finaliser).
#[inline]
pub fn mix64(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The hash of a client-side 5-tuple: what the flow table and the
/// schedulers key on.
#[inline]
pub fn flow_hash<A: FlowAddr>(
    proto: u8,
    client: A,
    client_port: u16,
    vip: A,
    vip_port: u16,
) -> u64 {
    let a = A::fold_pair(0, client, vip);
    let b = (u64::from(client_port) << 24) | (u64::from(vip_port) << 8) | u64::from(proto);
    mix64(a ^ mix64(b ^ 0x9e37_79b9_7f4a_7c15))
}

/// The secret key of one flow table's index hash: random per table (from
/// the standard library's per-process random source), never derived from
/// packet data, never exported. Not a cryptographic MAC: it keeps tuples
/// that collide from being computable offline, which is what a hash flood
/// needs.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct IndexSeed {
    k0: u64,
    k1: u64,
}

impl std::fmt::Debug for IndexSeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key stays secret, even in logs.
        f.write_str("IndexSeed(..)")
    }
}

impl IndexSeed {
    /// A fresh random key.
    pub fn random() -> IndexSeed {
        IndexSeed {
            k0: crate::random::secret_u64(),
            k1: crate::random::secret_u64(),
        }
    }

    /// A key given by the caller (tests and benchmarks that must repeat).
    pub const fn fixed(k0: u64, k1: u64) -> IndexSeed {
        IndexSeed { k0, k1 }
    }

    /// The index hash of a client-side key.
    #[inline]
    pub fn flow<A: FlowAddr>(
        &self,
        proto: u8,
        client: A,
        client_port: u16,
        vip: A,
        vip_port: u16,
    ) -> u64 {
        self.mix(proto, client, client_port, vip, vip_port, FLOW_DOMAIN)
    }

    /// The index hash of a NAT reply's key (its own domain, so that the two
    /// keys of one flow do not collide by construction).
    #[inline]
    pub fn reply<A: FlowAddr>(
        &self,
        proto: u8,
        real: A,
        real_port: u16,
        client: A,
        client_port: u16,
    ) -> u64 {
        self.mix(proto, real, real_port, client, client_port, REPLY_DOMAIN)
    }

    #[inline]
    fn mix<A: FlowAddr>(
        &self,
        proto: u8,
        x: A,
        x_port: u16,
        y: A,
        y_port: u16,
        domain: u64,
    ) -> u64 {
        let b = (u64::from(x_port) << 24) | (u64::from(y_port) << 8) | u64::from(proto);
        // The port half goes through a keyed mix, and the address half is
        // keyed before the final one: without the keys, which tuples share
        // low bits of the result cannot be worked out. (A single folded
        // 64 x 64 -> 128-bit multiply was tried instead: 2-5 % faster at
        // 1k flows, 3-4 % slower at 1M, within what code placement moves.)
        mix64(A::fold_pair(self.k0, x, y) ^ mix64(b ^ self.k1 ^ domain))
    }
}

const FLOW_DOMAIN: u64 = 0x9e37_79b9_7f4a_7c15;
const REPLY_DOMAIN: u64 = 0xd6e8_feb8_6659_fd93;

/// The hash of a client address alone (source hashing, persistence).
#[inline]
pub fn source_hash<A: FlowAddr>(client: A) -> u64 {
    mix64(client.fold() ^ 0x2545_f491_4f6c_dd1d)
}

static OWNER_KEY: std::sync::OnceLock<u64> = std::sync::OnceLock::new();

/// The key of [`owner_of`]: random, once per process (every worker and the
/// sync dispatcher of one appliance agree; nothing outside it needs to).
fn owner_key() -> u64 {
    *OWNER_KEY.get_or_init(crate::random::secret_u64)
}

/// Fixes [`owner_of`]'s key before its first use, so that which worker owns
/// a client is the same in every run: for the fuzz harness, whose inputs
/// must replay alike in another process. Whether the key is now `key`.
pub fn fix_owner_key(key: u64) -> bool {
    *OWNER_KEY.get_or_init(|| key) == key
}

/// The worker that owns every flow of `client`: both directions of a NAT
/// flow carry the client address, so each can be steered to its owner, and
/// all flows of one client (persistence) share one worker. Keyed per
/// process: with a fixed hash, a flood from sources chosen to belong to
/// one worker made every other worker hand its packets to that one, whose
/// hand-off rings then held the mbuf pool (found in review).
#[inline]
pub fn owner_of<A: FlowAddr>(client: A, workers: usize) -> usize {
    if workers <= 1 {
        return 0;
    }
    // The top 32 bits scaled to [0, workers) by a multiply (Lemire's
    // range reduction) rather than a division on every packet.
    let h = mix64(client.fold_keyed(owner_key()));
    (((h >> 32) * workers as u64) >> 32) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv6Addr;

    #[test]
    fn hashes_are_fixed_across_runs() {
        // Pinned values: changing them moves every Maglev flow on upgrade.
        let h = flow_hash(
            6,
            Ipv4Addr::new(198, 19, 0, 10),
            40000,
            Ipv4Addr::new(198, 18, 1, 100),
            80,
        );
        assert_eq!(
            h,
            flow_hash(
                6,
                Ipv4Addr::new(198, 19, 0, 10),
                40000,
                Ipv4Addr::new(198, 18, 1, 100),
                80
            )
        );
        assert_ne!(
            h,
            flow_hash(
                17,
                Ipv4Addr::new(198, 19, 0, 10),
                40000,
                Ipv4Addr::new(198, 18, 1, 100),
                80
            )
        );
        assert_eq!(mix64(0), 0);
        assert_eq!(mix64(1), 0x5692_161d_100b_05e5);
        // IPv4 keys hash as they did before IPv6 came.
        assert_eq!(h, 0x230f_0613_d06d_788f);
    }

    #[test]
    fn ipv6_hashes_cover_every_bit_of_both_addresses() {
        let c: Ipv6Addr = "2001:2:0:10::10".parse().unwrap();
        let v: Ipv6Addr = "2001:2:0:1::100".parse().unwrap();
        let h = flow_hash(6, c, 40000, v, 80);
        let seed = IndexSeed::random();
        let (ih, rh) = (
            seed.flow(6, c, 40000, v, 80),
            seed.reply(6, c, 40000, v, 80),
        );
        for bit in 0..128 {
            let flip = |a: Ipv6Addr| Ipv6Addr::from(u128::from(a) ^ (1 << bit));
            assert_ne!(h, flow_hash(6, flip(c), 40000, v, 80), "client bit {bit}");
            assert_ne!(h, flow_hash(6, c, 40000, flip(v), 80), "vip bit {bit}");
            assert_ne!(ih, seed.flow(6, flip(c), 40000, v, 80), "client bit {bit}");
            assert_ne!(rh, seed.reply(6, flip(c), 40000, v, 80), "real bit {bit}");
            assert_ne!(source_hash(c), source_hash(flip(c)), "source bit {bit}");
        }
        // Swapping the two addresses is another key.
        assert_ne!(h, flow_hash(6, v, 40000, c, 80));
        let mut count = [0usize; 4];
        for i in 0..40_000u128 {
            count[owner_of(Ipv6Addr::from(u128::from(c) + (i << 64)), 4)] += 1;
        }
        for n in count {
            assert!((9_000..11_000).contains(&n), "{count:?}");
        }
    }

    #[test]
    fn seeds_differ_and_move_every_key() {
        let (a, b) = (IndexSeed::random(), IndexSeed::random());
        assert_ne!(a, b, "two tables, two keys");
        let c = Ipv4Addr::new(198, 19, 0, 10);
        let v = Ipv4Addr::new(198, 18, 1, 100);
        assert_ne!(a.flow(6, c, 1000, v, 80), b.flow(6, c, 1000, v, 80));
        assert_ne!(a.flow(6, c, 1000, v, 80), a.reply(6, c, 1000, v, 80));
        assert_eq!(format!("{a:?}"), "IndexSeed(..)");
    }

    #[test]
    fn owners_spread_over_workers() {
        let mut count = [0usize; 4];
        for i in 0..40_000u32 {
            count[owner_of(Ipv4Addr::from(0xc612_0000 + i), 4)] += 1;
        }
        for c in count {
            assert!((9_000..11_000).contains(&c), "{count:?}");
        }
        assert_eq!(owner_of(Ipv4Addr::new(1, 2, 3, 4), 1), 0);
    }

    /// IPv6 sources chosen so that their unkeyed fold is one value (any
    /// prefix, the interface id that cancels its mix) spread over every
    /// worker: the owner is taken from a keyed fold (found in audit: they
    /// all went to one worker whatever the owner key).
    #[test]
    fn ipv6_owners_cannot_be_picked_from_outside() {
        let target = 0x1234_5678_9abc_def0_u64;
        let mut count = [0usize; 4];
        for i in 0..4_000u64 {
            let hi = 0x2001_0db8_0000_0000_u64 + (i << 16);
            let lo = mix64(hi ^ V6_FOLD) ^ target;
            let a = Ipv6Addr::from((u128::from(hi) << 64) | u128::from(lo));
            assert_eq!(a.fold(), target);
            count[owner_of(a, 4)] += 1;
        }
        for c in count {
            assert!((800..1_200).contains(&c), "{count:?}");
        }
    }

    /// Sources an attacker picked for one worker under a fixed hash (the
    /// one `owner_of` used before it was keyed) spread over all of them.
    #[test]
    fn owners_cannot_be_picked_from_outside() {
        let fixed = |c: Ipv4Addr| (((source_hash(c) >> 32) * 4) >> 32) as usize;
        let picked: Vec<Ipv4Addr> = (0..u32::MAX)
            .map(|i| Ipv4Addr::from(0xc612_0000 + i))
            .filter(|&c| fixed(c) == 0)
            .take(4_000)
            .collect();
        let mut count = [0usize; 4];
        for &c in &picked {
            count[owner_of(c, 4)] += 1;
        }
        for c in count {
            assert!((800..1_200).contains(&c), "{count:?}");
        }
    }
}
