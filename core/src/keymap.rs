//! A small, immutable hash map from u64 keys to u32 values, for the
//! lookups on the packet path that a snapshot answers (is this a VIP, which
//! service is this, is this a NAT real, which static neighbor): built once
//! when the snapshot is compiled, then one multiply and, nearly always, one
//! probe per lookup. Open addressing, at most a quarter full: most lookups
//! on the packet path miss (a NAT reply misses the service and VIP maps
//! before it finds its real's endpoint; a frame to an unserved port misses
//! the service map), and a miss probes until an empty slot, about 1.4 slots
//! on average at a quarter full against 2.5 at half
//! (`scripts/bench-instructions.sh`: IPv4 parse and drop 258.7 to 245.7
//! instructions a packet; twice the memory: kilobytes for a usual
//! config, about 6 MiB more a snapshot at 65,536 reals).
//!
//! The slot is the top bits of the key times a 64-bit odd constant
//! (Fibonacci hashing): a packet takes up to four lookups (VIP, service,
//! NAT real, static neighbor; an established NAT request two), and a full
//! 64-bit mixer in each cost an established NAT packet about 15
//! instructions more (`scripts/bench-instructions.sh`). Keys that packets bring cannot
//! make a lookup expensive: a lookup stops at the first empty slot, and
//! only the snapshot's own keys fill slots (at most a quarter of them).

/// 2^64 over the golden ratio, odd: its products spread keys that differ
/// in a few bits (consecutive addresses or ports) over the top bits.
const FIBONACCI: u64 = 0x9e37_79b9_7f4a_7c15;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyMap {
    /// (key, value + 1); value 0 marks an empty slot.
    slots: Box<[(u64, u32)]>,
    mask: usize,
    /// 64 minus log2 of the number of slots: the product's top bits index.
    shift: u32,
}

impl Default for KeyMap {
    fn default() -> Self {
        KeyMap::build(std::iter::empty())
    }
}

impl KeyMap {
    /// Builds from (key, value) pairs; a repeated key keeps its first value.
    pub fn build(entries: impl IntoIterator<Item = (u64, u32)>) -> KeyMap {
        let entries: Vec<(u64, u32)> = entries.into_iter().collect();
        let size = (entries.len() * 4).next_power_of_two().max(16);
        let mut slots = vec![(0u64, 0u32); size].into_boxed_slice();
        let mask = size - 1;
        let shift = 64 - size.trailing_zeros();
        for (k, v) in entries {
            let mut i = slot(k, shift);
            loop {
                if slots[i].1 == 0 {
                    slots[i] = (k, v.saturating_add(1));
                    break;
                }
                if slots[i].0 == k {
                    break;
                }
                i = (i + 1) & mask;
            }
        }
        KeyMap { slots, mask, shift }
    }

    #[inline(always)]
    pub fn get(&self, key: u64) -> Option<u32> {
        let mut i = slot(key, self.shift);
        loop {
            let (k, v) = self.slots[i];
            if v == 0 {
                return None;
            }
            if k == key {
                return Some(v - 1);
            }
            i = (i + 1) & self.mask;
        }
    }

    #[inline]
    pub fn contains(&self, key: u64) -> bool {
        self.get(key).is_some()
    }
}

/// Where `key` starts probing in a table of 2^(64 - `shift`) slots (at
/// least 16, so `shift` is at most 60).
#[inline(always)]
fn slot(key: u64, shift: u32) -> usize {
    (key.wrapping_mul(FIBONACCI) >> shift) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_what_it_was_built_with_and_nothing_else() {
        let m = KeyMap::build((0..1000u64).map(|k| (k * 7919, k as u32)));
        for k in 0..1000u64 {
            assert_eq!(m.get(k * 7919), Some(k as u32));
            assert_eq!(m.get(k * 7919 + 1), None);
        }
        assert_eq!(KeyMap::default().get(0), None);
        let dup = KeyMap::build([(5, 1), (5, 2)]);
        assert_eq!(dup.get(5), Some(1));
    }

    /// How many slots a lookup of `key` reads.
    fn probes(m: &KeyMap, key: u64) -> usize {
        let mut i = slot(key, m.shift);
        let mut n = 1;
        while m.slots[i].1 != 0 && m.slots[i].0 != key {
            i = (i + 1) & m.mask;
            n += 1;
        }
        n
    }

    /// The shapes of keys a snapshot builds (service keys: a VIP in the top
    /// 32 bits, port and protocol below; addresses alone) spread well: no
    /// long runs of full slots for lookups of keys in the map, or of keys
    /// near them that are not.
    #[test]
    fn structured_keys_spread() {
        let service = |a: u32, port: u64, proto: u64| {
            (u64::from(0xc612_0100 + a) << 32) | (port << 8) | proto
        };
        let services: Vec<u64> = (0..250u32)
            .flat_map(|a| [80, 443, 8080, 53].map(|p| service(a, p, 6)))
            .collect();
        let addresses: Vec<u64> = (0..1000u64).map(|a| 0xc612_0000 + a).collect();
        for keys in [services, addresses] {
            let m = KeyMap::build(keys.iter().map(|&k| (k, 1)));
            let hit = keys.iter().map(|&k| probes(&m, k)).max().unwrap();
            let miss = keys.iter().map(|&k| probes(&m, k ^ 1)).max().unwrap();
            let mean =
                keys.iter().map(|&k| probes(&m, k)).sum::<usize>() as f64 / keys.len() as f64;
            assert!(hit <= 16 && miss <= 16 && mean < 2.0, "{hit} {miss} {mean}");
        }
    }
}
