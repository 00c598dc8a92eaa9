//! SYN cookies: the sequence number the proxy answers a SYN with, from
//! which it can tell, when the client's ACK comes back, that the client
//! really sent that SYN from that address, and what its SYN said.
//!
//! A cookie is 32 bits:
//!
//! | bits  | what |
//! | ----- | ---- |
//! | 31..8 | MAC: 24 bits of SipHash-2-4 over (client address and port, VIP and port, client ISN, time counter, bits 7..1); IPv6 addresses whole, all 128 bits of each |
//! | 7..6  | the client's MSS, as an index into [`MSS_TABLE`] ([`MSS_TABLE6`] for IPv6; the largest entry not above it) |
//! | 5..2  | the client's window scale (0..=14), 15 when it sent none |
//! | 1     | SACK permitted |
//! | 0     | the low bit of the time counter |
//!
//! The time counter is the worker clock in units of [`PERIOD_MS`] (65.536
//! s). A cookie checks against the counter whose low bit it carries, the
//! current one or the one before, so an ACK is accepted from 65.5 s up to
//! 131 s after its SYN-ACK, never later. The key is a per-process random
//! 128-bit secret shared by all workers (a client's SYN and ACK reach the
//! same worker anyway: flows are owned by client address), kept across
//! reloads and lost with the process (cookies in flight then fail, and
//! clients retry).
//!
//! Forgery: without the key, an ACK with a made-up cookie passes with
//! probability 2^-24 (the MAC) per try, whatever the options bits say,
//! since they are under the MAC. At 1 Mpps of spoofed ACKs that is one
//! accepted every 17 s or so, each costing one flow entry and a SYN to a
//! real (what every spoofed SYN cost without the proxy), so a flood of
//! ACKs gains an attacker nothing over a flood of SYNs. Linux's cookies
//! are of the same strength (24-bit MAC).

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::OnceLock;

use super::siphash::{siphash24, SipKey};

/// One period of the time counter, in milliseconds of the worker clock.
pub const PERIOD_MS: u32 = 1 << PERIOD_SHIFT;
const PERIOD_SHIFT: u32 = 16;

/// The MSS values an IPv4 cookie can carry (as Linux's, roughly: the
/// minimum, a tunnelled path, and Ethernet with and without timestamps'
/// worth of slack).
pub const MSS_TABLE: [u16; 4] = [536, 1220, 1440, 1460];

/// The MSS values an IPv6 cookie can carry (as Linux's `msstab` for IPv6:
/// the IPv6 minimum MTU, a PPPoE or 6in4 path, Ethernet, and jumbo
/// frames, each less 60 bytes of headers). Found in review: with IPv4's
/// table an IPv6 client behind PPPoE (MSS 1432) was cut to 1220, and one
/// that sent no MSS to IPv4's default of 536 rather than IPv6's 1220.
pub const MSS_TABLE6: [u16; 4] = [1220, 1420, 1440, 8940];

/// The table of a family (`FlowAddr::FAMILY`: 0 IPv4, 1 IPv6).
fn mss_table(family: usize) -> &'static [u16; 4] {
    if family == 1 {
        &MSS_TABLE6
    } else {
        &MSS_TABLE
    }
}

const NO_WSCALE: u32 = 15;

/// What a cookie carries of the client's SYN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CookieOptions {
    /// From [`MSS_TABLE`] (IPv4) or [`MSS_TABLE6`] (IPv6).
    pub mss: u16,
    /// The client's window-scale shift, if it sent one.
    pub wscale: Option<u8>,
    pub sack_permitted: bool,
}

impl CookieOptions {
    /// What can be carried of a SYN's MSS (None: the family's default,
    /// RFC 9293's 536 for IPv4, 1220 for IPv6), window scale and SACK
    /// permitted, for address family `family` (`FlowAddr::FAMILY`).
    pub fn from_syn(
        family: usize,
        mss: Option<u16>,
        wscale: Option<u8>,
        sack_permitted: bool,
    ) -> CookieOptions {
        let table = mss_table(family);
        let mss = mss.unwrap_or(table[0]);
        let i = table.iter().rposition(|&m| m <= mss).unwrap_or(0);
        CookieOptions {
            mss: table[i],
            wscale: wscale.map(|w| w.min(14)),
            sack_permitted,
        }
    }

    /// Bits 7..1 of the cookie.
    fn bits(&self, family: usize) -> u32 {
        let table = mss_table(family);
        let mss = table.iter().position(|&m| m == self.mss).unwrap_or(0) as u32;
        let ws = self.wscale.map_or(NO_WSCALE, |w| u32::from(w.min(14)));
        (mss << 6) | (ws << 2) | (u32::from(self.sack_permitted) << 1)
    }

    /// What `cookie` of family `family` carries, read from its option
    /// bits without checking its MAC: only for a cookie that checked out
    /// already (a waiting flow keeps its cookie, and rebuilds its SYN to
    /// the real from it).
    pub fn carried(family: usize, cookie: u32) -> CookieOptions {
        CookieOptions::from_bits(family, cookie & 0xfe)
    }

    fn from_bits(family: usize, bits: u32) -> CookieOptions {
        let ws = (bits >> 2) & 0xf;
        CookieOptions {
            mss: mss_table(family)[((bits >> 6) & 3) as usize],
            wscale: (ws != NO_WSCALE).then_some(ws.min(14) as u8),
            sack_permitted: bits & 2 != 0,
        }
    }
}

/// The connection a cookie is for, as the client addressed it (IPv4, or
/// IPv6 for a NAT66 service).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CookieTuple<A = Ipv4Addr> {
    pub client: A,
    pub client_port: u16,
    pub vip: A,
    pub vip_port: u16,
}

/// An address family a cookie can be made for: how its tuple goes into
/// the MAC. The message is the same layout for both (addresses, ports,
/// ISN, counter, bits), each address in full; the two lengths differ, so
/// an IPv4 tuple and an IPv6 one never feed the MAC the same bytes.
pub trait CookieAddr: Copy {
    /// As `FlowAddr::FAMILY`: 0 IPv4, 1 IPv6 (which MSS table).
    const FAMILY: usize;

    fn mac(key: SipKey, t: &CookieTuple<Self>, isn: u32, counter: u32, bits: u8) -> u64;

    /// The MAC of the address pair alone (for [`CookieKey::ts_offset`]):
    /// its message is shorter than a cookie's, and SipHash takes the
    /// length in, so the two never share an input.
    fn pair(key: SipKey, client: Self, vip: Self) -> u64;
}

impl CookieAddr for Ipv4Addr {
    const FAMILY: usize = 0;

    fn mac(key: SipKey, t: &CookieTuple<Ipv4Addr>, isn: u32, counter: u32, bits: u8) -> u64 {
        let mut m = [0u8; 21];
        m[0..4].copy_from_slice(&u32::from(t.client).to_le_bytes());
        m[4..8].copy_from_slice(&u32::from(t.vip).to_le_bytes());
        m[8..10].copy_from_slice(&t.client_port.to_le_bytes());
        m[10..12].copy_from_slice(&t.vip_port.to_le_bytes());
        m[12..16].copy_from_slice(&isn.to_le_bytes());
        m[16..20].copy_from_slice(&counter.to_le_bytes());
        m[20] = bits;
        siphash24(key, &m)
    }

    fn pair(key: SipKey, client: Ipv4Addr, vip: Ipv4Addr) -> u64 {
        let mut m = [0u8; 8];
        m[0..4].copy_from_slice(&u32::from(client).to_le_bytes());
        m[4..8].copy_from_slice(&u32::from(vip).to_le_bytes());
        siphash24(key, &m)
    }
}

impl CookieAddr for Ipv6Addr {
    const FAMILY: usize = 1;

    fn mac(key: SipKey, t: &CookieTuple<Ipv6Addr>, isn: u32, counter: u32, bits: u8) -> u64 {
        let mut m = [0u8; 45];
        m[0..16].copy_from_slice(&t.client.octets());
        m[16..32].copy_from_slice(&t.vip.octets());
        m[32..34].copy_from_slice(&t.client_port.to_le_bytes());
        m[34..36].copy_from_slice(&t.vip_port.to_le_bytes());
        m[36..40].copy_from_slice(&isn.to_le_bytes());
        m[40..44].copy_from_slice(&counter.to_le_bytes());
        m[44] = bits;
        siphash24(key, &m)
    }

    fn pair(key: SipKey, client: Ipv6Addr, vip: Ipv6Addr) -> u64 {
        let mut m = [0u8; 32];
        m[0..16].copy_from_slice(&client.octets());
        m[16..32].copy_from_slice(&vip.octets());
        siphash24(key, &m)
    }
}

/// The secret cookies are made and checked with.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct CookieKey(SipKey);

impl CookieKey {
    /// The process's key: random, made on first use, the same for every
    /// worker and every config generation.
    pub fn process() -> CookieKey {
        static KEY: OnceLock<CookieKey> = OnceLock::new();
        *KEY.get_or_init(|| {
            CookieKey(SipKey {
                k0: crate::random::secret_u64(),
                k1: crate::random::secret_u64(),
            })
        })
    }

    /// A key given by the caller (tests and the golden packets).
    pub const fn fixed(k0: u64, k1: u64) -> CookieKey {
        CookieKey(SipKey { k0, k1 })
    }

    /// What the proxy adds to its clock for the TSval of its SYN-ACKs
    /// from `vip` to `client`: one offset per address pair, as Linux has
    /// it (RFC 7323 section 7.1 and appendix: an offset per connection
    /// or pair), so a client's TSvals still grow from one connection to
    /// the next (PAWS), and none tells the box's uptime (found in audit:
    /// the TSval was the worker's clock, which is the time since the
    /// start). Keyed with the cookies' key: nobody who does not know it
    /// can work out one pair's offset from another's.
    pub fn ts_offset<A: CookieAddr>(&self, client: A, vip: A) -> u32 {
        A::pair(self.0, client, vip) as u32
    }

    fn mac<A: CookieAddr>(&self, t: &CookieTuple<A>, isn: u32, counter: u32, bits: u32) -> u32 {
        (A::mac(self.0, t, isn, counter, bits as u8) >> 40) as u32
    }

    /// The cookie for a SYN with initial sequence number `isn` on `t`,
    /// carrying `opts`, at `now` (ms on a clock that does not wrap: the
    /// worker's, with its wraps counted, `Pipeline::cookie_clock`). The
    /// MAC covers the period's number as 32 bits (some 8,900 years of
    /// periods; found in audit: with the worker's 32-bit clock it had 16,
    /// and a cookie seen once was good again 49.7 days later).
    pub fn make<A: CookieAddr>(
        &self,
        t: &CookieTuple<A>,
        isn: u32,
        opts: &CookieOptions,
        now: u64,
    ) -> u32 {
        let counter = (now >> PERIOD_SHIFT) as u32;
        let bits = opts.bits(A::FAMILY) | (counter & 1);
        (self.mac(t, isn, counter, bits) << 8) | bits
    }

    /// What `cookie` (the ACK's acknowledgment number minus one) carries,
    /// if it is one this key made for `t` and `isn` (the ACK's sequence
    /// number minus one) in the current period of `now` or the one before.
    pub fn check<A: CookieAddr>(
        &self,
        t: &CookieTuple<A>,
        isn: u32,
        cookie: u32,
        now: u64,
    ) -> Option<CookieOptions> {
        let current = (now >> PERIOD_SHIFT) as u32;
        let bits = cookie & 0xff;
        let counter = if bits & 1 == current & 1 {
            current
        } else {
            current.wrapping_sub(1)
        };
        (self.mac(t, isn, counter, bits) == cookie >> 8)
            .then(|| CookieOptions::from_bits(A::FAMILY, bits))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const CLOCKED: CookieKey = CookieKey::fixed(0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210);

    /// The key with the worker's 32-bit clock before any wrap (most tests
    /// are about one period or two).
    struct Key32(CookieKey);

    impl Key32 {
        fn make<A: CookieAddr>(
            &self,
            t: &CookieTuple<A>,
            isn: u32,
            o: &CookieOptions,
            now: u32,
        ) -> u32 {
            self.0.make(t, isn, o, u64::from(now))
        }

        fn check<A: CookieAddr>(
            &self,
            t: &CookieTuple<A>,
            isn: u32,
            c: u32,
            now: u32,
        ) -> Option<CookieOptions> {
            self.0.check(t, isn, c, u64::from(now))
        }
    }

    const KEY: Key32 = Key32(CLOCKED);

    fn tuple() -> CookieTuple {
        CookieTuple {
            client: Ipv4Addr::new(198, 19, 0, 10),
            client_port: 40000,
            vip: Ipv4Addr::new(198, 18, 1, 100),
            vip_port: 80,
        }
    }

    const OPTS: CookieOptions = CookieOptions {
        mss: 1460,
        wscale: Some(7),
        sack_permitted: true,
    };

    /// An IPv6 SYN's (1440: in both families' tables, at the same index).
    const OPTS6: CookieOptions = CookieOptions {
        mss: 1440,
        wscale: Some(7),
        sack_permitted: true,
    };

    #[test]
    fn a_cookie_checks_now_and_one_period_later_not_two() {
        let t = tuple();
        for now in [0, 1, PERIOD_MS - 1, PERIOD_MS, 5 * PERIOD_MS + 123] {
            let c = KEY.make(&t, 1000, &OPTS, now);
            assert_eq!(KEY.check(&t, 1000, c, now), Some(OPTS));
            // Up to the end of the next period.
            let end_of_next = (now / PERIOD_MS + 2) * PERIOD_MS - 1;
            assert_eq!(KEY.check(&t, 1000, c, end_of_next), Some(OPTS), "{now}");
            assert_eq!(KEY.check(&t, 1000, c, now + PERIOD_MS), Some(OPTS));
            // Two periods on: refused.
            assert_eq!(KEY.check(&t, 1000, c, end_of_next + 1), None, "{now}");
            assert_eq!(KEY.check(&t, 1000, c, now + 2 * PERIOD_MS), None);
        }
    }

    /// Across the worker clock's wrap (2^32 ms) a cookie checks as within
    /// any other two periods; and found in audit: with the 32-bit clock's
    /// 16-bit period number, a cookie seen once was good again 2^32 ms
    /// (49.7 days) later. The pipeline counts the wraps
    /// (`Pipeline::cookie_clock`).
    #[test]
    fn a_cookie_is_good_across_the_wrap_and_never_again() {
        let t = tuple();
        let now = u64::from(u32::MAX) - 5;
        let c = CLOCKED.make(&t, 7, &OPTS, now);
        assert_eq!(CLOCKED.check(&t, 7, c, now + 10), Some(OPTS));
        assert_eq!(
            CLOCKED.check(&t, 7, c, now + u64::from(PERIOD_MS) + 10),
            None
        );
        for later in [1u64 << 32, 2 << 32, 3 << 32] {
            for d in [0, 10, u64::from(PERIOD_MS)] {
                assert_eq!(
                    CLOCKED.check(&t, 7, c, now + later + d),
                    None,
                    "{later} {d}"
                );
            }
        }
    }

    #[test]
    fn options_are_carried() {
        let t = tuple();
        for mss in [
            None,
            Some(100),
            Some(536),
            Some(1300),
            Some(1440),
            Some(9000),
        ] {
            for ws in [None, Some(0), Some(7), Some(14), Some(15)] {
                for sack in [false, true] {
                    let o = CookieOptions::from_syn(0, mss, ws, sack);
                    let c = KEY.make(&t, 42, &o, 1000);
                    let back = KEY.check(&t, 42, c, 1000).unwrap();
                    assert_eq!(back, o);
                    assert_eq!(CookieOptions::carried(0, c), o, "read back unchecked");
                    assert_eq!(back.wscale, ws.map(|w| w.min(14)));
                    assert_eq!(back.sack_permitted, sack);
                    // The same over IPv6, with its own table.
                    let o6 = CookieOptions::from_syn(1, mss, ws, sack);
                    let c6 = KEY.make(&tuple6(), 42, &o6, 1000);
                    assert_eq!(KEY.check(&tuple6(), 42, c6, 1000), Some(o6));
                    assert_eq!(CookieOptions::carried(1, c6), o6);
                }
            }
        }
        let mss = |family, m| CookieOptions::from_syn(family, m, None, false).mss;
        assert_eq!(mss(0, Some(1300)), 1220);
        assert_eq!(mss(0, Some(100)), 536);
        assert_eq!(mss(0, None), 536, "RFC 9293's default for IPv4");
        assert_eq!(mss(0, Some(65535)), 1460);
        // IPv6 (found in review: IPv4's table cut a PPPoE client's 1432
        // to 1220, and a SYN without MSS to 536).
        assert_eq!(mss(1, Some(1432)), 1420, "PPPoE");
        assert_eq!(mss(1, Some(1440)), 1440);
        assert_eq!(mss(1, Some(1460)), 1440);
        assert_eq!(mss(1, None), 1220, "IPv6's minimum MTU less 60");
        assert_eq!(mss(1, Some(100)), 1220, "nothing below the table");
        assert_eq!(mss(1, Some(9000)), 8940, "jumbo frames");
    }

    #[test]
    fn another_key_refuses() {
        let t = tuple();
        let c = KEY.make(&t, 1, &OPTS, 0);
        assert_eq!(CookieKey::fixed(1, 2).check(&t, 1, c, 0), None);
        assert_ne!(CookieKey::process(), CLOCKED);
        assert_eq!(
            CookieKey::process(),
            CookieKey::process(),
            "one per process"
        );
    }

    fn tuple6() -> CookieTuple<Ipv6Addr> {
        CookieTuple {
            client: "2001:2:0:10::a".parse().unwrap(),
            client_port: 40000,
            vip: "2001:2:0:1::100".parse().unwrap(),
            vip_port: 80,
        }
    }

    #[test]
    fn an_ipv6_cookie_checks_and_carries_as_an_ipv4_one() {
        let t = tuple6();
        let c = KEY.make(&t, 1000, &OPTS6, 5 * PERIOD_MS + 9);
        assert_eq!(KEY.check(&t, 1000, c, 5 * PERIOD_MS + 9), Some(OPTS6));
        assert_eq!(KEY.check(&t, 1000, c, 6 * PERIOD_MS + 9), Some(OPTS6));
        assert_eq!(
            KEY.check(&t, 1000, c, 7 * PERIOD_MS),
            None,
            "two periods on"
        );
        assert_eq!(
            c & 0xff,
            KEY.make(&tuple(), 1000, &OPTS6, 5 * PERIOD_MS + 9) & 0xff
        );
        // The same tuple's bytes in the other family's layout do not
        // share a MAC: an IPv4-mapped client is another tuple.
        let mapped = CookieTuple {
            client: tuple().client.to_ipv6_mapped(),
            vip: tuple().vip.to_ipv6_mapped(),
            ..t
        };
        assert_ne!(
            KEY.make(&mapped, 1000, &OPTS6, 0),
            KEY.make(&tuple(), 1000, &OPTS6, 0)
        );
    }

    proptest! {
        /// Any single bit of either IPv6 address, of all 128, flipped
        /// makes a cookie fail: the tuple is hashed whole (none of it
        /// folded away first).
        #[test]
        fn any_ipv6_address_bit_flip_is_refused(isn in any::<u32>(), now in any::<u32>(), bit in 0u32..256) {
            let t = tuple6();
            let c = KEY.make(&t, isn, &OPTS6, now);
            prop_assert_eq!(KEY.check(&t, isn, c, now), Some(OPTS6));
            let flip = |a: Ipv6Addr| Ipv6Addr::from(u128::from(a) ^ (1u128 << (bit % 128)));
            let mut t2 = t;
            if bit < 128 {
                t2.client = flip(t.client);
            } else {
                t2.vip = flip(t.vip);
            }
            prop_assert_eq!(KEY.check(&t2, isn, c, now), None);
        }

        /// Any single bit flipped in the tuple, the ISN or the cookie makes
        /// it fail (with a 24-bit MAC a flip could collide with
        /// probability 2^-24; the fixed key here has no such case).
        #[test]
        fn any_bit_flip_is_refused(isn in any::<u32>(), now in any::<u32>(), bit in 0u32..128) {
            let t = tuple();
            let c = KEY.make(&t, isn, &OPTS, now);
            prop_assert_eq!(KEY.check(&t, isn, c, now), Some(OPTS));
            let mut t2 = t;
            let (mut isn2, mut c2) = (isn, c);
            match bit / 32 {
                0 => t2.client = Ipv4Addr::from(u32::from(t.client) ^ (1 << (bit % 32))),
                1 => {
                    let b = bit % 32;
                    if b < 16 {
                        t2.client_port ^= 1 << b;
                    } else {
                        t2.vip_port ^= 1 << (b - 16);
                    }
                }
                2 => isn2 ^= 1 << (bit % 32),
                _ => c2 ^= 1 << (bit % 32),
            }
            // A flip of the period bit may land on the previous period's
            // counter, which has another MAC: refused all the same.
            prop_assert_eq!(KEY.check(&t2, isn2, c2, now), None);
            let mut t3 = t;
            t3.vip = Ipv4Addr::from(u32::from(t.vip) ^ (1 << (bit % 32)));
            prop_assert_eq!(KEY.check(&t3, isn, c, now), None);
        }
    }
}
